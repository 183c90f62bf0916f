# batchless — the two commands: `make demo` and `make test`. Both do their own set-up.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

VENV    := .venv
PY      := $(VENV)/bin/python
STAMP   := $(VENV)/.installed-$(shell sha256sum local/requirements.txt | cut -c1-12)
CARGO   ?= cargo

.PHONY: help setup setup-apt build lint checkov test unit scenarios ruby demo up down status coverage package deploy clean bench bench-claim fuzz

help:
	@echo "make demo    bring up the local replica, run the migration workflow (success and failure), show what happened"
	@echo "             (APP=DIR: on your own Rails app instead of local/sample-app)"
	@echo "make test    unit tests, then replica self-tests and scenario tests on fresh local stacks, then workflow coverage (every transition)"
	@echo "make lint    cargo fmt --check, clippy -D warnings, statelint (after substitution), cfn-lint, checkov"
	@echo "make bench   every benchmark (start-up, collect-logs vs AWS CLI, workflow cost, claim, scanner, sizes, demo) -> target/bench/results.md"
	@echo "make fuzz    every fuzz target (fuzz/, cargo +nightly fuzz) for FUZZ_SECONDS each (default 60); not part of CI"
	@echo "make package arm64 release zips of every function (cargo-lambda), with sizes"
	@echo "make deploy ENV=staging|production   sam build + sam deploy --config-env ENV (needs the SAM CLI)"
	@echo "make up|down|status   the 'dev' replica stack (batchless local up|down|status)"
	@echo "make setup-apt  the apt packages a stack runs (Ruby, Rails 6.1, pg, redis, sidekiq, PostgreSQL, redis-server)"

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
	$(MAKE) --no-print-directory checkov

# Security checks of the template; stack-wide suppressions (with reasons) in infra/.checkov.yaml,
# resource-specific ones in the template's Metadata (checkov: skip: id + comment).
checkov: setup
	$(VENV)/bin/checkov -f infra/template.yaml --config-file infra/.checkov.yaml

unit: setup
	$(CARGO) test --workspace --exclude batchless-scenarios

# The bastion console hook's scenario test loads infra/bastion/console_hook.rb into Debian's irb.
ruby:
	@command -v irb >/dev/null 2>&1 || { export DEBIAN_FRONTEND=noninteractive; \
	  apt-get install -y -qq ruby >/dev/null 2>&1 || { apt-get update -qq >/dev/null && apt-get install -y -qq ruby >/dev/null; }; }

