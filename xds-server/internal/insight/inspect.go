package insight

import (
	"sort"

	"google.golang.org/protobuf/proto"

	meshv1 "github.com/weftmesh/weft/proto/gen/go/weft/mesh/v1"
)

// Subscriptions returns copies of the state of a dataplane's streams on
// this replica (per type: last ACKed version, ACK/NACK counts, last NACK
// detail), sorted by stream id.
func (r *Recorder) Subscriptions(mesh, name string) []*meshv1.DiscoverySubscription {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []*meshv1.DiscoverySubscription
	for _, s := range r.byDP[dpKey(mesh, name)] {
		out = append(out, proto.Clone(s.sub).(*meshv1.DiscoverySubscription))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].GetId() < out[j].GetId() })
	return out
}
