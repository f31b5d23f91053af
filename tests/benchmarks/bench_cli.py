"""Benchmark of `tradepulse backtest` (issue 13): its cold start and its JSON Lines batch. A
script, not a test.

    .venv/bin/python tests/benchmarks/bench_cli.py [--data FILE] [--runs N] [--sets N]

1. Cold start: a fresh `tradepulse backtest` process on the shared BTC file with the example
   parameters (import, load, prepare, backtest, print the table), after one run that warms
   numba's cache; the median of `--runs`, wall and CPU. Beside it, in the same run: the same
   process compiling every module's bytecode again (as before `scripts/bootstrap` compiled it,
   where PYTHONDONTWRITEBYTECODE is set), the phases of a fresh process, and the same command
   in this process once everything is loaded.
2. JSON Lines: `--sets` random parameter sets over the same file against `run_backtest` over
   the same sets in this process. a) The CLI's `main` (`--json`, and `--json --no-trades`)
   writing to a file, per extra result: a batch of 5N sets minus a batch of N (the same sets
   five times, so both load and prepare the same), which leaves out the load and the preparation.
   b) Set by set, the backtest alone and then the backtest with its line encoded and written
   as the CLI's loop does, interleaved, which drifts least; the encoder the CLI had before
   (Trade objects and `json.dumps`) is measured the same way, in the same run.

The machine is shared: every figure is printed with the load average and next to its peer.
What runs in this process is timed in CPU seconds (all of it runs on one thread), which the
other work on the machine disturbs far less than wall time.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any

import numpy as np

from tradepulse.cli.backtest import encode_json
from tradepulse.cli.main import main as cli_main
from tradepulse.quant import (
    BacktestResult,
    Candles,
    LiquiditySweep,
    LiquiditySweepParams,
    load_candles,
    run_backtest,
)

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "binance_BTC-USDT_5m.csv.gz"
EXAMPLE_PARAMS = ROOT / "examples" / "liquidity_sweep.json"
CONSOLE_SCRIPT = Path(sys.prefix) / "bin" / "tradepulse"

# The phases of a fresh `tradepulse backtest`, timed inside the process (wall and CPU).
PHASES = """
import io, json, sys, time
def now():
    return time.perf_counter(), time.process_time()
t0 = now()
from tradepulse.cli.main import build_parser
import tradepulse.cli.backtest
t1 = now()
import numba, numpy
t2 = now()
from tradepulse.quant import get_strategy, load_candles, run_backtest
t3 = now()
history = load_candles(sys.argv[1])
t4 = now()
strategy = get_strategy("LIQUIDITY_SWEEP")
params = strategy.parse_params(json.loads(open(sys.argv[2]).read()))
prepared = strategy.prepare(history, [params])
t5 = now()
result = run_backtest(history, strategy, params, prepared=prepared)
table = tradepulse.cli.backtest.format_table(result, strategy.params_to_dict(params))
t6 = now()
names = ["cli", "numpy+numba", "core", "load", "prepare", "backtest+print"]
marks = [t0, t1, t2, t3, t4, t5, t6]
print(json.dumps({n: [b[0] - a[0], b[1] - a[1]] for n, a, b in zip(names, marks, marks[1:])}))
"""

SCIPY_PROBE = """
import time
import numpy
t = time.process_time()
import scipy.linalg.cython_blas
print(time.process_time() - t)
"""


def load_average() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f} on {os.cpu_count()} cores"


def child_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def fresh_process(argv: list[str], env: dict[str, str] | None = None) -> tuple[float, float]:
    """Wall and CPU seconds of one fresh process (its output is discarded)."""
    cpu = child_cpu()
    t = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, env=env)
    return time.perf_counter() - t, child_cpu() - cpu


def medians(samples: list[tuple[float, float]]) -> tuple[float, float]:
    return statistics.median(s[0] for s in samples), statistics.median(s[1] for s in samples)


def random_params(strategy: LiquiditySweep, rng: np.random.Generator) -> dict[str, float | int]:
    out: dict[str, float | int] = {}
    for spec in strategy.space:
        if spec.step is not None:
            value = rng.choice(np.array(spec.grid()))
            out[spec.name] = int(value) if spec.kind == "int" else float(value)
        else:
            out[spec.name] = float(rng.uniform(spec.low, spec.high))
    return out


def cli_seconds(argv: list[str], out: Path) -> float:
    """CPU seconds of the CLI's `main(argv)` in this process, stdout written to `out`."""
    with out.open("w") as sink, redirect_stdout(sink):
        t = time.process_time()
        code = cli_main(argv)
        sink.flush()
        elapsed = time.process_time() - t
    if code != 0:
        raise SystemExit(f"tradepulse {' '.join(argv[:1])} exited {code}")
    return elapsed


