"""Benchmark of what the overfitting statistics cost a training job. A script, not a test.

    .venv/bin/python tests/benchmarks/bench_validation_system.py [--trials 3000] [--bars 10000]

1. Trial throughput, in this process on one core: a trial as a trainer evaluates it
   (backtest, fingerprint, its TrialCompleted encoded) on the 155,520-bar window, with and
   without its block sums (S = 16), interleaved in rounds (the median per-trial time of
   each); then the added work alone (block sums, the longer message) timed on the same
   backtests, as a share of a trial: the target's figure, steady where the interleaved
   difference drifts with whatever else the machine runs.
2. The report, through the real system (one trainer replica, the machine's NATS and
   PostgreSQL, a namespace and database of their own, removed afterwards): a `--trials`-trial
   random job; from the database, the time between the last trial stored and the job's
   `completed` (`finished_at`), which includes the report (reading the trials, re-running the
   selected trial's backtest, PBO over every CSCV set), plus the report assembled again here
   from the stored trials with the time of each part.
Prints the figures; exits 1 if a target (<= 5 % per trial, <= 1 s to completed) is missed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path

import asyncpg
import numpy as np

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # run as a script from the repo root: `tests` is importable

from tests.benchmarks.bench_training import resources, training  # noqa: E402
from tests.integration.flows import BTC, Client, excerpt, running_system  # noqa: E402
from tradepulse.common.contracts.training import TrialCompleted  # noqa: E402
from tradepulse.quant import LiquiditySweep, last_window, load_candles, run_backtest  # noqa: E402
from tradepulse.quant.metrics import periods_per_year  # noqa: E402
from tradepulse.quant.validation import (  # noqa: E402
    block_layout,
    pbo_from_block_sums,
    result_returns,
)
from tradepulse.trainer.ports import EvaluatedTrial  # noqa: E402
from tradepulse.trainer.repository import TrainingRepository, init_connection  # noqa: E402
from tradepulse.trainer.validation import assemble_report, trial_block_sums  # noqa: E402

DEFAULT_DATA = ROOT.parent / "shared" / "data" / "binance_BTC-USDT_5m.csv.gz"
BARS = 155_520
TARGET_COST = 0.05
TARGET_LATENCY_S = 1.0


def random_params(rng: np.random.Generator, count: int) -> list[dict[str, float | int]]:
    out = []
    for _ in range(count):
        params: dict[str, float | int] = {}
        for p in LiquiditySweep().space:
            params[p.name] = (
                int(rng.integers(int(p.low), int(p.high) + 1))
                if p.kind == "int"
                else float(rng.uniform(p.low, p.high))
            )
        out.append(params)
    return out


def bench_trials(data: Path, tmp: Path, per_round: int, rounds: int) -> float:
    candles = load_candles(excerpt(data, BARS, tmp / "excerpt.csv"))
    strategy = LiquiditySweep()
    window = last_window(candles, BARS - strategy.warmup_bars(300), strategy.warmup_bars(300))
    prepared = strategy.prepare(window.candles)
    params = random_params(np.random.default_rng(1), per_round)

    def trial(p: dict[str, float | int], with_sums: bool) -> None:
        result = run_backtest(
            window.candles, strategy, p, trade_from=window.trade_from, prepared=prepared
        )
        TrialCompleted(
            message_id="m",
            job_id="bench",
            number=0,
            params=p,
            state="complete",
            value=result.metrics["sharpe_ratio"],
            metrics=result.metrics,
            fingerprint=result.fingerprint,
            duration_ms=0.0,
            replica="r",
            block_sums=trial_block_sums(result, 16) if with_sums else None,
        ).to_bytes()

    for p in params[:5]:  # compile and warm the caches
        trial(p, True)
    times: dict[bool, list[float]] = {False: [], True: []}
    for r in range(rounds):
        for with_sums in (r % 2 == 0, r % 2 == 1):
            started = time.perf_counter()
            for p in params:
                trial(p, with_sums)
            times[with_sums].append((time.perf_counter() - started) / per_round)
    plain, carried = statistics.median(times[False]), statistics.median(times[True])
    print(
        f"trial on {len(window.candles):,} bars: {plain * 1000:.3f} ms without block sums, "
        f"{carried * 1000:.3f} ms with them ({rounds} interleaved rounds of {per_round} trials, "
        f"medians): {(carried / plain - 1) * 100:+.2f} % (noisy on a shared machine)"
    )
    # The added work alone, on the same backtests: the block sums and the longer message.
    results = [
        run_backtest(window.candles, strategy, p, trade_from=window.trade_from, prepared=prepared)
        for p in params
    ]
    added: list[float] = []
    for _ in range(rounds):
        started = time.perf_counter()
        for result in results:
            sums = trial_block_sums(result, 16)
            TrialCompleted(
                message_id="m",
                job_id="bench",
                number=0,
                params={},
                state="complete",
                value=None,
                metrics={},
                fingerprint="",
                duration_ms=0.0,
                replica="r",
                block_sums=sums,
            ).to_bytes()
        with_sums_s = time.perf_counter() - started
        started = time.perf_counter()
        for _result in results:
            TrialCompleted(
                message_id="m",
                job_id="bench",
                number=0,
                params={},
                state="complete",
                value=None,
                metrics={},
                fingerprint="",
                duration_ms=0.0,
                replica="r",
            ).to_bytes()
        added.append((with_sums_s - (time.perf_counter() - started)) / per_round)
    extra = statistics.median(added)
    cost = extra / plain
    print(
        f"  the added work alone (block sums + 32 more floats encoded): {extra * 1000:.3f} ms "
        f"per trial, {cost * 100:.2f} % of a trial"
    )
    return cost


async def bench_report(data: Path, tmp: Path, trials: int, bars: int) -> float:
    async with resources(embedded=False) as (names, nats_url, database_url):
        assert database_url is not None
        async with (
            running_system(
                tmp, names, trainers=1, nats_url=nats_url, database_url=database_url
            ) as system,
            Client.connect(system.nats_url, names) as client,
        ):
            await client.ingest_file(excerpt(data, bars + 2_000, tmp / "job.csv"), BTC)
            request = training("random", trials, bars, 7)
            started = time.perf_counter()
            await client.submit(request)
            view = await client.wait_job(request.job_id, within=600)
            wall = time.perf_counter() - started
            assert view.status == "completed", view
            assert view.validation is not None
            # The holder's own account of the report: from reading the trials to storing it.
            stored_ms = [
                {k: v for k, v in json.loads(line).items() if k.endswith("_ms")}
                for log in system.logs_dir.glob("trainer-*.log")
                for line in log.read_text().splitlines()
                if "validation report stored" in line and line.startswith("{")
            ]
            pool = await asyncpg.create_pool(
                database_url, init=init_connection, min_size=1, max_size=2
            )
            try:
                repo = TrainingRepository(pool)
                reads = []
                for _ in range(3):
                    t = time.perf_counter()
                    await repo.evaluated_trials(request.job_id)
                    reads.append((time.perf_counter() - t) * 1000)
            finally:
                await pool.close()
            print(f"  reading the evaluated trials here: {', '.join(f'{r:.0f}' for r in reads)} ms")
            conn = await asyncpg.connect(database_url)
            try:
                row = await conn.fetchrow(
                    """SELECT j.finished_at - max(t.created_at) AS gap,
                              max(t.created_at) - min(t.created_at) AS span
                       FROM training.jobs j JOIN training.trials t USING (job_id)
                       WHERE job_id = $1 GROUP BY j.finished_at""",
                    request.job_id,
                )
                stored = await conn.fetch(
                    """SELECT number, metrics::text AS metrics, block_sums
                       FROM training.trials WHERE job_id = $1 ORDER BY number""",
                    request.job_id,
                )
            finally:
                await conn.close()
    assert row is not None
    gap = float(row["gap"].total_seconds())
    span = row["span"].total_seconds()
    report = view.validation
    pbo = report.pbo
    print(
        f"{trials:,}-trial random job on {bars:,} bars, 1 trainer: {wall:.1f} s end to end, "
        f"{trials / span:,.0f} trials/s while trials ran; last trial stored -> completed: "
        f"{gap * 1000:.0f} ms (N {report.n_trials:,}, "
        f"{pbo.sets if pbo else 0:,} CSCV sets, DSR {report.dsr}, PBO {pbo.pbo if pbo else None})"
    )
    print(f"  the holder's report (its log): {stored_ms}")

    # The same report again in this process, part by part.
    evaluated = []
    for r in stored:
        sharpe = json.loads(r["metrics"]).get("sharpe_ratio")
        if sharpe is not None:
            evaluated.append(EvaluatedTrial(r["number"], float(sharpe), r["block_sums"]))
    assert report.selected is not None
    candles = load_candles(tmp / "job.csv")
    strategy = LiquiditySweep()
    window = last_window(candles, bars, strategy.warmup_bars(300))
    prepared = strategy.prepare(window.candles)  # cached per window in a trainer
    assert view.best_params is not None
    t0 = time.perf_counter()
    result = run_backtest(
        window.candles, strategy, view.best_params, trade_from=window.trade_from, prepared=prepared
    )
    returns = result_returns(result)
    t1 = time.perf_counter()
    s1 = np.array([t.block_sums[:16] for t in evaluated if t.block_sums])
    s2 = np.array([t.block_sums[16:] for t in evaluated if t.block_sums])
    pbo_from_block_sums(s1, s2, block_layout(len(returns), 16)[1])
    t2 = time.perf_counter()
    again = assemble_report(
        evaluated, report.selected.trial, returns, ppy=periods_per_year(300), blocks=16
    )
    t3 = time.perf_counter()
    print(
        f"  here: selected trial's backtest {1000 * (t1 - t0):.0f} ms, "
        f"PBO {1000 * (t2 - t1):.0f} ms, whole assembly {1000 * (t3 - t2):.0f} ms; "
        f"same report as the system's: {again == report}"
    )
    assert math.isfinite(gap)
    return gap


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--trials", type=int, default=3000)
    parser.add_argument("--bars", type=int, default=10_000)
    parser.add_argument("--per-round", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=6)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-validation-") as folder:
        tmp = Path(folder)
        cost = bench_trials(args.data, tmp, args.per_round, args.rounds)
        gap = asyncio.run(bench_report(args.data, tmp, args.trials, args.bars))
    ok = cost <= TARGET_COST and gap <= TARGET_LATENCY_S
    print(
        f"targets: per-trial cost {cost * 100:+.2f} % (<= {TARGET_COST * 100:.0f} %), "
        f"last trial -> completed {gap:.2f} s (<= {TARGET_LATENCY_S:.0f} s): "
        + ("met" if ok else "MISSED")
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
