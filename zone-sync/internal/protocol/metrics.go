package protocol

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/weftmesh/weft/pkg/telemetry"
)

// Directions, as metric labels.
const (
	// Down is global → zone.
	Down = "down"
	// Up is zone → global.
	Up = "up"
)

// Metrics are zone-sync's Prometheus metrics, shared by every stream of a
// process.
type Metrics struct {
	Lag              *prometheus.HistogramVec
	SentBytes        *prometheus.CounterVec
	SentResources    *prometheus.CounterVec
	RemovedResources *prometheus.CounterVec
	Responses        *prometheus.CounterVec
	Acks             *prometheus.CounterVec
	Nacks            *prometheus.CounterVec
	AppliedResources *prometheus.CounterVec
	Rejected         *prometheus.CounterVec
	Reconnects       *prometheus.CounterVec
	Streams          *prometheus.GaugeVec
}

// NewMetrics registers the metrics in reg (nil: not registered).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	lbl := []string{"zone", "type", "direction"}
	m := &Metrics{
		Lag: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "weft_zonesync_lag_seconds",
			Help:    "Time from a change committed on the sending control plane to it being applied on the receiving one.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 16)}, lbl),
		SentBytes: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "weft_zonesync_sent_bytes_total",
			Help: "Bytes of resources sent (serialised SyncResource messages)."}, lbl),
		SentResources: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "weft_zonesync_sent_resources_total",
			Help: "Changed resources sent."}, lbl),
		RemovedResources: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "weft_zonesync_removed_resources_total",
			Help: "Removed resource names sent."}, lbl),
		Responses: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "weft_zonesync_responses_sent_total",
			Help: "Delta responses sent."}, lbl),
		Acks: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "weft_zonesync_acks_total",
			Help: "ACKs received for responses sent."}, lbl),
		Nacks: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "weft_zonesync_nacks_total",
			Help: "NACKs received for responses sent (the peer rejected or failed to apply them)."}, lbl),
		AppliedResources: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "weft_zonesync_applied_resources_total",
			Help: "Resources written or deleted locally from the peer's responses."}, lbl),
		Rejected: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "weft_zonesync_rejected_total",
			Help: "Streams refused and responses rejected, by reason (e.g. foreign_origin, invalid, bad_token)."}, []string{"zone", "reason"}),
		Reconnects: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "weft_zonesync_reconnects_total",
			Help: "Streams re-established after the first (zone: dials; global: streams accepted from a zone that had one before)."}, []string{"zone"}),
		Streams: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "weft_zonesync_streams",
			Help: "Open sync streams."}, []string{"zone"}),
	}
	// A registry that already has these metrics (two zone-sync apps in a
	// process) keeps counting into the registered ones.
	m.Lag = telemetry.MustRegister(reg, m.Lag)
	m.SentBytes = telemetry.MustRegister(reg, m.SentBytes)
	m.SentResources = telemetry.MustRegister(reg, m.SentResources)
	m.RemovedResources = telemetry.MustRegister(reg, m.RemovedResources)
	m.Responses = telemetry.MustRegister(reg, m.Responses)
	m.Acks = telemetry.MustRegister(reg, m.Acks)
	m.Nacks = telemetry.MustRegister(reg, m.Nacks)
	m.AppliedResources = telemetry.MustRegister(reg, m.AppliedResources)
	m.Rejected = telemetry.MustRegister(reg, m.Rejected)
	m.Reconnects = telemetry.MustRegister(reg, m.Reconnects)
	m.Streams = telemetry.MustRegister(reg, m.Streams)
	return m
}
