module github.com/weftmesh/weft/weftctl

go 1.26.0

require (
	github.com/weftmesh/weft/pkg v0.0.0
	github.com/weftmesh/weft/proto v0.0.0
	go.yaml.in/yaml/v2 v2.4.4
	google.golang.org/protobuf v1.36.12
	sigs.k8s.io/yaml v1.6.0
)

replace (
	github.com/weftmesh/weft/pkg => ../pkg
	github.com/weftmesh/weft/proto => ../proto
)
