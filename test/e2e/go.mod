module github.com/weftmesh/weft/test/e2e

go 1.26.0
