module github.com/weftmesh/weft/zone-sync

go 1.26.0
