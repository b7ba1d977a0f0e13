// Package zoneingress keeps this zone's ZoneIngress resource current: its
// networking (what other zones dial) and availableServices, the services
// and tag sets this zone offers per mesh with their healthy instance
// counts, from the zone's Dataplanes. zone-sync carries the resource to
// global and from there to the other zones, whose xds-servers turn it into
// cross-zone endpoints.
package zoneingress

import (
	"context"
	"log/slog"
	"maps"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/proto"

	"github.com/weftmesh/weft/pkg/resource"
	"github.com/weftmesh/weft/pkg/store"
	meshv1 "github.com/weftmesh/weft/proto/gen/go/weft/mesh/v1"
)

// Config configures a Keeper.
type Config struct {
	// Store is written (the ZoneIngress); Dataplanes is read.
	Store      *store.Store
	Dataplanes store.Reader
	// Name of the ZoneIngress; Zone is this zone.
	Name, Zone string
	Networking *meshv1.ZoneIngress_Networking
	// MaxServices caps availableServices (entries over all meshes); the
	// rest are left out and reported.
	MaxServices int
	// MaxTags: a tag set with more tags than this is left out.
	MaxTags int
	// Retry is the pause after a failed write.
	Retry time.Duration
	Log   *slog.Logger
	// Registerer receives the keeper's metrics (nil: none).
	Registerer prometheus.Registerer
}

// Keeper maintains the ZoneIngress.
type Keeper struct {
	cfg    Config
	mu     sync.Mutex
	meshes map[string][]*meshv1.ZoneIngress_AvailableService // per mesh, sorted
	dirty  chan struct{}
	synced chan struct{}
	once   sync.Once

	services  prometheus.Gauge
	dropped   prometheus.Gauge
	writes    prometheus.Counter
	warnedCap bool
}

// New makes a Keeper.
func New(cfg Config) *Keeper {
	if cfg.MaxServices == 0 {
		cfg.MaxServices = 5000
	}
	if cfg.MaxTags == 0 {
		cfg.MaxTags = 32
	}
	if cfg.Retry == 0 {
		cfg.Retry = time.Second
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	k := &Keeper{cfg: cfg, meshes: map[string][]*meshv1.ZoneIngress_AvailableService{}, dirty: make(chan struct{}, 1), synced: make(chan struct{})}
	k.services = prometheus.NewGauge(prometheus.GaugeOpts{Name: "weft_ingress_available_services",
		Help: "Entries of this zone's ZoneIngress availableServices."})
	k.dropped = prometheus.NewGauge(prometheus.GaugeOpts{Name: "weft_ingress_available_services_dropped",
		Help: "Service tag sets left out of availableServices by --max-services or --max-tags."})
	k.writes = prometheus.NewCounter(prometheus.CounterOpts{Name: "weft_ingress_zoneingress_writes_total",
		Help: "Writes of this zone's ZoneIngress."})
	if cfg.Registerer != nil {
		cfg.Registerer.MustRegister(k.services, k.dropped, k.writes)
	}
	return k
}

// Synced is closed after the first successful write.
func (k *Keeper) Synced() <-chan struct{} { return k.synced }

// Run follows the Dataplanes and writes the ZoneIngress when what it
// should say changes, until ctx ends.
func (k *Keeper) Run(ctx context.Context) error {
	sub := k.cfg.Dataplanes.Subscribe(ctx, "zoneingress", k.handle)
	defer func() { <-sub.Done() }() // ends with ctx
	var last *meshv1.ZoneIngress
	retry := time.NewTimer(0)
	defer retry.Stop()
	<-retry.C
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-k.dirty:
		case <-retry.C:
		}
		want := k.Spec()
		if last != nil && proto.Equal(last, want) {
			continue
		}
		if err := k.write(ctx, want); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			k.cfg.Log.Warn("cannot write this zone's ZoneIngress; retrying (is etcd reachable?)", "name", k.cfg.Name, "error", err, "retryIn", k.cfg.Retry)
			retry.Reset(k.cfg.Retry)
			continue
		}
		last = want
		k.once.Do(func() { close(k.synced) })
	}
}

