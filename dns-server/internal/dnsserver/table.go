// Package dnsserver owns the `.mesh` name space: the in-memory table of
// VIPs and dataplane addresses kept current by store watches, the DNS
// handler (miekg/dns, UDP and TCP), a pre-packed UDP fast path for A hits,
// and forwarding of every other name to upstream resolvers.
package dnsserver

import (
	"encoding/binary"
	"hash/maphash"
	"net/netip"
	"sort"
	"sync"
	"sync/atomic"
)

const nShards = 256

// answer is a pre-packed A record: a compression pointer to the question
// name (always at offset 12), type A, class IN, TTL, length 4, the address.
type answer [16]byte

func packAnswer(ip netip.Addr, ttl uint32) answer {
	var a answer
	a[0], a[1] = 0xC0, 0x0C
	binary.BigEndian.PutUint16(a[2:], 1) // A
	binary.BigEndian.PutUint16(a[4:], 1) // IN
	binary.BigEndian.PutUint32(a[6:], ttl)
	binary.BigEndian.PutUint16(a[10:], 4)
	b := ip.As4()
	copy(a[12:], b[:])
	return a
}

func (a *answer) ip() netip.Addr { return netip.AddrFrom4([4]byte(a[12:16])) }

// snapshot is an immutable view of the table; readers load it with one
// atomic pointer read and never lock.
type snapshot struct {
	// shards map "<service>.<mesh>" (lowercase) to the answer.
	shards [nShards]map[string]answer
	// addrs maps a dataplane address to its meshes, sorted.
	addrs map[netip.Addr][]string
	// meshes counts the active VIPs of each mesh (for empty non-terminals).
	meshes map[string]int
	size   int
}

// Table is the `.mesh` name table. One writer (the store watch) changes it
// and calls Publish; any number of readers look names up concurrently.
type Table struct {
	seed maphash.Seed
	ttl  uint32
	snap atomic.Pointer[snapshot]

	mu    sync.Mutex
	work  snapshot
	dirty [nShards]bool
	// dataplane id (mesh/name) -> (mesh, address); addrRefs counts them.
	dps      map[string]dpEntry
	addrRefs map[netip.Addr]map[string]int
	addrsChg bool
	meshChg  bool
}

type dpEntry struct {
	mesh string
	addr netip.Addr
}

// NewTable returns an empty table answering with the given TTL.
func NewTable(ttl uint32) *Table {
	t := &Table{seed: maphash.MakeSeed(), ttl: ttl, dps: map[string]dpEntry{}, addrRefs: map[netip.Addr]map[string]int{}}
	for i := range t.work.shards {
		t.work.shards[i] = map[string]answer{}
	}
	t.work.addrs = map[netip.Addr][]string{}
	t.work.meshes = map[string]int{}
	t.Publish()
	return t
}

// TTL is the TTL of answers, in seconds.
func (t *Table) TTL() uint32 { return t.ttl }

func (t *Table) shard(key []byte) int { return int(maphash.Bytes(t.seed, key) & (nShards - 1)) }

func (t *Table) writable(i int) map[string]answer {
	if !t.dirty[i] {
		m := make(map[string]answer, len(t.work.shards[i])+1)
		for k, v := range t.work.shards[i] {
			m[k] = v
		}
		t.work.shards[i] = m
		t.dirty[i] = true
	}
	return t.work.shards[i]
}

// SetVIP makes <service>.<mesh>.mesh answer ip; an invalid ip removes it.
func (t *Table) SetVIP(mesh, service string, ip netip.Addr) {
	if !ip.Is4() {
		t.DeleteVIP(mesh, service)
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	key := service + "." + mesh
	m := t.writable(t.shard([]byte(key)))
	if _, ok := m[key]; !ok {
		t.work.size++
		t.countMesh(mesh, 1)
	}
	m[key] = packAnswer(ip, t.ttl)
}

// DeleteVIP removes <service>.<mesh>.mesh.
func (t *Table) DeleteVIP(mesh, service string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	key := service + "." + mesh
	i := t.shard([]byte(key))
	if _, ok := t.work.shards[i][key]; !ok {
		return
	}
	delete(t.writable(i), key)
	t.work.size--
	t.countMesh(mesh, -1)
}

func (t *Table) countMesh(mesh string, d int) {
	if !t.meshChg {
		m := make(map[string]int, len(t.work.meshes))
		for k, v := range t.work.meshes {
			m[k] = v
		}
		t.work.meshes = m
		t.meshChg = true
	}
	t.work.meshes[mesh] += d
	if t.work.meshes[mesh] <= 0 {
		delete(t.work.meshes, mesh)
	}
}

// SetDataplane records that queries from addr come from a dataplane of mesh.
func (t *Table) SetDataplane(id, mesh string, addr netip.Addr) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if old, ok := t.dps[id]; ok {
		if old.mesh == mesh && old.addr == addr {
			return
		}
		t.unref(old)
	}
	if !addr.IsValid() {
		delete(t.dps, id)
		return
	}
	addr = addr.Unmap()
	e := dpEntry{mesh, addr}
	t.dps[id] = e
	if t.addrRefs[addr] == nil {
		t.addrRefs[addr] = map[string]int{}
	}
	t.addrRefs[addr][mesh]++
	t.addrsChg = true
}

