# vault-apikeys — the two commands a new user needs are `make run` and `make test`.
SHELL := /bin/bash
GO    ?= go
PKGS  := ./...

STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2

.PHONY: all build run test unit vault lint fuzz bench bench-scale dist clean

all: build

## build: compile the plugin and the verifier into bin/
build:
	@mkdir -p bin
	$(GO) build -o bin/vault-plugin-secrets-apikeys ./cmd/vault-plugin-secrets-apikeys
	@if [ -d cmd/apikeys-verifier ]; then $(GO) build -o bin/apikeys-verifier ./cmd/apikeys-verifier; fi

## vault: make sure a Vault >= 1.15 is available (builds the pinned 1.19.0 once)
vault:
	@scripts/install-vault >/dev/null

## run: Vault dev server + transit + plugin + verifier on loopback, with a demo
run:
	@scripts/dev-stack

## test: static checks, then every test, integration against the real Vault included (race detector on)
test: lint
	@scripts/ensure-packages nginx:nginx-light caddy:caddy curl:curl
	@VAULT_BIN="$$(scripts/install-vault)" && export VAULT_BIN && \
	  echo "make test: using $$VAULT_BIN" && \
	  $(GO) test -race -count=1 -timeout 30m $(PKGS)

## lint: go vet and staticcheck (pinned)
lint:
	$(GO) vet $(PKGS)
	GOFLAGS= $(GO) run $(STATICCHECK) $(PKGS)

## unit: the fast tests only (no Vault)
unit:
	$(GO) test -race -count=1 -short ./token/ ./envelope/ ./wire/

## fuzz: run every fuzz target for FUZZTIME each (default 30s)
FUZZTIME ?= 30s
fuzz:
	@scripts/fuzz "$(FUZZTIME)"

## bench: side-by-side load tests against Vault's endpoints and a bare handler (≤ 15 min)
bench:
	@scripts/ensure-packages wrk:wrk
	@set -o pipefail; VAULT_BIN="$$(scripts/install-vault)" && export VAULT_BIN && \
	  timeout 15m $(GO) run ./scripts/bench -out BENCHMARKS.md && \
	  $(GO) test -run '^$$' -bench . -benchmem -benchtime 2s ./token/ ./verifier/ | tee -a BENCHMARKS.md.gobench && \
	  scripts/bench/append-gobench BENCHMARKS.md BENCHMARKS.md.gobench && \
	  cat scripts/bench/history.md >> BENCHMARKS.md

## bench-scale: issuance and listing with 10k and with SCALE (default 1,000,000) keys stored (long)
SCALE ?= 1000000
bench-scale:
	@VAULT_BIN="$$(scripts/install-vault)" && export VAULT_BIN && \
	  timeout 90m $(GO) run ./scripts/bench -scale $(SCALE) -out BENCHMARKS-scale.md

## dist: static release binaries (linux/amd64, linux/arm64, darwin/arm64) in dist/ with SHA256SUMS (VERSION=v1.2.3 to stamp)
dist:
	@scripts/dist

clean:
	rm -rf bin .run dist
