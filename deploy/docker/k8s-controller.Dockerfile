# syntax=docker/dockerfile:1
# Weft k8s-controller: Weft CRDs synced into etcd, admission webhooks.
#
# Build from the repository root (the context needs proto/, pkg/ and k8s-controller/):
#   docker build -f deploy/docker/k8s-controller.Dockerfile -t ghcr.io/weftmesh/k8s-controller:dev .
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
COPY k8s-controller/go.mod k8s-controller/go.sum k8s-controller/
RUN --mount=type=cache,target=/go/pkg/mod cd k8s-controller && go mod download
COPY proto/ proto/
COPY pkg/ pkg/
COPY k8s-controller/ k8s-controller/
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    cd k8s-controller && GOOS=$TARGETOS GOARCH=$TARGETARCH \
    go build -ldflags="-s -w -buildid=" -o /out/k8s-controller ./cmd/k8s-controller

FROM ${BASE_IMAGE}
ARG VERSION=dev
LABEL org.opencontainers.image.title="weft-k8s-controller" \
      org.opencontainers.image.description="Weft k8s-controller: Weft CRDs synced into etcd, admission webhooks" \
      org.opencontainers.image.source="https://github.com/weftmesh/weft" \
      org.opencontainers.image.version="${VERSION}"
COPY --from=build /out/k8s-controller /usr/local/bin/k8s-controller
USER 65532:65532
EXPOSE 5690 5691
ENTRYPOINT ["/usr/local/bin/k8s-controller"]
