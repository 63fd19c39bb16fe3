# gridstream: every target runs on a machine with only Go (plus what .ci/run installs).
GO        ?= go
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -s -w -X main.version=$(VERSION)
BIN       := bin/connector
IMAGE     ?= gridstream:$(VERSION)

.PHONY: all build test test-go lint demo sandbox bench chaos docker helm-lint fmt vet

all: build

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/connector

## test: everything CI runs (gofmt, vet, staticcheck, unit, integration and end-to-end tests, Helm chart checks)
test: lint test-go helm-lint

test-go:
	$(GO) test -race -count=1 -timeout 20m ./...

vet:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

fmt:
	gofmt -w $$(git ls-files '*.go')

lint: vet
	$(GO) run honnef.co/go/tools/cmd/staticcheck@v0.8.2 ./...

## demo: embedded NATS JetStream + sandbox APIs, events printed as they flow (Ctrl-C stops)
demo:
	$(GO) run ./cmd/connector demo

sandbox:
	$(GO) run ./cmd/connector sandbox

bench:
	$(GO) run ./cmd/bench

chaos:
	$(GO) test -count=1 -v -run TestChaos -timeout 30m ./internal/chaos -chaos.long

docker:
	docker build --build-arg VERSION=$(VERSION) -t $(IMAGE) .

helm-lint:
	./scripts/helm-check.sh
