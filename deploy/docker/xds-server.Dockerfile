# syntax=docker/dockerfile:1
# Weft xds-server: ADS for Envoy, ingresses and proxyless gRPC.
#
# Build from the repository root (the context needs proto/, pkg/ and xds-server/):
#   docker build -f deploy/docker/xds-server.Dockerfile -t ghcr.io/weftmesh/xds-server:dev .
# Multi-arch: docker buildx build --platform linux/amd64,linux/arm64 ...
#
# The binary is static (CGO_ENABLED=0, no libc, no interpreter) and the image
# is distroless/static running as the nonroot user 65532, which the Helm
# charts' securityContext expects. charts/chartstest checks that every path
# copied here exists and that the binary links statically.

ARG GO_IMAGE=golang:1.26
ARG BASE_IMAGE=gcr.io/distroless/static-debian12:nonroot

FROM --platform=$BUILDPLATFORM ${GO_IMAGE} AS build
ARG TARGETOS=linux
ARG TARGETARCH=amd64
WORKDIR /src
# Each service module replaces its siblings (../pkg, ../proto), so it builds
# with GOWORK=off from only the modules it needs.
ENV CGO_ENABLED=0 GOWORK=off GOFLAGS=-trimpath
# Module files first: the download layer stays cached until one changes.
COPY proto/go.mod proto/go.sum proto/
COPY pkg/go.mod pkg/go.sum pkg/
COPY xds-server/go.mod xds-server/go.sum xds-server/
RUN --mount=type=cache,target=/go/pkg/mod cd xds-server && go mod download
COPY proto/ proto/
COPY pkg/ pkg/
COPY xds-server/ xds-server/
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    cd xds-server && GOOS=$TARGETOS GOARCH=$TARGETARCH \
    go build -ldflags="-s -w -buildid=" -o /out/xds-server ./cmd/xds-server

FROM ${BASE_IMAGE}
ARG VERSION=dev
LABEL org.opencontainers.image.title="weft-xds-server" \
      org.opencontainers.image.description="Weft xds-server: ADS for Envoy, ingresses and proxyless gRPC" \
      org.opencontainers.image.source="https://github.com/weftmesh/weft" \
      org.opencontainers.image.version="${VERSION}"
COPY --from=build /out/xds-server /usr/local/bin/xds-server
USER 65532:65532
EXPOSE 5678 5688
ENTRYPOINT ["/usr/local/bin/xds-server"]
