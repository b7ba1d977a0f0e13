package dnsserver

import (
	"context"

	"github.com/weftmesh/weft/dns-server/internal/dnsview"
	"github.com/weftmesh/weft/pkg/resource"
	"github.com/weftmesh/weft/pkg/store"
)

func benchFollow(ctx context.Context, st *store.Store, t *Table, ready func()) error {
	inf := store.NewInformers(st)
	// The views dns-server's app uses (see dns-server/app).
	return Follow(ctx, inf.For(resource.VirtualIPType, dnsview.VirtualIP), inf.For(resource.DataplaneType, dnsview.Dataplane), t, ready)
}
