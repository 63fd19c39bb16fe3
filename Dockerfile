# syntax=docker/dockerfile:1
# gridstream connector image: a static Go binary on distroless, running as nonroot (65532).
#   docker build --build-arg VERSION=$(git describe --tags --always) -t gridstream .

FROM golang:1.26 AS build
WORKDIR /src
# Dependencies first, so the module download layer is cached across source changes.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
ARG VERSION=dev
ARG TARGETOS=linux
ARG TARGETARCH=amd64
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH \
    go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/connector ./cmd/connector

FROM gcr.io/distroless/static-debian12:nonroot
ARG VERSION=dev
LABEL org.opencontainers.image.title="gridstream" \
      org.opencontainers.image.description="Polls energy-market APIs and publishes deduplicated CloudEvents to NATS JetStream" \
      org.opencontainers.image.source="https://github.com/gridstream/gridstream" \
      org.opencontainers.image.version="${VERSION}"
COPY --from=build /out/connector /usr/local/bin/connector
USER nonroot:nonroot
EXPOSE 9090
ENV GRIDSTREAM_HTTP_ADDR=:9090
ENTRYPOINT ["/usr/local/bin/connector"]
CMD ["run"]
