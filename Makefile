# batchless — the two commands: `make demo` and `make test`. Both do their own set-up.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

VENV    := .venv
PY      := $(VENV)/bin/python
STAMP   := $(VENV)/.installed-$(shell sha256sum local/requirements.txt | cut -c1-12)
CARGO   ?= cargo

.PHONY: help setup build lint test unit scenarios ruby demo up down status coverage package clean

help:
	@echo "make demo    bring up the local replica, run the migration workflow (success and failure), show what happened"
	@echo "make test    unit tests, then replica self-tests and scenario tests on a fresh local stack, then workflow coverage"
	@echo "make lint    cargo fmt --check, clippy -D warnings, statelint (after substitution), cfn-lint"
	@echo "make up|down|status   the 'dev' replica stack (batchless local up|down|status)"

# Pinned Python tools (moto, cargo-lambda, cfn-lint, statelint, pytest) in a venv we create.
$(STAMP): local/requirements.txt
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --disable-pip-version-check -q -r local/requirements.txt
	rm -f $(VENV)/.installed-*
	touch $@

setup: $(STAMP)

build: setup
	$(CARGO) build --workspace --bins

lint: setup
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(PY) infra/lint_statemachines.py
	$(VENV)/bin/cfn-lint infra/template.yaml

unit: setup
	$(CARGO) test --workspace --exclude batchless-scenarios

# The bastion console hook's scenario test loads infra/bastion/console_hook.rb into Debian's irb.
ruby:
	@command -v irb >/dev/null 2>&1 || { export DEBIAN_FRONTEND=noninteractive; \
	  apt-get install -y -qq ruby >/dev/null 2>&1 || { apt-get update -qq >/dev/null && apt-get install -y -qq ruby >/dev/null; }; }

scenarios: build ruby
	scripts/scenarios.sh

test: unit scenarios

demo: build
	scripts/demo.sh

up: build
	target/debug/batchless local up --name dev
down:
	target/debug/batchless local down --name dev
status:
	target/debug/batchless local status --name dev

# Occurrence-claim benchmark (issue 4) on its own replica stack; results go in BENCHMARKS.md.
bench-claim: build
	target/debug/batchless local up --name bench-claim --time-scale 60
	BATCHLESS_STACK=bench-claim $(CARGO) run -q -p batchless-scenarios --example claim-bench; \
	  s=$$?; target/debug/batchless local down --name bench-claim; exit $$s

package: setup
	$(VENV)/bin/cargo-lambda lambda build --release --arm64 --workspace
	@for f in target/lambda/*/bootstrap; do printf '%-40s %s\n' "$$f" "$$(du -h $$f | cut -f1)"; done

clean:
	$(CARGO) clean
	rm -rf $(VENV) .local
