package app

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/weftmesh/weft/pkg/telemetry"
)

// metrics are the xds-server's Prometheus metrics.
type metrics struct {
	connected  *prometheus.GaugeVec
	pushLat    *prometheus.HistogramVec
	nacks      *prometheus.CounterVec
	acks       *prometheus.CounterVec
	generation *prometheus.HistogramVec
	genErrors  *prometheus.CounterVec
	pushes     *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		connected: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "weft_xds_connected_proxies", Help: "Proxies (node ids) with at least one xDS stream on this replica, by kind.",
		}, []string{"kind"}),
		pushLat: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "weft_xds_push_latency_seconds", Help: "Time from a store change seen by this replica to the proxy's ACK of the resulting version, by type.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 16),
		}, []string{"type"}),
		nacks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "weft_xds_nacks_total", Help: "Responses proxies rejected, by type.",
		}, []string{"type"}),
		acks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "weft_xds_acks_total", Help: "Pushed versions proxies acknowledged, by type.",
		}, []string{"type"}),
		generation: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "weft_xds_generation_seconds", Help: "Time to generate one proxy's configuration, by kind.",
			Buckets: prometheus.ExponentialBuckets(0.00005, 2, 16),
		}, []string{"kind"}),
		genErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "weft_xds_generation_errors_total", Help: "Generations that failed (e.g. the Dataplane does not exist yet), by kind.",
		}, []string{"kind"}),
		pushes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "weft_xds_pushes_total", Help: "Responses written to proxy streams (SotW and delta), by type. Versions a proxy never subscribed to are not counted.",
		}, []string{"type"}),
	}
	m.connected = telemetry.MustRegister(reg, m.connected)
	m.pushLat = telemetry.MustRegister(reg, m.pushLat)
	m.nacks = telemetry.MustRegister(reg, m.nacks)
	m.acks = telemetry.MustRegister(reg, m.acks)
	m.generation = telemetry.MustRegister(reg, m.generation)
	m.genErrors = telemetry.MustRegister(reg, m.genErrors)
	m.pushes = telemetry.MustRegister(reg, m.pushes)
	return m
}

func shortType(typeURL string) string {
	for i := len(typeURL) - 1; i >= 0; i-- {
		if typeURL[i] == '.' {
			return typeURL[i+1:]
		}
	}
	return typeURL
}

func (m *metrics) Generated(_, kind string, d time.Duration, err error) {
	m.generation.WithLabelValues(kind).Observe(d.Seconds())
	if err != nil {
		m.genErrors.WithLabelValues(kind).Inc()
	}
}

// Pushed is a new version put in the cache for a proxy; it is counted when a
// stream actually sends it (Sent), since a proxy may never subscribe to it.
func (m *metrics) Pushed(_, _, _ string) {}

func (m *metrics) Sent(typeURL string) { m.pushes.WithLabelValues(shortType(typeURL)).Inc() }

func (m *metrics) ConnectedChanged(kind string, delta int) {
	m.connected.WithLabelValues(kind).Add(float64(delta))
}

func (m *metrics) Acked(typeURL string, latency float64) {
	m.acks.WithLabelValues(shortType(typeURL)).Inc()
	m.pushLat.WithLabelValues(shortType(typeURL)).Observe(latency)
}

func (m *metrics) Nacked(typeURL string) { m.nacks.WithLabelValues(shortType(typeURL)).Inc() }
