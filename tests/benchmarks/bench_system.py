"""Trials per second through the whole system against the core alone, the samplers' own cost,
and the trainer's memory (issue 13). A script, not a test.

    .venv/bin/python tests/benchmarks/bench_system.py [--trials 3000] [--repeat 2]
        [--sampler-marks 200,1000,5000] [--memory-trials 5000] [--profile DIR] [--skip ...]

In one run, on the shared BTC file:
1. the core: the same parameter sets the system's random job will ask (its seed and batch
   size), each evaluated as a trainer evaluates a trial (run_backtest on the job's window of
   155,520 bars, its fingerprint and its block sums), in one process, then split over one
   process per core (all trials over the slowest one's time). The processes are forked once
   and measure again right before and after each system job, whose ratio is against the
   mean of those two;
2. the system: real ingest, registry and trainer processes (bench_training's
   `running_system`, on the machine's NATS and PostgreSQL in a namespace and database of their
   own) with 1, then 2 trainers, a warm-up job, then `--repeat` random jobs of `--trials`
   trials, each timed from publishing TrainingRequested to the configuration being stored;
   the system's trials are checked to have the core's fingerprints (same parameter sets);
   the ratio is against the core in as many processes as trainers;
3. the samplers: TPE (`bayesian`) and CMA-ES as a job's holder drives them (BatchOptimizer,
   the default model batch size), told the objective of real backtests, with the sampler's
   own time (ask + tell) per trial around each of `--sampler-marks` trials told;
   In each system, a TPE and a CMA-ES job of `--model-trials` trials: against the sampler's
   own time, it shows how much the replicas' work adds (the holder publishes each trial as
   soon as it is asked, so replicas evaluate while the sampler thinks);
4. memory: a `--memory-trials` random job on the whole BTC file in each system, then each
   trainer's RSS and its peak (VmHWM) from /proc.

`--profile DIR` samples every trainer with py-spy during the first measured job and prints
where its time went (the functions with the most samples, by own time and with callees);
the raw folded stacks are left in DIR. The load average is printed at the start and the end:
the machine is shared, so read the ratios, which compare figures of the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # run as a script from the repo root: `tests` is importable

from tests.benchmarks.bench_training import (  # noqa: E402
    BARS,
    DEFAULT_DATA,
    FULL,
    CpuProbe,
    JobRun,
    memory_kb,
    resources,
    run_job,
    training,
)
from tests.integration.flows import BTC, Client, running_system  # noqa: E402
from tradepulse.cli.embedded import relocated_root  # noqa: E402
from tradepulse.quant import (  # noqa: E402
    BacktestSettings,
    Candles,
    get_strategy,
    last_window,
    load_candles,
    run_backtest,
)
from tradepulse.trainer.optimizer import BatchOptimizer, SamplerSpec  # noqa: E402
from tradepulse.trainer.settings import TrainerSettings  # noqa: E402
from tradepulse.trainer.validation import trial_block_sums  # noqa: E402

STRATEGY = "LIQUIDITY_SWEEP"
SEED = 13
TARGET_SHARE = 0.60
TARGET_RSS_MB = 400.0
PY_SPY = Path(sys.executable).parent / "py-spy"
Params = dict[str, float | int]


def default_batch_size(name: str) -> int:
    value = TrainerSettings.model_fields[name].default
    assert isinstance(value, int)
    return value


def asked_params(optimizer: str, n: int, batch_size: int, seed: int) -> list[Params]:
    """The parameters a job's holder asks for a non-adaptive sampler: batch by batch."""
    space = get_strategy(STRATEGY).space
    study = BatchOptimizer(SamplerSpec(optimizer, batch_size), seed, space)
    out: list[Params] = []
    while len(out) < n:
        asked = study.ask_batch(min(batch_size, n - len(out)))
        out.extend(a.params for a in asked)
        study.tell_batch({a.number: 0.0 for a in asked})
    return out


# 1. The core ---------------------------------------------------------------------------------


@dataclass
class Window:
    candles: Candles
    trade_from: int
    prepared: Any


def job_window(history: Candles, bars: int) -> Window:
    strategy = get_strategy(STRATEGY)
    window = last_window(history, bars, strategy.warmup_bars(history.timeframe_seconds))
    return Window(window.candles, window.trade_from, strategy.prepare(window.candles))


