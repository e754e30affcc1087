# TestRunner tasks. `make help` lists them.
.PHONY: help run test test-rust test-web e2e screenshot lint bench validate-deploy clean

help: ## List the tasks
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{printf "  make %-16s %s\n", $$1, $$2}'

run: ## Run the whole system: coordinator (SQLite), 2 runners, console
	@scripts/run

test: ## Run every test (what CI runs)
	@scripts/test

test-rust: ## Rust tests only (needs Postgres, grpcurl and cargo-nextest); stops at the first failure, never reruns
	cargo build --workspace --bins
	cargo nextest run --workspace --profile ci

test-web: ## Console typecheck and unit tests
	cd web-client && npm run typecheck && npm test

e2e: ## Console end-to-end tests in headless Chromium
	cargo build --bins
	cd web-client && npm run build && TESTRUNNER_BIN_DIR=$(CURDIR)/target/debug npm run e2e

screenshot: ## Refresh the README's screenshot (docs/screenshots) from the end-to-end run
	cargo build --bins
	cd web-client && npm run build && TESTRUNNER_BIN_DIR=$(CURDIR)/target/debug \
	  TESTRUNNER_SCREENSHOT=$(CURDIR)/docs/screenshots/testrun-detail.png npm run e2e

lint: ## cargo fmt --check, clippy -D warnings, and the coordinator's layers (no import cycle)
	cargo fmt --all --check
	cargo clippy --workspace --all-targets -- -D warnings
	scripts/check-layers

bench: ## Benchmarks against same-run baselines (see bench/README.md)
	bench/run

validate-deploy: ## Validate Dockerfiles, compose and Kubernetes manifests offline
	bash deploy/validate.sh

clean: ## Remove build outputs and the local database
	cargo clean
	rm -rf web-client/dist testrunner.db testrunner.db-*
