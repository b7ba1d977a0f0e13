module github.com/weftmesh/weft/api-server

go 1.26.0
