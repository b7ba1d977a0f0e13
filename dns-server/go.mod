module github.com/weftmesh/weft/dns-server

go 1.26.0
