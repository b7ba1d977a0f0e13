module github.com/weftmesh/weft/ingress-manager

go 1.26.0
