# Weft developer entry point. `make test` is the README's test command and
# what .ci/run calls.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c

# Modules with Go packages (folders of go.work).
MODULES := $(shell go work edit -json | sed -n 's/.*"DiskPath": "\.\/\(.*\)".*/\1/p')
PKGS = $(foreach m,$(MODULES),$(if $(shell find $(m) -name '*.go' -not -path '*/testdata/*' | head -1),github.com/weftmesh/weft/$(m)/...))

# Fuzz targets run briefly by `make fuzz` (package-dir:Target).
FUZZ_TARGETS ?= pkg/resource:FuzzUnmarshal api-server/internal/gateway:FuzzRESTBody \
	weftctl/internal/client:FuzzDecodeObject weftctl/internal/client:FuzzDecodePage weftctl/internal/client:FuzzParseError \
	weftctl/internal/config:FuzzParse pkg/ca:FuzzParse ca-service/internal/signer:FuzzParsePublicKey \
	zone-sync/internal/protocol:FuzzDecodeMessage zone-sync/internal/protocol:FuzzRemoteSpan zone-sync/internal/global:FuzzZonePolicy \
	dns-server/internal/dnsserver:FuzzHandlePacket dns-server/internal/dnsserver:FuzzFastPathMatchesSlowPath \
	xds-server/internal/ads:FuzzAuthenticate xds-server/internal/ads:FuzzCheckRequest weft-dp/agent:FuzzParseSecrets \
	pkg/xdsnames:FuzzParseNodeID pkg/token:FuzzVerify pkg/telemetry:FuzzSpanFromTraceparent \
	api-server/internal/gui:FuzzParseDataplaneQuery pkg/sni:FuzzParse ingress-manager/proxy:FuzzPeekServerName \
	xds-server/internal/generator:FuzzProxyTemplate k8s-controller/internal/webhook:FuzzReview \
	pkg/tproxy:FuzzParsePorts k8s-controller/internal/inject:FuzzMutate
# The access-log service's parsers (TrafficLog to tcp backends).
FUZZ_TARGETS += pkg/xdsnames:FuzzParseAccessLogName weft-dp/internal/accesslog:FuzzFormat
# A count, not a duration: with a duration, Go 1.26's fuzz coordinator can
# report a bare "context deadline exceeded" failure when the time runs out
# while a worker is mid-run (golang/go#75804, fixed in Go 1.27); a count has
# no deadline to race. A real finding still fails and writes its input.
FUZZTIME ?= 20000x
GOTEST_FLAGS ?= -count=1 -timeout 10m

BIN := $(CURDIR)/bin
TOOLS := buf protoc-gen-go protoc-gen-go-grpc protoc-gen-grpc-gateway protoc-gen-openapiv2 staticcheck
export WEFT_CACHE ?= $(HOME)/.cache/weft
# Static builds everywhere: the binaries we ship are CGO_ENABLED=0, and the
# static-binary check then reuses the test build cache.
export CGO_ENABLED ?= 0

.PHONY: check-tidy all build test test-unit test-race fuzz generate check-generated tools lint golden-update bench clean

all: build

## tools: build the pinned generators and linters (tools/go.mod) into bin/
TOOL_PKGS := github.com/bufbuild/buf/cmd/buf google.golang.org/protobuf/cmd/protoc-gen-go \
	google.golang.org/grpc/cmd/protoc-gen-go-grpc github.com/grpc-ecosystem/grpc-gateway/v2/protoc-gen-grpc-gateway \
	github.com/grpc-ecosystem/grpc-gateway/v2/protoc-gen-openapiv2 honnef.co/go/tools/cmd/staticcheck
tools: $(BIN)/.stamp
$(BIN)/.stamp: tools/go.mod tools/go.sum
	@mkdir -p $(BIN)
	cd tools && GOWORK=off go build -o $(BIN)/ $(TOOL_PKGS)
	touch $@

