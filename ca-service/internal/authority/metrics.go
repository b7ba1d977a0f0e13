package authority

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/weftmesh/weft/pkg/telemetry"
)

// Metrics are ca-service's own metrics.
type Metrics struct {
	issued  *prometheus.CounterVec
	latency prometheus.Histogram
	m       *Manager
	expiry  *prometheus.Desc
	roots   *prometheus.Desc
}

// NewMetrics registers the metrics in reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	mt := &Metrics{
		issued: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "weft_ca_certificates_issued_total",
			Help: "Workload certificates issued, by mesh and CA backend."}, []string{"mesh", "backend"}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "weft_ca_sign_duration_seconds",
			Help:    "Time to sign one workload certificate (lookup, key parsing and signing).",
			Buckets: prometheus.ExponentialBuckets(0.00005, 2, 16)}),
		expiry: prometheus.NewDesc("weft_ca_root_expiry_seconds",
			"Seconds until each root in a mesh's trust bundle expires (negative: expired).", []string{"mesh", "backend"}, nil),
		roots: prometheus.NewDesc("weft_ca_trust_bundle_roots",
			"Roots in a mesh's trust bundle (2 or more during a rotation).", []string{"mesh"}, nil),
	}
	mt.issued = telemetry.MustRegister(reg, mt.issued)
	mt.latency = telemetry.MustRegister(reg, mt.latency)
	return telemetry.MustRegister(reg, mt)
}

func (mt *Metrics) bind(m *Manager) { mt.m = m }

// Describe implements prometheus.Collector.
func (mt *Metrics) Describe(ch chan<- *prometheus.Desc) {
	ch <- mt.expiry
	ch <- mt.roots
}

// Collect implements prometheus.Collector.
func (mt *Metrics) Collect(ch chan<- prometheus.Metric) {
	if mt.m == nil {
		return
	}
	now := time.Now()
	for mesh, roots := range mt.m.Roots() {
		ch <- prometheus.MustNewConstMetric(mt.roots, prometheus.GaugeValue, float64(len(roots)), mesh)
		for b, c := range roots {
			ch <- prometheus.MustNewConstMetric(mt.expiry, prometheus.GaugeValue, c.NotAfter.Sub(now).Seconds(), mesh, b)
		}
	}
}