// DeleteDataplane forgets a dataplane.
func (t *Table) DeleteDataplane(id string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if old, ok := t.dps[id]; ok {
		t.unref(old)
		delete(t.dps, id)
	}
}

func (t *Table) unref(e dpEntry) {
	m := t.addrRefs[e.addr]
	m[e.mesh]--
	if m[e.mesh] <= 0 {
		delete(m, e.mesh)
	}
	if len(m) == 0 {
		delete(t.addrRefs, e.addr)
	}
	t.addrsChg = true
}

// Reset empties the table (before a full resync).
func (t *Table) Reset(vips, dataplanes bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if vips {
		for i := range t.work.shards {
			t.work.shards[i] = map[string]answer{}
			t.dirty[i] = true
		}
		t.work.size = 0
		t.work.meshes = map[string]int{}
		t.meshChg = true
	}
	if dataplanes {
		t.dps = map[string]dpEntry{}
		t.addrRefs = map[netip.Addr]map[string]int{}
		t.addrsChg = true
	}
}

// Publish makes every change since the last Publish visible to readers at once.
func (t *Table) Publish() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.addrsChg || t.work.addrs == nil {
		addrs := make(map[netip.Addr][]string, len(t.addrRefs))
		for a, ms := range t.addrRefs {
			l := make([]string, 0, len(ms))
			for m := range ms {
				l = append(l, m)
			}
			sort.Strings(l)
			addrs[a] = l
		}
		t.work.addrs = addrs
		t.addrsChg = false
	}
	s := t.work // copy: shares the maps, which are now frozen
	t.snap.Store(&s)
	t.dirty = [nShards]bool{}
	t.meshChg = false
}

// Size is the number of names (VIPs) readers see.
func (t *Table) Size() int { return t.snap.Load().size }

// Lookup answers <service>.<mesh>.mesh (explicit mesh) for tests and tools.
func (t *Table) Lookup(mesh, service string) (netip.Addr, bool) {
	s := t.snap.Load()
	key := []byte(service + "." + mesh)
	a, ok := s.shards[t.shard(key)][string(key)]
	if !ok {
		return netip.Addr{}, false
	}
	return a.ip(), true
}

func (t *Table) load() *snapshot { return t.snap.Load() }

func (t *Table) get(s *snapshot, key []byte) (answer, bool) {
	a, ok := s.shards[t.shard(key)][string(key)]
	return a, ok
}

type status int

const (
	nxdomain status = iota
	nodata          // the name exists (or is an empty non-terminal), not with this type
	hit
)

// knownSource reports whether addr is the address of a Dataplane (any mesh).
func (t *Table) knownSource(addr netip.Addr) bool {
	_, ok := t.load().addrs[addr]
	return ok
}

// resolve looks up a `.mesh` name. rel is the lowercase name relative to
// "mesh." without dots at either end ("svc" or "svc.meshname"), labels its
// label count, from the address of the asking client. scratch must hold
// 2*255 bytes.
func (t *Table) resolve(s *snapshot, rel []byte, labels int, from netip.Addr, scratch []byte) (answer, status) {
	switch labels {
	case 0:
		return answer{}, nodata // the zone apex
	case 2:
		if a, ok := t.get(s, rel); ok {
			return a, hit
		}
		return answer{}, nxdomain
	case 1:
		for _, mesh := range s.addrs[from] {
			key := append(append(append(scratch[:0], rel...), '.'), mesh...)
			if a, ok := t.get(s, key); ok {
				return a, hit
			}
		}
		if s.meshes[string(rel)] > 0 {
			return answer{}, nodata // <mesh>.mesh: empty non-terminal above <svc>.<mesh>.mesh
		}
	}
	return answer{}, nxdomain
}