## generate: regenerate proto/gen from proto/ with buf and the pinned plugins
generate: tools
	rm -rf proto/gen/go proto/gen/openapi/*.json
	cd proto && PATH=$(BIN):$$PATH $(BIN)/buf generate
	cd proto && $(BIN)/buf lint

## check-generated: fail when committed generated code is not what generate makes
check-generated: generate
	git diff --exit-code -- proto/gen || (echo "proto/gen is stale: run 'make generate' and commit" >&2; exit 1)
	test -z "$$(git status --porcelain -- proto/gen)" || (git status --porcelain -- proto/gen; echo "untracked generated files" >&2; exit 1)

## check-tidy: every module's go.mod is tidy and builds on its own (GOWORK=off, sibling replaces)
check-tidy:
	@for m in $(MODULES); do \
	  (cd $$m && GOWORK=off go mod tidy -diff >/dev/null) || { echo "$$m: go.mod/go.sum not tidy: run 'cd $$m && GOWORK=off go mod tidy'" >&2; exit 1; }; \
	done

## build: build every binary
build:
	go build $(PKGS)

## test: everything CI runs: vet, unit + e2e tests on real etcd, brief fuzzing
test: test-unit fuzz

test-unit:
	@unformatted=$$(gofmt -l $(MODULES) | grep -v '/gen/' || true); \
	  if [ -n "$$unformatted" ]; then echo "not gofmt-clean:" >&2; echo "$$unformatted" >&2; exit 1; fi
	go vet $(PKGS)
	go test $(GOTEST_FLAGS) -cover $(PKGS)

## test-race: every module's tests under the race detector (needs cgo and gcc; .ci/run runs it)
test-race:
	CGO_ENABLED=1 go test -race $(GOTEST_FLAGS) $(PKGS)

## fuzz: run each fuzz target for FUZZTIME
fuzz:
	@for t in $(FUZZ_TARGETS); do \
	  dir=$${t%%:*}; name=$${t##*:}; \
	  echo "fuzz $$dir $$name ($(FUZZTIME))"; \
	  go test -run '^$$' -fuzz "^$$name\$$" -fuzztime $(FUZZTIME) ./$$dir/ || exit 1; \
	done

## lint: gofmt, vet, staticcheck
lint: tools
	@test -z "$$(gofmt -l $(MODULES) | grep -v /gen/)" || (gofmt -l $(MODULES) | grep -v /gen/; exit 1)
	go vet $(PKGS)
	$(BIN)/staticcheck $(PKGS)

## golden-update: rewrite golden files (every package that defines an -update flag)
GOLDEN_PKGS = $(shell grep -rlF --include='*_test.go' '"update", ' $(MODULES) | xargs -rn1 dirname | sort -u | sed 's|^|./|')
golden-update:
	go test -count=1 $(GOLDEN_PKGS) -update

## bench: Go benchmarks (load tools live under bench/)
bench:
	go test -run '^$$' -bench . -benchmem $(PKGS)

## bench-xds: the xDS fleet benchmark (bench/xds-fleet: its own etcd + api-server, the
## xds-server as a child process, N simulated proxies); numbers go to bench/results/xds-fleet.md.
## Other scenarios through BENCH_XDS_FLAGS, e.g. BENCH_XDS_N=1000 BENCH_XDS_FLAGS="-services 500
## -mtls" (builtin mTLS, SDS), "-meshes 10" (changes in one mesh of 10), "-churn 2m" (10% of
## the Dataplanes re-registered per minute, then a check against a fresh replica), "-delta"
## (delta xDS proxies) or "-nack 0.1" (10% of the proxies NACK each change once).
BENCH_XDS_N ?= 1000 5000
BENCH_XDS_FLAGS ?= -services 500
.PHONY: bench-xds
bench-xds:
	cd bench && go build -o $(BIN)/xds-fleet ./xds-fleet
	@for n in $(BENCH_XDS_N); do $(BIN)/xds-fleet -n $$n $(BENCH_XDS_FLAGS) -label "N=$$n"; done

## bench-xds-replicas: the fleet with several xds-server replicas (issue 18 (d)–(f)): every
## replica restarted (SIGTERM, SIGKILL), one of two killed, one added (30 s max connection age)
BENCH_XDS_REPLICAS_N ?= 1000
.PHONY: bench-xds-replicas
bench-xds-replicas:
	cd bench && go build -o $(BIN)/xds-fleet ./xds-fleet
	$(BIN)/xds-fleet -n $(BENCH_XDS_REPLICAS_N) $(BENCH_XDS_FLAGS) -scenario restart -signal term
	$(BIN)/xds-fleet -n $(BENCH_XDS_REPLICAS_N) $(BENCH_XDS_FLAGS) -scenario restart -signal kill
	$(BIN)/xds-fleet -n $(BENCH_XDS_REPLICAS_N) $(BENCH_XDS_FLAGS) -scenario kill -replicas 2
	$(BIN)/xds-fleet -n $(BENCH_XDS_REPLICAS_N) $(BENCH_XDS_FLAGS) -scenario scaleout -replicas 2 -max-connection-age 30s

clean:
	rm -rf $(BIN)