def evaluate(window: Window, params: Params) -> tuple[str, float | None]:
    """What a trainer computes for one trial: the backtest, its fingerprint, its block sums."""
    strategy = get_strategy(STRATEGY)
    result = run_backtest(
        window.candles,
        strategy,
        strategy.parse_params(params),
        BacktestSettings(),
        trade_from=window.trade_from,
        prepared=window.prepared,
    )
    trial_block_sums(result, 16)
    value = result.metrics["sharpe_ratio"]
    return result.fingerprint, None if value is None else float(value)


def _core_worker(window: Window, params: list[Params], conn: Any) -> None:
    """Wait for (index, processes); run params[index::processes]; send back the seconds."""
    evaluate(window, params[0])  # the kernels loaded, as in a trainer that has run a trial
    conn.send("ready")
    while (command := conn.recv()) is not None:
        index, processes = command
        started = time.perf_counter()
        for p in params[index::processes]:
            evaluate(window, p)
        conn.send(time.perf_counter() - started)


class CorePool:
    """Processes forked once (before any event loop) that run the job's parameter sets on
    demand, so that the core is measured right before and after each system job: the
    machine's load moves from second to second, and only figures taken together compare."""

    def __init__(self, window: Window, params: list[Params], processes: int) -> None:
        ctx = mp.get_context("fork")
        self.params = params
        self.conns = []
        self.procs = []
        for _ in range(processes):
            mine, theirs = ctx.Pipe()
            proc = ctx.Process(target=_core_worker, args=(window, params, theirs), daemon=True)
            proc.start()
            self.conns.append(mine)
            self.procs.append(proc)
        for conn in self.conns:
            assert conn.recv() == "ready"

    def rate(self, processes: int) -> float:
        """Trials per second of `processes` of them sharing the parameter sets evenly (all
        trials over the slowest one's time)."""
        for i, conn in enumerate(self.conns[:processes]):
            conn.send((i, processes))
        times: list[float] = [conn.recv() for conn in self.conns[:processes]]
        return len(self.params) / max(times)

    def close(self) -> None:
        for conn in self.conns:
            conn.send(None)
        for proc in self.procs:
            proc.join()


# 2. The system -------------------------------------------------------------------------------


@dataclass
class SystemRun:
    trainers: int
    jobs: list[JobRun] = field(default_factory=list)
    core: list[float] = field(default_factory=list)  # per job: the core's rate around it
    memory: list[tuple[str, float, float]] = field(default_factory=list)
    memory_job_s: float | None = None
    model_jobs: dict[str, JobRun] = field(default_factory=dict)
    profile: list[str] = field(default_factory=list)

    @property
    def rates(self) -> list[float]:
        return [j.n / j.wall for j in self.jobs]

    @property
    def shares(self) -> list[float]:
        return [r / c for r, c in zip(self.rates, self.core, strict=True)]