# What every replica stack runs (local/sample-app on Debian's Rails 6.1, its own PostgreSQL,
# redis-server and Sidekiq worker): Debian 12's packages, the Rails major pinned (the sample app's
# Gemfile says ~> 6.1). Idempotent: nothing to do when all are installed; `apt-get update` only when
# a package cannot be found. Elsewhere install Ruby 3.x with Bundler, Rails 6.1, pg, redis (gem 4.x),
# sidekiq 6.x, PostgreSQL (initdb/postgres/psql) and redis-server yourself (see local/README.md).
APT_PACKAGES := ruby ruby-rails ruby-pg ruby-sidekiq ruby-redis redis-server redis-tools postgresql util-linux
setup-apt:
	@missing=""; for p in $(APT_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'ok installed' || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  command -v apt-get >/dev/null || { echo "make setup-apt: no apt-get here; install:$$missing (see local/README.md)" >&2; exit 1; }; \
	  sudo=""; [ "$$(id -u)" = 0 ] || sudo="sudo"; export DEBIAN_FRONTEND=noninteractive; \
	  echo "installing:$$missing"; \
	  $$sudo apt-get install -y -qq $$missing >/dev/null 2>&1 || \
	    { $$sudo apt-get update -qq >/dev/null && $$sudo apt-get install -y -qq $$missing >/dev/null; }; \
	fi
	@ruby -e 'require "rails"; exit(Rails::VERSION::MAJOR == 6 && Rails::VERSION::MINOR == 1 ? 0 : 1)' 2>/dev/null || \
	  { echo "make setup-apt: the sample app needs Rails 6.1 (Debian 12's ruby-rails); found: $$(ruby -e 'require "rails"; puts Rails.version' 2>&1)" >&2; exit 1; }

scenarios: build ruby setup-apt
	scripts/scenarios.sh

test: unit scenarios

demo: build setup-apt
	APP="$(APP)" scripts/demo.sh

up: build setup-apt
	target/debug/batchless local up --name dev $(if $(APP),--app "$(abspath $(APP))",)
down:
	target/debug/batchless local down --name dev
status:
	target/debug/batchless local status --name dev

# Every benchmark (issue 8: start-up, collect-logs vs the AWS CLI, workflow cost, claim, scanner,
# arm64 sizes, demo time) on its own replica stack; tables in target/bench/results.md, read in
# BENCHMARKS.md. Not part of `make test`. BENCH_SKIP="package demo" skips sections.
bench: build setup-apt
	scripts/bench.sh

# Occurrence-claim benchmark (issue 4) on its own replica stack; results go in BENCHMARKS.md.
bench-claim: build setup-apt
	target/debug/batchless local up --name bench-claim --time-scale 60
	BATCHLESS_STACK=bench-claim $(CARGO) run -q -p batchless-scenarios --example claim-bench; \
	  s=$$?; target/debug/batchless local down --name bench-claim; exit $$s

# arm64 (Graviton) release zips of every function for provided.al2023. cargo-lambda cross-compiles
# with zig (shipped by its PyPI package, `.venv/bin/python-zig`); Rust's aarch64 std comes from rustup.
FUNCTIONS := $(notdir $(wildcard functions/*/*))
package: setup
	@command -v rustup >/dev/null 2>&1 || { echo "make package: rustup is needed to add the aarch64-unknown-linux-gnu target" >&2; exit 1; }
	@rustup target list --installed | grep -qx aarch64-unknown-linux-gnu || rustup target add aarch64-unknown-linux-gnu || { \
	  echo "make package: cannot install Rust's aarch64-unknown-linux-gnu target here; arm64 zips cannot be cross-compiled on this machine" >&2; exit 1; }
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(VENV)/bin/cargo-lambda lambda build --release --arm64 --output-format zip \
	  $(addprefix -p ,$(FUNCTIONS))
	@$(PY) scripts/package_sizes.py $(FUNCTIONS)

# One stack per environment (infra/samconfig.toml: staging, production). The first deploy of an
# environment: `make deploy ENV=staging GUIDED=1` (sam deploy --guided saves the answers).
ENV ?=
deploy:
	@case "$(ENV)" in staging|production) ;; *) echo "usage: make deploy ENV=staging|production [GUIDED=1]" >&2; exit 2;; esac
	@command -v sam >/dev/null 2>&1 || { echo "make deploy: the AWS SAM CLI is not installed." >&2; \
	  echo "  install it: https://docs.aws.amazon.com/serverless-application-model/latest/developerguide/install-sam-cli.html" >&2; \
	  echo "  (or: pip install aws-sam-cli, in its own venv); it builds the functions with cargo-lambda (PATH must have cargo-lambda and zig: $(CURDIR)/$(VENV)/bin)" >&2; exit 1; }
	cd infra && PATH="$(CURDIR)/$(VENV)/bin:$$PATH" sam build --beta-features --config-env $(ENV)
	cd infra && sam deploy --config-env $(ENV) $(if $(GUIDED),--guided,)

clean:
	$(CARGO) clean
	rm -rf $(VENV) .local

# Fuzzing (issue 16): every strict input parser and the bastion scanner, each for a bounded time
# (FUZZ_SECONDS, default 60), one after another. Needs a nightly toolchain and cargo-fuzz
# (installed here when missing). Not run by CI or `make test`. A crash stops the run and leaves
# its input in fuzz/artifacts/<target>/; turn it into a regression test next to the parser.
FUZZ_SECONDS ?= 60
FUZZ_TARGETS := scanner phrases watch_config jobs_file people slack_events_payload slack_interaction \
                logs_subscription codepipeline_event cloudtrail_login workflow_inputs
fuzz:
	@command -v cargo-fuzz >/dev/null 2>&1 || $(CARGO) install cargo-fuzz --locked
	@rustup run nightly rustc --version >/dev/null 2>&1 || rustup toolchain install nightly --profile minimal
	cd fuzz && for t in $(FUZZ_TARGETS); do \
	  echo "== fuzz $$t ($(FUZZ_SECONDS) s)"; \
	  mkdir -p target; $(CARGO) +nightly fuzz run -O $$t -- -max_total_time=$(FUZZ_SECONDS) -rss_limit_mb=2048 \
	    > target/fuzz-$$t.log 2>&1; rc=$$?; \
	  grep -E "^(#[0-9]+ +DONE|Done [0-9]+ runs|==[0-9]+==|SUMMARY|artifact_prefix|Test unit written)" target/fuzz-$$t.log; \
	  test -z "$$(ls artifacts/$$t 2>/dev/null)" || { echo "fuzz $$t: crash inputs in fuzz/artifacts/$$t"; exit 1; }; \
	  test $$rc = 0 || { tail -20 target/fuzz-$$t.log; echo "fuzz $$t: exit $$rc (a build error counts), log: fuzz/target/fuzz-$$t.log"; exit 1; }; \
	done
