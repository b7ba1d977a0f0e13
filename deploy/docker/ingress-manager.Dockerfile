# syntax=docker/dockerfile:1
# Weft ingress-manager: a zone's ZoneIngress and its SNI-routing ingress.
#
# Build from the repository root (the context needs proto/, pkg/ and ingress-manager/):
#   docker build -f deploy/docker/ingress-manager.Dockerfile -t ghcr.io/weftmesh/ingress-manager:dev .
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
COPY ingress-manager/go.mod ingress-manager/go.sum ingress-manager/
RUN --mount=type=cache,target=/go/pkg/mod cd ingress-manager && go mod download
COPY proto/ proto/
COPY pkg/ pkg/
COPY ingress-manager/ ingress-manager/
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    cd ingress-manager && GOOS=$TARGETOS GOARCH=$TARGETARCH \
    go build -ldflags="-s -w -buildid=" -o /out/ingress-manager ./cmd/ingress-manager

FROM ${BASE_IMAGE}
ARG VERSION=dev
LABEL org.opencontainers.image.title="weft-ingress-manager" \
      org.opencontainers.image.description="Weft ingress-manager: a zone's ZoneIngress and its SNI-routing ingress" \
      org.opencontainers.image.source="https://github.com/weftmesh/weft" \
      org.opencontainers.image.version="${VERSION}"
COPY --from=build /out/ingress-manager /usr/local/bin/ingress-manager
USER 65532:65532
EXPOSE 10001 5687
ENTRYPOINT ["/usr/local/bin/ingress-manager"]
