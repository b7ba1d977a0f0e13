module github.com/weftmesh/weft/weft-dp

go 1.26.0
