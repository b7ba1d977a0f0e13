module github.com/weftmesh/weft/ca-service

go 1.26.0