func (k *Keeper) write(ctx context.Context, spec *meshv1.ZoneIngress) error {
	cur, err := k.cfg.Store.Get(ctx, resource.ZoneIngressType, "", k.cfg.Name)
	if err != nil && !store.IsNotFound(err) {
		return err
	}
	r := resource.New(resource.ZoneIngressType, "", k.cfg.Name)
	if cur != nil {
		if proto.Equal(cur.Spec, spec) {
			return nil
		}
		r.Meta = proto.Clone(cur.Meta).(*meshv1.Meta)
	}
	r.Spec = spec
	if _, _, err := k.cfg.Store.Upsert(ctx, r); err != nil {
		return err
	}
	k.writes.Inc()
	k.cfg.Log.Info("zone ingress updated", "name", k.cfg.Name, "availableServices", len(spec.GetAvailableServices()))
	return nil
}

// handle recomputes only the meshes a batch touched.
func (k *Keeper) handle(b store.Batch) error {
	changed := map[string]bool{}
	resync := false
	for _, ev := range b.Events {
		if ev.Kind == store.EventSync {
			resync = true
			changed = map[string]bool{}
			for _, r := range ev.Resources {
				changed[r.Meta.GetMesh()] = true
			}
			continue
		}
		if ev.Resource != nil {
			changed[ev.Resource.Meta.GetMesh()] = true
		}
	}
	k.mu.Lock()
	if resync {
		for m := range k.meshes {
			if !changed[m] {
				delete(k.meshes, m)
			}
		}
	}
	for m := range changed {
		if s := Services(m, k.cfg.Dataplanes.List(m)); len(s) > 0 {
			k.meshes[m] = s
		} else {
			delete(k.meshes, m)
		}
	}
	k.mu.Unlock()
	select {
	case k.dirty <- struct{}{}:
	default:
	}
	return nil
}

// Spec is the ZoneIngress as it should be now, capped by MaxServices and
// MaxTags.
func (k *Keeper) Spec() *meshv1.ZoneIngress {
	k.mu.Lock()
	defer k.mu.Unlock()
	spec := &meshv1.ZoneIngress{Zone: k.cfg.Zone, Networking: proto.Clone(k.cfg.Networking).(*meshv1.ZoneIngress_Networking)}
	dropped := 0
	for _, m := range slices.Sorted(maps.Keys(k.meshes)) {
		for _, s := range k.meshes[m] {
			if len(spec.AvailableServices) >= k.cfg.MaxServices || len(s.GetTags()) > k.cfg.MaxTags {
				dropped++
				continue
			}
			spec.AvailableServices = append(spec.AvailableServices, s)
		}
	}
	k.services.Set(float64(len(spec.AvailableServices)))
	k.dropped.Set(float64(dropped))
	if dropped > 0 && !k.warnedCap {
		k.warnedCap = true
		k.cfg.Log.Warn("some services are left out of this zone's ZoneIngress: other zones cannot reach them; raise --max-services / --max-tags",
			"dropped", dropped, "maxServices", k.cfg.MaxServices, "maxTags", k.cfg.MaxTags)
	}
	return spec
}

// Services counts the healthy instances of each tag set offered by the
// Dataplanes of one mesh, sorted by tags. An inbound without a service, or
// not ready, offers nothing.
func Services(mesh string, dataplanes []*resource.Resource) []*meshv1.ZoneIngress_AvailableService {
	byKey := map[string]*meshv1.ZoneIngress_AvailableService{}
	for _, r := range dataplanes {
		dp, ok := r.Spec.(*meshv1.Dataplane)
		if !ok || r.Meta.GetMesh() != mesh {
			continue
		}
		for _, in := range dp.GetNetworking().GetInbound() {
			if in.GetTags()[resource.ServiceTag] == "" {
				continue
			}
			if h := in.GetHealth(); h != nil && !h.GetReady() {
				continue
			}
			key := tagKey(in.GetTags())
			s := byKey[key]
			if s == nil {
				s = &meshv1.ZoneIngress_AvailableService{Mesh: mesh, Tags: maps.Clone(in.GetTags())}
				byKey[key] = s
			}
			s.Instances++
		}
	}
	keys := slices.Collect(maps.Keys(byKey))
	sort.Strings(keys)
	out := make([]*meshv1.ZoneIngress_AvailableService, 0, len(keys))
	for _, key := range keys {
		out = append(out, byKey[key])
	}
	return out
}

func tagKey(tags map[string]string) string {
	var b strings.Builder
	for _, k := range slices.Sorted(maps.Keys(tags)) {
		b.WriteString(k)
		b.WriteByte(0)
		b.WriteString(tags[k])
		b.WriteByte(0)
	}
	return b.String()
}