def old_json_line(result: BacktestResult) -> str:
    """What `--json` wrote per result before issue 13: Trade objects, then json.dumps."""
    obj = {
        "metrics": result.metrics,
        "trades": [t.to_dict() for t in result.trades],
        "fingerprint": result.fingerprint,
        "ambiguous_exits": result.ambiguous_exits,
    }
    return json.dumps(obj, allow_nan=False) + "\n"


def per_result_rate(batch_seconds: Callable[[int], float], sets: int) -> float:
    """Results per CPU second beyond the first `sets`: (5N - N) / (t(5N) - t(N))."""
    single = batch_seconds(1)
    return 4 * sets / (batch_seconds(5) - single)


def cold_start(args: argparse.Namespace) -> None:
    argv = [str(CONSOLE_SCRIPT), "backtest", "--data", args.data, "--params", str(EXAMPLE_PARAMS)]
    fresh_process(argv)  # numba's cache warm, the file in the page cache
    print(f"1. cold start: {' '.join(argv[1:])}   ({load_average()})")
    warm = [fresh_process(argv) for _ in range(args.runs)]
    wall, cpu = medians(warm)
    print(f"   fresh process, median of {args.runs}: {wall:.2f} s wall, {cpu:.2f} s CPU")
    print(f"     all runs (wall s): {', '.join(f'{w:.2f}' for w, _ in warm)}")
    with tempfile.TemporaryDirectory() as empty:
        # Python looks for bytecode under the empty prefix, finds none, compiles every module
        # and, with PYTHONDONTWRITEBYTECODE, keeps none: a process without installed bytecode.
        env = {**os.environ, "PYTHONPYCACHEPREFIX": empty, "PYTHONDONTWRITEBYTECODE": "1"}
        cold = [fresh_process(argv, env) for _ in range(max(3, args.runs // 2))]
    cold_wall, cold_cpu = medians(cold)
    print(
        f"   the same, compiling every module again (no .pyc): {cold_wall:.2f} s wall, "
        f"{cold_cpu:.2f} s CPU  -> bytecode saves {cold_cpu - cpu:.2f} s CPU "
        f"({cold_cpu / cpu:.1f}x)"
    )
    base = medians([fresh_process([sys.executable, "-c", "pass"]) for _ in range(args.runs)])
    print(f"   a bare Python process: {base[0]:.3f} s wall, {base[1]:.3f} s CPU")

    phases = [
        json.loads(
            subprocess.run(
                [sys.executable, "-c", PHASES, args.data, str(EXAMPLE_PARAMS)],
                check=True,
                capture_output=True,
                text=True,
            ).stdout
        )
        for _ in range(args.runs)
    ]
    print("   phases of a fresh process (median wall / CPU ms):")
    for name in phases[0]:
        w = statistics.median(p[name][0] for p in phases) * 1000
        c = statistics.median(p[name][1] for p in phases) * 1000
        print(f"     {name:<15} {w:7.0f} / {c:5.0f}")
    scipy_cpu = statistics.median(
        float(
            subprocess.run(
                [sys.executable, "-c", SCIPY_PROBE], check=True, capture_output=True, text=True
            ).stdout
        )
        for _ in range(3)
    )
    print(
        f"     of prepare, numba's BLAS check imports SciPy, here only for the test peers: "
        f"{scipy_cpu * 1000:.0f} ms CPU"
    )

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out.txt"
        in_argv = argv[1:]
        cli_seconds(in_argv, out)
        in_process = statistics.median(cli_seconds(in_argv, out) for _ in range(args.runs))
    print(
        f"   the same command in this process, everything loaded (load, prepare, backtest, "
        f"print): {in_process:.3f} s CPU -> the fresh process costs {cpu / in_process:.1f}x "
        f"the CPU, {cpu - in_process:.2f} s more"
    )


def batch(args: argparse.Namespace) -> None:
    history: Candles = load_candles(args.data)
    strategy = LiquiditySweep()
    rng = np.random.default_rng(13)
    raw = [random_params(strategy, rng) for _ in range(args.sets)]
    sets = [LiquiditySweepParams.from_mapping(r) for r in raw]
    prepared = strategy.prepare(history, sets)
    results = [run_backtest(history, strategy, p, prepared=prepared) for p in sets]
    trades = [len(r.trade_ints) for r in results]
    print(
        f"\n2. JSON Lines: {args.sets} random parameter sets over all {len(history):,} bars "
        f"(trades per set: median {statistics.median(trades):.0f}, mean "
        f"{statistics.mean(trades):.0f}, max {max(trades)})   ({load_average()})"
    )

    def in_process() -> float:
        t = time.process_time()
        for p in sets:
            run_backtest(history, strategy, p, prepared=prepared)
        return time.process_time() - t

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        out = folder / "out.jsonl"
        files = {}
        for times in (1, 5):
            files[times] = folder / f"params_{times}.json"
            files[times].write_text(json.dumps(raw * times))

        def cli(extra: list[str]) -> Callable[[int], float]:
            def run(times: int) -> float:
                argv = ["backtest", "--data", args.data, "--params", str(files[times]), *extra]
                return cli_seconds(argv, out)

            return run

        print("   a) the CLI end to end, per result beyond the load and the preparation:")
        in_process()
        for label, extra in (
            ("--json", ["--json"]),
            ("--json --no-trades", ["--json", "--no-trades"]),
        ):
            seconds = cli(extra)
            seconds(1)
            rates, ratios = [], []
            for _ in range(args.repeat):
                # The peer is measured before and after each pair of batches: the machine's
                # speed drifts with the other work on it, and the ratio is what matters.
                before = in_process()
                rates.append(per_result_rate(seconds, args.sets))
                peer = 2 * args.sets / (before + in_process())
                ratios.append(rates[-1] / peer)
            rate = statistics.median(rates)
            print(
                f"      tradepulse backtest {label:<19} {rate:6,.0f} results/s "
                f"({1000 / rate:.2f} ms CPU each) = {statistics.median(ratios):.0%} of "
                f"run_backtest's rate in this process (repeats "
                f"{', '.join(f'{r:.0%}' for r in ratios)})"
            )

        print(
            "   b) per set, interleaved: run_backtest alone, then run_backtest and the line "
            "written as the CLI's loop does"
        )
        encoders: list[tuple[str, Callable[[BacktestResult], str]]] = [
            ("--json (orjson)", lambda r: encode_json(r).decode()),
            ("--json --no-trades", lambda r: encode_json(r, trades=False).decode()),
            ("before: Trade objects + json.dumps", old_json_line),
        ]
        for label, encode in encoders:
            ratios = []
            alone = with_line = 0.0
            for _ in range(args.repeat):
                rep_alone = rep_line = 0.0
                with out.open("w") as sink:
                    for p in sets:
                        t = time.process_time()
                        run_backtest(history, strategy, p, prepared=prepared)
                        rep_alone += time.process_time() - t
                        t = time.process_time()
                        sink.write(encode(run_backtest(history, strategy, p, prepared=prepared)))
                        rep_line += time.process_time() - t
                ratios.append(rep_alone / rep_line)
                alone += rep_alone
                with_line += rep_line
            n = args.sets * args.repeat
            print(
                f"      {label:<35} {1000 * alone / n:.2f} ms -> {1000 * with_line / n:.2f} ms "
                f"CPU per set: {statistics.median(ratios):.0%} of the in-process rate "
                f"(target >= 50 %)"
            )
        size = out.stat().st_size
        cli(["--json"])(1)
        full = out.stat().st_size
        cli(["--json", "--no-trades"])(1)
        print(
            f"   output of one batch: {full / 1e6:.1f} MB with trades, "
            f"{out.stat().st_size / 1e3:.0f} kB with --no-trades "
            f"(the old encoder's: {size / 1e6:.1f} MB)"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--data", default=str(DEFAULT_DATA))
    ap.add_argument("--runs", type=int, default=7, help="fresh processes per cold-start figure")
    ap.add_argument("--sets", type=int, default=200, help="parameter sets in the JSON batch")
    ap.add_argument("--repeat", type=int, default=5, help="repeats of each batch (median)")
    args: Any = ap.parse_args()
    cold_start(args)
    batch(args)


if __name__ == "__main__":
    main()
