package telemetry

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// EtcdUpMetric is the gauge RegisterEtcdUp adds: 1 when etcd answered a
// read at the last scrape, 0 when not.
const EtcdUpMetric = "weft_etcd_up"

// RegisterEtcdUp registers weft_etcd_up, probed at each scrape (a count-only
// read, 1s limit). For services that keep serving last-known state while
// etcd is briefly unavailable, so /readyz need not fail (and Kubernetes
// need not pull every replica at once): alert on this gauge instead. A
// change of state is logged once, with what it means.
func RegisterEtcdUp(reg prometheus.Registerer, cli *clientv3.Client, log *slog.Logger) {
	var mu sync.Mutex
	last := 1.0
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: EtcdUpMetric,
		Help: "1 when etcd answered a read at this scrape, 0 when not (the service serves its last-known state meanwhile).",
	}, func() float64 {
		up := 1.0
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_, err := cli.Get(ctx, "/weft/health", clientv3.WithCountOnly())
		if err != nil {
			up = 0
		}
		mu.Lock()
		defer mu.Unlock()
		if up != last {
			if up == 0 {
				log.Warn("etcd unavailable: serving last-known state; changes are not seen until etcd is back (check the etcd members and this host's connectivity to them)", "err", err)
			} else {
				log.Info("etcd available again")
			}
			last = up
		}
		return up
	}))
}
