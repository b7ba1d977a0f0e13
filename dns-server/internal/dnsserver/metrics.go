package dnsserver

import (
	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/weftmesh/weft/pkg/telemetry"
)

// Metrics are the DNS server's Prometheus metrics.
type Metrics struct {
	queries       *prometheus.CounterVec
	latency       *prometheus.HistogramVec
	dropped       *prometheus.CounterVec
	forwardErrors *prometheus.CounterVec
	// The fast path's series, resolved once.
	fastA   prometheus.Counter
	fastLat prometheus.Observer
	byType  map[uint16]string
}

// NewMetrics registers the metrics in reg (when not nil); the table size
// gauges read t.
func NewMetrics(reg prometheus.Registerer, t *Table) *Metrics {
	m := &Metrics{
		queries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "weft_dns_queries_total",
			Help: "DNS queries answered, by query type and response code.",
		}, []string{"type", "rcode"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "weft_dns_query_duration_seconds",
			Help:    "Time from reading a query to writing its answer, by path: fast (pre-packed UDP answer), mesh (full handler), forward (upstream).",
			Buckets: prometheus.ExponentialBuckets(1e-6, 4, 12),
		}, []string{"path"}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "weft_dns_dropped_total",
			Help: "Requests dropped without an answer, by reason.",
		}, []string{"reason"}),
		forwardErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "weft_dns_forward_errors_total",
			Help: "Forwarding failures: upstream (an upstream failed or timed out), overload (too many queries in flight), not-allowed (REFUSED: the source is neither a Dataplane address nor in --forward-allow).",
		}, []string{"reason"}),
		byType: map[uint16]string{},
	}
	for _, t := range []uint16{dns.TypeA, dns.TypeAAAA, dns.TypeANY, dns.TypeCNAME, dns.TypeMX, dns.TypeNS, dns.TypePTR,
		dns.TypeSOA, dns.TypeSRV, dns.TypeTXT, dns.TypeHTTPS, dns.TypeSVCB} {
		m.byType[t] = dns.TypeToString[t]
	}
	// A registry that already has these metrics (a second handler in the
	// process) keeps counting into the registered ones.
	m.queries = telemetry.MustRegister(reg, m.queries)
	m.latency = telemetry.MustRegister(reg, m.latency)
	m.dropped = telemetry.MustRegister(reg, m.dropped)
	m.forwardErrors = telemetry.MustRegister(reg, m.forwardErrors)
	m.fastA = m.queries.WithLabelValues("A", "NOERROR")
	m.fastLat = m.latency.WithLabelValues("fast")
	if t != nil {
		telemetry.MustRegister(reg, prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "weft_dns_table_names", Help: "Names (VIPs) in the answer table."},
			func() float64 { return float64(t.Size()) }))
		telemetry.MustRegister(reg, prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "weft_dns_dataplane_addresses", Help: "Dataplane addresses known for mesh-by-source lookups."},
			func() float64 { return float64(len(t.load().addrs)) }))
	}
	return m
}

func (m *Metrics) query(qtype uint16, rcode int) prometheus.Counter {
	t, ok := m.byType[qtype]
	if !ok {
		t = "other"
	}
	rc, ok := dns.RcodeToString[rcode]
	if !ok {
		rc = "other"
	}
	return m.queries.WithLabelValues(t, rc)
}
