.PHONY: demo test lint bench install

install:
	@scripts/bootstrap

# The whole system on this machine: starts it, imports the shared BTC candles, runs the
# predecessor's example job (random, 200 trials, 10,000 candles, seed 12345), stops it.
demo: install
	@.venv/bin/tradepulse demo

test: install
	@scripts/test

bench: install
	@.venv/bin/python tests/benchmarks/bench_backtest.py
	@.venv/bin/python tests/benchmarks/bench_ingest.py
	@.venv/bin/python tests/benchmarks/bench_training.py
