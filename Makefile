# vault-apikeys — the two commands a new user needs are `make run` and `make test`.
SHELL := /bin/bash
GO    ?= go
PKGS  := ./...

STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2

.PHONY: all build run test unit vault lint fuzz bench bench-scale soak dist clean

all: build

# VERSION is stamped into every binary (the plugin reports it to Vault as its
# running version; the verifier shows it in -version and build_info):
# the git tag when there is one, else a dev version naming the commit.
VERSION ?= $(shell v=$$(git describe --tags --always --dirty 2>/dev/null); \
	case "$$v" in (v[0-9]*) echo "$$v";; ("") echo v0.0.0-dev;; (*) echo "v0.0.0-dev+$$v";; esac)
LDFLAGS := -X github.com/vault-apikeys/vault-apikeys/plugin.Version=$(VERSION) \
	-X github.com/vault-apikeys/vault-apikeys/verifier.Version=$(VERSION)

## build: compile the plugin, the verifier and the console into bin/
build:
	@mkdir -p bin
	$(GO) build -ldflags "$(LDFLAGS)" -o bin/vault-plugin-secrets-apikeys ./cmd/vault-plugin-secrets-apikeys
	$(GO) build -ldflags "$(LDFLAGS)" -o bin/apikeys-verifier ./cmd/apikeys-verifier
	$(GO) build -ldflags "$(LDFLAGS)" -o bin/apikeys-console ./cmd/apikeys-console

## vault: make sure a Vault >= 1.15 is available (builds the pinned 1.19.0 once)
vault:
	@scripts/install-vault >/dev/null

## run: Vault dev server + transit + plugin + verifier on loopback, with a demo
run:
	@scripts/dev-stack

## test: static checks, then every test, integration against the real Vault included (race detector on)
test: lint
	@scripts/ensure-packages nginx:nginx-light caddy:caddy curl:curl chromium:chromium
	@VAULT_BIN="$$(scripts/install-vault)" && export VAULT_BIN && \
	  echo "make test: using $$VAULT_BIN" && \
	  $(GO) test -race -count=1 -timeout 30m $(PKGS)

## lint: go vet and staticcheck (pinned)
lint:
	$(GO) vet $(PKGS)
	$(GO) vet -tags benchfloor ./backend/ ./scripts/bench/floorplugin/
	GOFLAGS= $(GO) run $(STATICCHECK) $(PKGS)

## unit: every package's unit tests, without Vault (integration tests skip under -short)
unit:
	$(GO) test -race -count=1 -short $(PKGS)

## fuzz: run every fuzz target for FUZZTIME each (default 30s)
FUZZTIME ?= 30s
fuzz:
	@scripts/fuzz "$(FUZZTIME)"

## bench: side-by-side load tests against Vault's endpoints, a bare handler, the plugin floor and the contract minimum, with issue 15's targets (≤ 15 min)
bench:
	@scripts/ensure-packages wrk:wrk
	@set -o pipefail; VAULT_BIN="$$(scripts/install-vault)" && export VAULT_BIN && \
	  timeout 15m $(GO) run ./scripts/bench -out BENCHMARKS.md && \
	  $(GO) test -run '^$$' -bench . -skip 'MillionKeys' -benchmem -benchtime 2s ./token/ ./verifier/ ./backend/ | tee -a BENCHMARKS.md.gobench && \
	  scripts/bench/append-gobench BENCHMARKS.md BENCHMARKS.md.gobench && \
	  cat scripts/bench/history.md >> BENCHMARKS.md

## bench-scale: one mount with 10k keys in 10 tenants, then SCALE (default 1,000,000) keys in SCALE/10 tenants:
## issuance, tenant list pages and quota checks at both points (long); Vault on one Raft node
## on /dev/shm (SCALE_STORAGE=raft: on disk; inmem: the dev server's in-heap storage)
SCALE ?= 1000000
SCALE_STORAGE ?= raft-ram
bench-scale:
	@VAULT_BIN="$$(scripts/install-vault)" && export VAULT_BIN && \
	  timeout 90m $(GO) run ./scripts/bench -scale $(SCALE) -scale-storage $(SCALE_STORAGE) -out BENCHMARKS-scale.md

## soak: the history checker for DURATION (default 10m) with a random seed (HISTORY_SEED=… to replay),
## on a dev server and on a 3-node Raft cluster with active-node SIGKILL and seal/unseal
DURATION ?= 10m
soak:
	@VAULT_BIN="$$(scripts/install-vault)" && export VAULT_BIN && \
	  secs=$$(( $$(echo '$(DURATION)' | sed 's/h/*3600+/; s/m/*60+/; s/s/+/; s/+$$//') )) && \
	  HISTORY_SOAK=1 HISTORY_DURATION='$(DURATION)' timeout $$(( 2 * secs + 900 ))s \
	  $(GO) test -race -count=1 -timeout $$(( 2 * secs + 840 ))s -v -run '^(TestIntegrationHistory|TestSoakHistoryRaft)$$' ./e2e/

## dist: static release binaries (linux/amd64, linux/arm64, darwin/arm64) in dist/ with SHA256SUMS (VERSION=v1.2.3 to stamp)
dist:
	@scripts/dist

clean:
	rm -rf bin .run dist
