"""Benchmark of walk-forward jobs against plain jobs of as many trials. A script, not a test.

    .venv/bin/python tests/benchmarks/bench_walkforward.py [--folds 5] [--trials 500]
        [--bars 155520] [--replicas 1,2]

For each replica count, a fresh system (the real ingest, registry and trainer processes on the
machine's NATS and PostgreSQL, in a namespace and database of their own, removed afterwards)
runs, on the last `--bars` candles of the shared BTC file:
- a plain random job of (K + 1) * n trials;
- a walk-forward random job of K folds (rolling, ratio 4), n trials per optimization, i.e.
  the same (K + 1) * n trials, each on its fold's shorter training window.
Each job is timed from publishing TrainingRequested to the registry answering with its
configuration (bench_training.run_job). Prints each time, the walk-forward / plain ratio per
replica count (target <= 1.2) and the walk-forward speed-up from the first replica count to
the last (target >= 1.7 from 1 to 2); exits 1 if a target is missed.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # run as a script from the repo root: `tests` is importable

from tests.benchmarks.bench_training import resources, run_job, training  # noqa: E402
from tests.integration.flows import BTC, Client, excerpt, running_system  # noqa: E402
from tradepulse.common.contracts.training import WalkForward  # noqa: E402
from tradepulse.quant import LiquiditySweep  # noqa: E402

DEFAULT_DATA = ROOT.parent / "shared" / "data" / "binance_BTC-USDT_5m.csv.gz"
TARGET_RATIO = 1.2
TARGET_SPEEDUP = 1.7


async def bench(args: argparse.Namespace, tmp: Path) -> dict[int, tuple[float, float]]:
    warmup = LiquiditySweep().warmup_bars(300)
    data = excerpt(args.data, args.bars + warmup, tmp / "btc.csv")
    out: dict[int, tuple[float, float]] = {}
    for replicas in args.replicas:
        async with resources(embedded=False) as (names, nats_url, database_url):
            assert database_url is not None
            async with (
                running_system(
                    tmp, names, trainers=replicas, nats_url=nats_url, database_url=database_url
                ) as system,
                Client.connect(system.nats_url, names) as client,
            ):
                await client.ingest_file(data, BTC)
                total = (args.folds + 1) * args.trials
                plain = await run_job(client, training("random", total, args.bars, 7))
                wf_request = training("random", args.trials, args.bars, 7).model_copy(
                    update={"walk_forward": WalkForward(folds=args.folds)}
                )
                wf = await run_job(client, wf_request)
                assert wf.view.walk_forward is not None
                assert wf.view.trials_done == total
                out[replicas] = (plain.wall, wf.wall)
                print(
                    f"{replicas} trainer(s): plain {total} trials {plain.wall:.1f} s, "
                    f"walk-forward {args.folds} folds x {args.trials} (+ final) {wf.wall:.1f} s, "
                    f"ratio {wf.wall / plain.wall:.2f}",
                    flush=True,
                )
    return out


def main(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory(prefix="bench-wf-") as tmp:
        results = asyncio.run(bench(args, Path(tmp)))
    ok = True
    for replicas, (plain, wf) in results.items():
        ratio = wf / plain
        ok &= ratio <= TARGET_RATIO
        print(f"ratio walk-forward / plain, {replicas} trainer(s): {ratio:.2f} (<= {TARGET_RATIO})")
    counts = sorted(results)
    if len(counts) >= 2:
        speedup = results[counts[0]][1] / results[counts[-1]][1]
        ok &= speedup >= TARGET_SPEEDUP
        print(
            f"walk-forward speed-up {counts[0]} -> {counts[-1]} trainers: {speedup:.2f} "
            f"(>= {TARGET_SPEEDUP})"
        )
    return 0 if ok else 1


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=DEFAULT_DATA)
    p.add_argument("--folds", type=int, default=5)
    p.add_argument("--trials", type=int, default=500, help="trials per optimization")
    p.add_argument("--bars", type=int, default=155_520)
    p.add_argument(
        "--replicas",
        type=lambda s: [int(x) for x in s.split(",")],
        default=[1, 2],
        help="trainer replica counts, e.g. 1,2",
    )
    return p.parse_args(argv)


if __name__ == "__main__":
    sys.exit(main(parse()))
