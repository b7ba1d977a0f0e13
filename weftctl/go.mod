module github.com/weftmesh/weft/weftctl

go 1.26.0
