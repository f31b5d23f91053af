"""Benchmark of the quant core against vectorbt, in one process. A script, not a test.

    .venv/bin/python tests/benchmarks/bench_backtest.py [--data FILE] [--repeat N]

Prints ms per backtest (signals, execution, metrics and fingerprint included) at 10,000,
155,520 and all bars of the shared BTC file; 200 random parameter sets from the search space;
the per-dataset preparation; a cold start in a fresh process; peak memory; and the same
strategy through vectorbt (tests/benchmarks/vbt_peer.py) with the ratio.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from tradepulse.quant import (
    Candles,
    LiquiditySweep,
    LiquiditySweepParams,
    SearchSpace,
    last_window,
    load_candles,
    run_backtest,
)

HERE = Path(__file__).resolve().parent
DEFAULT_DATA = HERE.parents[2] / "shared" / "data" / "binance_BTC-USDT_5m.csv.gz"
BENCH_PARAMS = {
    "key_level_lookback": 100,
    "min_level_touches": 2,
    "pierce_depth": 0.001,
    "volume_spike_threshold": 1.5,
    "reversal_candles": 3,
    "min_distance_from_level": 0.0005,
    "atr_multiplier_sl": 2.0,
    "risk_reward_ratio": 2.0,
    "max_holding_periods": 100,
}

COLD_START = """
import json, resource, sys, time
t0 = time.perf_counter()
from tradepulse.quant import LiquiditySweep, last_window, load_candles, run_backtest
t1 = time.perf_counter()
history = load_candles(sys.argv[1])
t2 = time.perf_counter()
strategy = LiquiditySweep()
window = last_window(history, 155520, strategy.warmup_bars(history.timeframe_seconds))
prepared = strategy.prepare(window.candles)
t3 = time.perf_counter()
result = run_backtest(window.candles, strategy, json.loads(sys.argv[2]),
                      trade_from=window.trade_from, prepared=prepared)
result.fingerprint
t4 = time.perf_counter()
print(json.dumps({"import": t1 - t0, "load": t2 - t1, "prepare": t3 - t2, "first": t4 - t3,
                  "total": t4 - t0,
                  "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def median_ms(fn: Callable[[], object], repeat: int) -> float:
    fn()
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1000


def random_params(space: SearchSpace, rng: np.random.Generator) -> dict[str, float | int]:
    out: dict[str, float | int] = {}
    for spec in space:
        if spec.step is not None:
            value = rng.choice(np.array(spec.grid()))
            out[spec.name] = int(value) if spec.kind == "int" else float(value)
        else:
            out[spec.name] = float(rng.uniform(spec.low, spec.high))
    return out


def ours(candles: Candles, bars: int, strategy: LiquiditySweep, repeat: int) -> tuple[float, int]:
    window = last_window(candles, bars, strategy.warmup_bars(candles.timeframe_seconds))
    prepared = strategy.prepare(window.candles)
    params = LiquiditySweepParams.from_mapping(BENCH_PARAMS)

    def one() -> int:
        result = run_backtest(
            window.candles, strategy, params, trade_from=window.trade_from, prepared=prepared
        )
        _ = result.fingerprint
        return int(result.metrics["total_trades"] or 0)

    return median_ms(one, repeat), one()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--data", default=str(DEFAULT_DATA))
    ap.add_argument("--repeat", type=int, default=50)
    args = ap.parse_args()

    cold = json.loads(
        subprocess.run(
            [sys.executable, "-c", COLD_START, args.data, json.dumps(BENCH_PARAMS)],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    )
    history = load_candles(args.data)
    strategy = LiquiditySweep()
    print(f"data: {args.data} ({len(history):,} candles of {history.timeframe_seconds} s)")
    print(f"params: {json.dumps(BENCH_PARAMS)}")
    print()
    print("ms per backtest (median; signals + execution + metrics + fingerprint, one core)")
    rows = {}
    for bars in (10_000, 155_520, len(history)):
        ms, trades = ours(history, bars, strategy, args.repeat)
        rows[bars] = ms
        print(f"  {bars:>9,} bars  {ms:8.3f} ms   ({trades} trades)")

    window = last_window(history, 155_520, strategy.warmup_bars(history.timeframe_seconds))
    prep_ms = median_ms(lambda: strategy.prepare(window.candles), 10)
    print(f"\npreparation per dataset (155,520 bars + warm-up, warm): {prep_ms:.1f} ms")

    prepared = strategy.prepare(window.candles)
    rng = np.random.default_rng(7)
    sets = [
        LiquiditySweepParams.from_mapping(random_params(strategy.space, rng)) for _ in range(200)
    ]
    run_backtest(window.candles, strategy, sets[0], trade_from=window.trade_from, prepared=prepared)
    t = time.perf_counter()
    trade_counts = []
    for params in sets:
        result = run_backtest(
            window.candles, strategy, params, trade_from=window.trade_from, prepared=prepared
        )
        _ = result.fingerprint
        trade_counts.append(result.metrics["total_trades"])
    elapsed = time.perf_counter() - t
    print(
        f"200 random parameter sets on 155,520 bars: {elapsed * 1000:.0f} ms total, "
        f"{200 / elapsed:,.0f} backtests/s, {elapsed / 200 * 1000:.3f} ms each "
        f"(trades per set: median {statistics.median(trade_counts):.0f}, max {max(trade_counts)})"  # type: ignore[type-var]
    )
    print(
        f"cold start in a fresh process (numba cache warm): import {cold['import'] * 1000:.0f} ms, "
        f"load file {cold['load'] * 1000:.0f} ms, prepare {cold['prepare'] * 1000:.0f} ms, "
        f"first backtest {cold['first'] * 1000:.0f} ms, total {cold['total']:.2f} s; "
        f"peak memory {cold['maxrss_mb']:.0f} MB"
    )

    # Run as a script, this file's folder is on sys.path but the checkout's root is not.
    sys.path.insert(0, str(HERE.parents[1]))
    from tests.benchmarks import vbt_peer

    c = window.candles.slice(window.trade_from)
    data = vbt_peer.prepare_vbt(c.open, c.high, c.low, c.close, c.volume)
    vbt_ms = median_ms(lambda: vbt_peer.run_vbt(data, BENCH_PARAMS), max(5, args.repeat // 5))
    vbt_trades = len(vbt_peer.run_vbt(data, BENCH_PARAMS).trades.records)
    ours_ms = rows[155_520]
    print(
        f"\nvectorbt {importlib.metadata.version('vectorbt')} from_signals, same strategy, 155,520 bars: "
        f"{vbt_ms:.2f} ms ({vbt_trades} trades)"
    )
    print(f"ratio: TradePulse is {vbt_ms / ours_ms:.1f}x faster than vectorbt")


if __name__ == "__main__":
    main()
