package telemetry

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// Register registers c in reg and returns the collector to use: c, or the
// equal collector already registered (so a second registration, e.g. two
// components of a process sharing a registry, reports to the same series
// instead of to an unregistered copy). Any other error (a name registered
// with other labels or help) is returned. A nil reg registers nothing.
func Register[C prometheus.Collector](reg prometheus.Registerer, c C) (C, error) {
	if reg == nil {
		return c, nil
	}
	err := reg.Register(c)
	if err == nil {
		return c, nil
	}
	var are prometheus.AlreadyRegisteredError
	if errors.As(err, &are) {
		if existing, ok := are.ExistingCollector.(C); ok {
			return existing, nil
		}
		return c, fmt.Errorf("metrics: a collector of another type is registered under the same name: %w", err)
	}
	return c, fmt.Errorf("metrics: %w", err)
}

// MustRegister is Register for constructors that cannot return an error:
// a conflicting registration is a programming error and panics with the
// error.
func MustRegister[C prometheus.Collector](reg prometheus.Registerer, c C) C {
	out, err := Register(reg, c)
	if err != nil {
		panic(err)
	}
	return out
}
