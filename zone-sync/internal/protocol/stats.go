package protocol

import (
	"sync"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	meshv1 "github.com/weftmesh/weft/proto/gen/go/weft/mesh/v1"
)

// Stats is a stream's per-type status, for ZoneInsight. Keys are
// "<direction>:<type URL>" ("down:type.googleapis.com/weft.mesh.v1.Mesh"),
// because ZoneIngresses travel both ways.
type Stats struct {
	mu      sync.Mutex
	types   map[string]*meshv1.SyncTypeStatus
	changed bool
}

// NewStats returns empty stats.
func NewStats() *Stats { return &Stats{types: map[string]*meshv1.SyncTypeStatus{}} }

func (s *Stats) get(dir, url string) *meshv1.SyncTypeStatus {
	k := dir + ":" + url
	st := s.types[k]
	if st == nil {
		st = &meshv1.SyncTypeStatus{}
		s.types[k] = st
	}
	s.changed = true
	st.LastUpdateTime = timestamppb.New(time.Now())
	return st
}

func (s *Stats) sent(dir, url, version string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.get(dir, url)
	st.ResponsesSent++
	st.LastVersion = version
}

func (s *Stats) ack(dir, url string, held int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.get(dir, url)
	st.Acks++
	st.Resources = uint64(held)
	st.LastError = ""
}

func (s *Stats) nack(dir, url, msg string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.get(dir, url)
	st.Nacks++
	st.LastError = msg
}

func (s *Stats) received(dir, url, version string, puts, dels int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.get(dir, url)
	st.Acks++
	st.LastVersion = version
	st.LastError = ""
	st.Resources += uint64(puts)
	if uint64(dels) > st.Resources {
		st.Resources = 0
	} else {
		st.Resources -= uint64(dels)
	}
}

func (s *Stats) recvError(dir, url, msg string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(msg) > MaxErrorLength {
		msg = msg[:MaxErrorLength]
	}
	if _, ok := TypeByURL(url); !ok {
		url = "invalid"
	}
	st := s.get(dir, url)
	st.Nacks++
	st.LastError = msg
}

// Snapshot copies the stats and reports whether they changed since the
// last snapshot.
func (s *Stats) Snapshot() (map[string]*meshv1.SyncTypeStatus, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]*meshv1.SyncTypeStatus, len(s.types))
	for k, v := range s.types {
		out[k] = proto.Clone(v).(*meshv1.SyncTypeStatus)
	}
	ch := s.changed
	s.changed = false
	return out, ch
}
