// Package version is the one Weft version: what the api-server reports in
// GET / and what weftctl prints as its own, so `weftctl version` compares
// like with like. Release builds set it with
// -ldflags "-X github.com/weftmesh/weft/pkg/version.Version=v1.2.3".
package version

// Version is the Weft version of this build.
var Version = "0.1.0-dev"
