module github.com/weftmesh/weft/xds-server

go 1.26.0
