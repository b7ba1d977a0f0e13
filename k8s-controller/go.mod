module github.com/weftmesh/weft/k8s-controller

go 1.26.0
