package dnsserver

import (
	"context"

	"github.com/weftmesh/weft/pkg/resource"
	"github.com/weftmesh/weft/pkg/store"
)

func benchFollow(ctx context.Context, st *store.Store, t *Table, ready func()) error {
	inf := store.NewInformers(st)
	return Follow(ctx, inf.For(resource.VirtualIPType), inf.For(resource.DataplaneType), t, ready)
}
