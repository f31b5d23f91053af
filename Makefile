.PHONY: demo install lint unit integration fault e2e test bench

VENV := .venv/bin
# Two workers: the machines this runs on have two cores. Extra options: make unit PYTEST_ARGS=-x
PYTEST := $(VENV)/pytest -n 2 $(PYTEST_ARGS)

# Bootstraps again only when what it installs from changed (the packages are editable).
STAMP := .venv/.bootstrapped
install: $(STAMP)
$(STAMP): scripts/bootstrap requirements.lock requirements-dev.txt $(wildcard */pyproject.toml */*/pyproject.toml)
	@scripts/bootstrap
	@touch $@

# The whole system on this machine: starts it, imports the shared BTC candles, runs the
# predecessor's example job (random, 200 trials, 10,000 candles, seed 12345), stops it.
demo: install
	@.venv/bin/tradepulse demo

# Style, formatting, types (the tests included) and the import rules, before any test runs.
lint: install
	@echo "== ruff check"; $(VENV)/ruff check .
	@echo "== ruff format --check"; $(VENV)/ruff format --check .
	@echo "== mypy"; $(VENV)/mypy libs/*/src cli/src services/*/src tests
	@echo "== import rules"; $(VENV)/lint-imports

# No server needed: the core, the contracts, the gateway in-process, the CLI. Tests marked
# slow (the whole BTC file, the pure-Python PBO reference at 16 blocks) run in `make test`.
unit: install
	@$(PYTEST) -m "not slow" tests/unit

# Real NATS (127.0.0.1:4222) and PostgreSQL (127.0.0.1:5432): each test its own namespace.
integration: install
	@$(PYTEST) tests/integration

# Processes killed and restarted while they hold work.
fault: install
	@$(PYTEST) tests/fault

# The system as its users run it: `tradepulse up`, the HTTP API, the CLI.
e2e: install
	@$(PYTEST) tests/e2e

# Lint first, then every test in one run, so that the workers share the whole suite. The
# longest tests are collected first and idle workers steal queued tests, so the workers finish
# together instead of one running the last long tests alone. Three workers on two cores:
# most of the suite waits on the processes it started (systems starting, jobs running), so a
# third worker fills cores two would leave idle (3 min 41 s against 4 min 33 s, same machine).
test: lint
	@$(VENV)/pytest -n 3 $(PYTEST_ARGS) --dist worksteal tests/e2e tests/fault tests/integration tests/unit

bench: install
	@$(VENV)/python tests/benchmarks/bench_backtest.py
	@$(VENV)/python tests/benchmarks/bench_cli.py
	@$(VENV)/python tests/benchmarks/bench_ingest.py
	@$(VENV)/python tests/benchmarks/bench_training.py