def py_spy_start(pid: int, out: Path, seconds: float) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            *(str(PY_SPY), "record", "-p", str(pid), "-d", str(max(1, int(seconds)))),
            *("-r", "200", "-f", "raw", "-o", str(out), "--nonblocking"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


# Where a trainer's samples go: the first of these frames, from the outermost, names the step.
STEPS = {
    "run_backtest": "backtest (the core)",
    "BacktestResult.fingerprint": "fingerprint (the core)",
    "trial_block_sums": "block sums (the core)",
    "TrainingRepository.insert_trials": "storing trials (PostgreSQL)",
    "NatsBus.announce_trials": "announcing results (NATS)",
    "NatsBus.announce_trial": "announcing results (NATS)",
    "decode": "decoding work items",
    "Puller.fetch": "fetching work items",
    "JetStreamDelivery.ack": "acking work items",
    "evaluate": "evaluate: the rest (params, result message)",
    "BatchOptimizer.ask_batch": "sampler: ask",
    "BatchOptimizer.ask_more": "sampler: ask",
    "BatchOptimizer.tell_batch": "sampler: tell",
    "StudyRunner._trial_spec": "holder: building work items",
    "StudyRunner._work": "holder: building work items",
    "NatsBus.publish_work": "holder: publishing work items",
    "NatsBus.subscribe_trials.<locals>.callback": "holder: reading results",
    "StudyRunner._wait_for": "holder: waiting for a batch",
    "record_progress": "holder: progress",
    "record_report": "holder: validation report",
    "record_importances": "holder: importances",
    "Client._flusher": "NATS client: writing",
    "Client._read_loop": "NATS client: reading",
    "EpollSelector.select": "idle in the event loop",
}


def summarize_profile(path: Path, top: int = 12) -> list[str]:
    """Where a trainer's samples went (py-spy raw, folded stacks): by step, then by function
    (own time)."""
    steps: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0
    if not path.exists():
        return [f"no profile in {path}"]
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack:
            continue
        count = int(count_text)
        total += count
        frames = [f.split(" (")[0] for f in stack.split(";")]
        steps[next((STEPS[f] for f in frames if f in STEPS), "other")] += count
        own[frames[-1]] += count
    if not total:
        return ["no samples"]
    lines = [f"{total} samples (idle waits are not sampled); by step:"]
    lines += [f"    {100 * c / total:5.1f}%  {name}" for name, c in steps.most_common()]
    lines.append("  by function (own time):")
    lines += [f"    {100 * c / total:5.1f}%  {name}" for name, c in own.most_common(top)]
    return lines


async def bench_system(
    trainers: int,
    tmp: Path,
    names: Any,
    nats_url: str | None,
    database_url: str | None,
    args: argparse.Namespace,
    core_prints: dict[int, str],
    ingested: list[bool],
    pool: CorePool,
) -> SystemRun:
    run = SystemRun(trainers)
    print(f"\n=== the system with {trainers} trainer{'s' if trainers > 1 else ''} ===")
    async with (
        running_system(
            tmp,
            names,
            trainers=trainers,
            nats_url=nats_url,
            database_url=database_url,
            environment={"trainer": args.trainer_env},
        ) as system,
        Client.connect(system.nats_url, names) as client,
    ):
        if not ingested or nats_url is None:
            event = await client.ingest_file(args.data, BTC)
            assert event.coverage.rows == FULL, event.coverage.rows
            ingested.append(True)
        probe = CpuProbe(system)
        pids = {
            proc.name: proc.pid
            for proc in system.processes.values()
            if proc.service == "trainer" and proc.pid is not None
        }
        warm = await run_job(client, training("random", 200, BARS, SEED + 1))
        print(f"  warm-up job (200 trials, dataset loaded and prepared): {warm.wall:.2f} s")
        for i in range(args.repeat):
            spies: list[tuple[str, Path, subprocess.Popen[bytes]]] = []
            if args.profile is not None and i == 0:
                expect = args.trials / (150 * trainers)
                for name, pid in pids.items():
                    out = args.profile / f"{trainers}-trainers-{name}.txt"
                    spies.append((name, out, py_spy_start(pid, out, expect)))
            before = pool.rate(trainers)
            job = await run_job(client, training("random", args.trials, BARS, SEED), probe)
            for _, _, spy in spies:
                spy.wait()
            after = pool.rate(trainers)
            run.jobs.append(job)
            run.core.append((before + after) / 2)
            same = sum(core_prints.get(t.number) == t.fingerprint for t in job.trials)
            print(
                f"  job {i + 1}: {args.trials:,} random trials in {job.wall:.2f} s → "
                f"{job.n / job.wall:.0f} trials/s [{job.breakdown()}; batch "
                f"{job.view.batch_size}]; {same:,} of {len(job.trials):,} fingerprints equal "
                "the core's"
            )
            print(
                f"    the core in {trainers} process(es) just before and after: {before:.0f} and "
                f"{after:.0f} trials/s → the system did {100 * run.shares[-1]:.0f} % of it"
            )
            print(f"    {job.replicas()}")
            if job.usage is not None:
                print(f"    {job.usage.describe()}")
            for name, out, _ in spies:
                lines = summarize_profile(out)
                run.profile += [f"{trainers} trainer(s), {name}: {lines[0]}", *lines[1:]]
                print(f"    py-spy, {name}: " + "\n    ".join(lines))
        for optimizer in ("bayesian", "cmaes") if args.model_trials else ():
            job = await run_job(client, training(optimizer, args.model_trials, BARS, SEED))
            run.model_jobs[optimizer] = job
            backtests = sum(t.duration_ms for t in job.trials) / 1000
            print(
                f"  {optimizer}: {args.model_trials:,} trials in {job.wall:.2f} s "
                f"({1000 * job.wall / job.n:.2f} ms a trial; backtests {backtests:.2f} s in all, "
                f"batch {job.view.batch_size}) [{job.breakdown()}]"
            )
        if args.memory_trials:
            job = await run_job(client, training("random", args.memory_trials, FULL, SEED + 2))
            run.memory_job_s = job.wall
            print(
                f"  memory job: {args.memory_trials:,} random trials on all {FULL:,} bars in "
                f"{job.wall:.1f} s"
            )
            for name, pid in pids.items():
                mem = memory_kb(pid)
                run.memory.append((name, mem["VmRSS"] / 1024, mem["VmHWM"] / 1024))
                print(
                    f"    {name} (pid {pid}): RSS {mem['VmRSS'] / 1024:.0f} MB, "
                    f"peak {mem['VmHWM'] / 1024:.0f} MB"
                )
    return run


# 3. The samplers -----------------------------------------------------------------------------


@dataclass
class SamplerCost:
    optimizer: str
    batch_size: int
    per_trial_ms: dict[int, float]  # mark → ms of ask + tell per trial in the batches before it
    total_s: float
    backtests_s: float
    spent: list[tuple[int, float, int]]  # per batch: trials told before it, seconds, size

    def mean_ms(self, n: int) -> float:
        """Mean ask + tell per trial over the first n trials."""
        inside = [(s, k) for first, s, k in self.spent if first + k <= n]
        return 1000 * sum(s for s, _ in inside) / max(1, sum(k for _, k in inside))


def sampler_cost(optimizer: str, window: Window, marks: list[int], span: int) -> SamplerCost:
    """Drive the sampler as a holder does, told real objectives; time ask + tell only.

    The figure at mark m is the mean over the batches whose trials lie in [m - span, m).
    """
    batch = default_batch_size("model_batch_size")
    study = BatchOptimizer(SamplerSpec(optimizer, batch), SEED, get_strategy(STRATEGY).space)
    spent: list[tuple[int, float, int]] = []  # (trials before the batch, seconds, size)
    backtests = 0.0
    told = 0
    began = time.perf_counter()
    while told < max(marks):
        size = min(batch, max(marks) - told)
        t0 = time.perf_counter()
        asked = study.ask_batch(size)
        ask_s = time.perf_counter() - t0
        t1 = time.perf_counter()
        values = {a.number: evaluate(window, a.params)[1] for a in asked}
        backtests += time.perf_counter() - t1
        t2 = time.perf_counter()
        study.tell_batch(values)
        spent.append((told, ask_s + time.perf_counter() - t2, size))
        told += size
    total = time.perf_counter() - began
    per: dict[int, float] = {}
    for mark in marks:
        inside = [(s, n) for first, s, n in spent if mark - span <= first and first + n <= mark]
        per[mark] = 1000 * sum(s for s, _ in inside) / max(1, sum(n for _, n in inside))
    return SamplerCost(optimizer, batch, per, total, backtests, spent)


# The report ----------------------------------------------------------------------------------


def machine() -> str:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    return f"{os.cpu_count()} cores ({cpu}), Python {platform.python_version()}"


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


async def systems(
    args: argparse.Namespace, tmp: Path, core_prints: dict[int, str], pool: CorePool
) -> list[SystemRun]:
    out = []
    ingested: list[bool] = []
    async with resources(args.embedded) as (names, nats_url, database_url):
        for trainers in args.trainers:
            out.append(
                await bench_system(
                    trainers, tmp, names, nats_url, database_url, args, core_prints, ingested, pool
                )
            )
    return out


def main(args: argparse.Namespace) -> int:
    began = time.perf_counter()
    command = f"{os.path.relpath(sys.executable)} {shlex.join(sys.argv)}"
    print(f"command: {command}")
    print(f"machine: {machine()}; load average at start {load()}")
    if args.profile is not None:
        args.profile.mkdir(parents=True, exist_ok=True)

    history = load_candles(args.data)
    window = job_window(history, BARS)
    # The job's batch size decides its parameter sets (each batch's sampler is seeded anew).
    batch = int(args.trainer_env.get("TRAINER_BATCH_SIZE", default_batch_size("batch_size")))
    params = asked_params("random", args.trials, batch, SEED)
    core: dict[int, float] = {}
    print(f"\n=== the core: the job's {args.trials:,} parameter sets on {BARS:,} bars ===")
    core_prints = {k: evaluate(window, p)[0] for k, p in enumerate(params)}
    pool = CorePool(window, params, max(args.trainers))
    for processes in sorted({1, *args.trainers}):
        core[processes] = pool.rate(processes)
        print(f"  {processes} process(es): {core[processes]:.0f} trials/s")

    runs: list[SystemRun] = []
    if "system" not in args.skip:
        tmp = Path(tempfile.mkdtemp(prefix="bench-system-"))
        tmp.chmod(0o755)  # user postgres enters it (embedded servers)
        try:
            runs = asyncio.run(systems(args, tmp, core_prints, pool))
        finally:
            pool.close()
            for data_dir in tmp.glob("system-*"):
                shutil.rmtree(relocated_root(data_dir), ignore_errors=True)
            shutil.rmtree(tmp, ignore_errors=True)

    costs: list[SamplerCost] = []
    if "samplers" not in args.skip:
        print(f"\n=== the samplers' own cost per trial (ask + tell), around {args.marks} ===")
        for optimizer in ("bayesian", "cmaes"):
            cost = sampler_cost(optimizer, window, args.marks, args.span)
            costs.append(cost)
            figures = ", ".join(f"{m:,}: {ms:.2f} ms" for m, ms in cost.per_trial_ms.items())
            print(
                f"  {optimizer} (batch {cost.batch_size}): {figures}; whole run "
                f"{cost.total_s:.1f} s, of which backtests {cost.backtests_s:.1f} s"
            )

    print(f"\ntotal benchmark time {time.perf_counter() - began:.0f} s; command: {command}")
    print(f"machine: {machine()}; load average at the end {load()}\n")
    ok = True
    print("| figure | target | measured |")
    print("|---|---|---|")
    if core:
        for processes, rate in core.items():
            print(f"| the core, {processes} process(es), {BARS:,} bars | | {rate:.0f} trials/s |")
    for run in runs:
        rates = ", ".join(f"{r:.0f} of {c:.0f}" for r, c in zip(run.rates, run.core, strict=True))
        share = ""
        if run.shares:
            median = statistics.median(run.shares)
            share = f" → **{100 * median:.0f} %** (median)"
            ok &= median >= TARGET_SHARE
        print(
            f"| the system, {run.trainers} trainer(s), {args.trials:,} random trials, against "
            f"the core in {run.trainers} process(es) around each job "
            f"| ≥ {100 * TARGET_SHARE:.0f} % | {rates} trials/s{share} |"
        )
        if run.memory:
            peak = max(hwm for _, _, hwm in run.memory)
            ok &= peak <= TARGET_RSS_MB
            mems = ", ".join(f"{rss:.0f} MB (peak {hwm:.0f} MB)" for _, rss, hwm in run.memory)
            print(
                f"| trainer RSS, {run.trainers} trainer(s), whole BTC file + "
                f"{args.memory_trials:,}-trial job | ≤ {TARGET_RSS_MB:.0f} MB | {mems} |"
            )
    for cost in costs:
        figures = ", ".join(f"{ms:.2f} ms at {m:,}" for m, ms in cost.per_trial_ms.items())
        print(
            f"| {cost.optimizer}: the sampler's own cost per trial (ask + tell, batch "
            f"{cost.batch_size}), in-process | | {figures}; {cost.total_s:.1f} s for "
            f"{max(args.marks):,} trials, of which backtests {cost.backtests_s:.1f} s |"
        )
    for run in runs:
        for optimizer, job in run.model_jobs.items():
            mean = next((c.mean_ms(job.n) for c in costs if c.optimizer == optimizer), None)
            alone = f" (the sampler alone: {mean:.2f} ms)" if mean is not None else ""
            print(
                f"| {optimizer}: {job.n:,} trials through the system, {run.trainers} trainer(s), "
                f"request → configuration | | {job.wall:.2f} s, {1000 * job.wall / job.n:.2f} ms "
                f"a trial{alone} |"
            )
    return 0 if ok else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--embedded", action="store_true", help="let the system start its servers")
    parser.add_argument("--trials", type=int, default=3000, help="trials of each measured job")
    parser.add_argument("--repeat", type=int, default=2, help="measured jobs per system")
    parser.add_argument("--trainers", type=lambda s: [int(x) for x in s.split(",")], default=[1, 2])
    parser.add_argument(
        "--sampler-marks",
        dest="marks",
        type=lambda s: [int(x) for x in s.split(",")],
        default=[200, 1000, 5000],
    )
    parser.add_argument("--span", type=int, default=96, help="trials averaged before each mark")
    parser.add_argument("--memory-trials", type=int, default=5000)
    parser.add_argument(
        "--model-trials", type=int, default=1000, help="trials of the TPE and CMA-ES system jobs"
    )
    parser.add_argument(
        "--trainer-env",
        type=lambda s: dict(kv.split("=", 1) for kv in s.split(",") if kv),
        default={},
        help="extra trainer settings, e.g. TRAINER_BATCH_SIZE=256,TRAINER_TRIALS_PER_ITEM=16",
    )
    parser.add_argument("--profile", type=Path, help="sample the trainers with py-spy into DIR")
    parser.add_argument(
        "--skip", type=lambda s: set(s.split(",")), default=set(), help="system,samplers"
    )
    raise SystemExit(main(parser.parse_args()))
