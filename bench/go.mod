module github.com/weftmesh/weft/bench

go 1.26.0
