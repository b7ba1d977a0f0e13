package store

import (
	"github.com/prometheus/client_golang/prometheus"
)

// UndecodableCounter exposes the counter to tests.
func (s *Store) UndecodableCounter() *prometheus.CounterVec { return s.undecodable }
