package telemetry

import (
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// HTTPMetrics counts requests by route and code and observes latency, as
// weft_http_requests_total and weft_http_request_duration_seconds. route
// names the matched route (keep its cardinality low: patterns, not paths).
func HTTPMetrics(reg prometheus.Registerer, service string, route func(*http.Request) string, next http.Handler) http.Handler {
	reqs := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "weft_http_requests_total", Help: "HTTP requests by route, method and status code.",
		ConstLabels: prometheus.Labels{"service": service},
	}, []string{"route", "method", "code"})
	lat := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "weft_http_request_duration_seconds", Help: "HTTP request latency by route.",
		ConstLabels: prometheus.Labels{"service": service}, Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14),
	}, []string{"route", "method"})
	reg.MustRegister(reqs, lat)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &statusRecorder{ResponseWriter: w, code: http.StatusOK}
		next.ServeHTTP(rec, r)
		rt := route(r)
		reqs.WithLabelValues(rt, r.Method, strconv.Itoa(rec.code)).Inc()
		lat.WithLabelValues(rt, r.Method).Observe(time.Since(start).Seconds())
	})
}

type statusRecorder struct {
	http.ResponseWriter
	code int
}

func (s *statusRecorder) WriteHeader(code int) {
	s.code = code
	s.ResponseWriter.WriteHeader(code)
}

// Flush keeps streaming responses working through the recorder.
func (s *statusRecorder) Flush() {
	if f, ok := s.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (s *statusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }
