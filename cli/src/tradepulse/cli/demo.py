"""`tradepulse demo`: the whole product in one command, on a machine with nothing running.

Starts the system (`supervisor.System`: embedded NATS and PostgreSQL, or the servers named by
NATS_URL / DATABASE_URL; ingest, registry, trainers and the gateway), imports the shared BTC
candles through the gateway's upload endpoint, runs the predecessor's example job (random
search, 200 trials, the last 10,000 candles, seed 12345) with a live progress bar, prints the
best configuration and where to look next, and stops everything it started.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import shutil
import signal
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tradepulse.cli import render
from tradepulse.cli.client import Gateway
from tradepulse.cli.data import describe_import, upload_file
from tradepulse.cli.errors import UserError
from tradepulse.cli.gateway_access import (
    GATEWAY,
    new_api_key,
    wait_http_ready,
    with_gateway_settings,
)
from tradepulse.cli.training import follow_job
from tradepulse.cli.up import namespace_from

# As in `up`: the supervisor is imported where it is used, to keep the client commands quick.
if TYPE_CHECKING:
    from tradepulse.cli.supervisor import Config, System

SHARED_CANDLES = Path("shared") / "data" / "binance_BTC-USDT_5m.csv.gz"
# The layout of ../shared/data: <exchange>_<BASE>-<QUOTE>_<timeframe>.<csv|csv.gz|parquet>
FILE_NAME = re.compile(
    r"^(?P<exchange>[a-z0-9.-]+)_(?P<base>[A-Z0-9.]+)-(?P<quote>[A-Z0-9.]+)_"
    r"(?P<timeframe>[1-9][0-9]*[mhdw])\.(?:csv|csv\.gz|parquet|pq)$"
)
# The predecessor's example job.
EXAMPLE_JOB: dict[str, Any] = {
    "strategy": "LIQUIDITY_SWEEP",
    "optimizer": "random",
    "n_iterations": 200,
    "lookback_candles": 10_000,
    "seed": 12345,
}
# The same search as a walk-forward job: 5 folds x 200 trials (and the final optimization)
# over the last 100,000 candles, each fold's best tested on the span after it.
WALK_FORWARD_JOB: dict[str, Any] = {
    **EXAMPLE_JOB,
    "lookback_candles": 100_000,
    "walk_forward": {"folds": 5, "mode": "rolling", "is_oos_ratio": 4},
}
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "demo",
        help="start everything, train on the shared BTC candles, show the result, stop",
        description="Start the system (embedded NATS and PostgreSQL, or NATS_URL / "
        "DATABASE_URL), import the shared BTC/USDT 5m candles through the gateway, run the "
        "predecessor's example job (random, 200 trials, 10,000 candles, seed 12345) with a live "
        "progress bar, print the best configuration, and stop everything.",
    )
    p.add_argument(
        "--data",
        type=Path,
        default=None,
        metavar="PATH",
        help=f"the candles (default: {SHARED_CANDLES}, looked for above the current folder, "
        "then above the installed package)",
    )
    p.add_argument(
        "--data-dir",
        type=Path,
        default=Path(".tradepulse-demo"),
        help="folder for server data, logs and state (default: ./.tradepulse-demo); "
        "`tradepulse up --data-dir` on it shows the demo's results again",
    )
    p.add_argument(
        "--namespace",
        default=None,
        help="prefix of every NATS subject and stream (default: $TP_NAMESPACE or tp)",
    )
    p.add_argument(
        "--port", type=int, default=0, help="the gateway's port (default: any free port)"
    )
    p.add_argument(
        "--trainers",
        type=int,
        default=os.cpu_count() or 1,
        metavar="N",
        help="trainer processes (default: one per core)",
    )
    p.add_argument("--ready-timeout", type=float, default=90.0, metavar="S", help=argparse.SUPPRESS)
    p.add_argument("--stop-timeout", type=float, default=10.0, metavar="S", help=argparse.SUPPRESS)
    p.set_defaults(run=run)


@dataclass(frozen=True)
class Dataset:
    exchange: str
    symbol: str
    timeframe: str

    def __str__(self) -> str:
        return f"{self.exchange} {self.symbol} {self.timeframe}"


def locate_data(given: Path | None, cwd: Path, package: Path | None = None) -> Path:
    """--data, else shared/data/<BTC file> in the current folder or one above it, else above
    the installed package (a checkout installed editable finds ../shared from anywhere)."""
    if given is not None:
        if not given.is_file():
            raise UserError(f"--data {given}: no such file")
        return given
    package = package or Path(__file__).resolve().parent
    for start in (cwd.resolve(), package):
        for folder in (start, *start.parents):
            if (folder / SHARED_CANDLES).is_file():
                return folder / SHARED_CANDLES
    raise UserError(
        f"the shared candles ({SHARED_CANDLES}) are not in {cwd} or any folder above it, nor "
        "above the installed package; give the file with --data PATH"
    )


def dataset_of(path: Path) -> Dataset:
    """The dataset a file holds, from its name in the layout of ../shared/data."""
    match = FILE_NAME.match(path.name)
    if match is None:
        raise UserError(
            f"{path.name}: cannot tell the market from the file name; name it like "
            "binance_BTC-USDT_5m.csv.gz (<exchange>_<BASE>-<QUOTE>_<timeframe>)"
        )
    return Dataset(match["exchange"], f"{match['base']}/{match['quote']}", match["timeframe"])


def _say(line: str = "") -> None:
    print(line, flush=True)


def _event(line: str) -> None:
    """What the supervisor reports (restarts, relocations) while the demo runs."""
    print(f"    ({line})", flush=True)


def config_for(args: argparse.Namespace, environ: Mapping[str, str], port: int, key: str) -> Config:
    from tradepulse.cli.supervisor import Config, SystemStartError, select_services

    if args.trainers < 1:
        raise UserError("--trainers must be at least 1")
    try:
        services = select_services(args.trainers)
    except SystemStartError as exc:
        raise UserError(str(exc)) from exc
    if not any(s.name == GATEWAY for s in services):
        raise UserError(
            "the demo needs the gateway: the package tradepulse.gateway is not installed "
            "(scripts/bootstrap installs it)"
        )
    return Config(
        data_dir=args.data_dir.expanduser().resolve(),
        services=with_gateway_settings(services, port, key),
        namespace=namespace_from(args.namespace, environ),
        nats_url=environ.get("NATS_URL") or None,
        database_url=environ.get("DATABASE_URL") or None,
        stop_timeout=args.stop_timeout,
        report=_event,
    )


def servers_text(system: System) -> str:
    nats = "embedded NATS" if system.nats is not None else "NATS from NATS_URL"
    pg = "embedded PostgreSQL" if system.postgres is not None else "PostgreSQL from DATABASE_URL"
    return f"{nats}, {pg}"


def services_text(system: System) -> str:
    counts: dict[str, int] = {}
    for proc in system.processes.values():
        counts[proc.service] = counts.get(proc.service, 0) + 1
    return ", ".join(f"{n} {name}s" if n > 1 else name for name, n in counts.items())


def cli_command() -> str:
    """How the user's shell reaches this CLI: `tradepulse` when it is on the PATH, else the
    script's path (after `make demo` that is .venv/bin/tradepulse, the venv not activated)."""
    script = Path(sys.executable).with_name("tradepulse")
    on_path = shutil.which("tradepulse")
    if on_path is not None and Path(on_path).resolve() == script.resolve():
        return "tradepulse"
    with contextlib.suppress(ValueError):
        return str(script.relative_to(Path.cwd()))
    return str(script)


def next_steps(system: System, config_id: str | None) -> list[str]:
    tp = cli_command()
    # The results live in PostgreSQL: the embedded one is in the demo's data dir.
    up = f"{tp} up" if system.postgres is None else f"{tp} up --data-dir {system.data_dir}"
    # The client commands read the key from TRADEPULSE_API_KEY, else ./.tradepulse/api_key;
    # `up` keeps the key it generates in its data dir.
    default_key_file = Path(".tradepulse") / "api_key"
    key_file = default_key_file if system.postgres is None else system.data_dir / "api_key"
    use_key = (
        ""
        if key_file.resolve() == default_key_file.resolve()
        else f"TRADEPULSE_API_KEY=$(cat {key_file}) "
    )
    lines = [
        "where to look next:",
        f"  {up}",
        "      runs the system until Ctrl-C; it prints the gateway's URL "
        f"(http://127.0.0.1:8000) and an API key, kept in {key_file}",
        "  http://127.0.0.1:8000/docs",
        "      the HTTP API (OpenAPI), to read and try out with that key",
        f"  {use_key}{tp} configs --sort sharpe_ratio",
        "      the trained configurations, best first (in another terminal, while up runs)",
    ]
    if config_id:
        lines += [
            f"  {use_key}{tp} config {config_id}",
            "      this one, with its lineage and history",
        ]
    lines += [
        f"  {use_key}{tp} train --symbol BTC/USDT --exchange binance --timeframe 5m \\",
        "      --optimizer bayesian --n-iterations 200 --lookback 10000 --seed 12345",
        "      another job, followed live",
    ]
    return lines


@dataclass(frozen=True)
class Plan:
    config: Config
    data: Path
    size_mb: float
    dataset: Dataset
    port: int
    key: str
    ready_timeout: float

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


async def run_demo(plan: Plan) -> int:
    from tradepulse.cli.supervisor import NotReadyError, System

    config, dataset, url, key = plan.config, plan.dataset, plan.url, plan.key
    _say("TradePulse demo")
    _say(f"1/5 starting the system in {config.data_dir}")
    started = time.perf_counter()
    async with System.start(config) as system:
        _say(f"    {servers_text(system)}; waiting for {services_text(system)}")
        await system.wait_ready(plan.ready_timeout)
        if not await wait_http_ready(url, plan.ready_timeout):
            raise NotReadyError([system.processes[f"{GATEWAY}-1"]], plan.ready_timeout)
        _say(
            f"    ready in {time.perf_counter() - started:.1f} s: gateway {url} "
            f"(API docs {url}/docs), namespace {system.names.prefix}"
        )
        async with Gateway(url, key, key_source="the demo's own key") as gw:
            _say(
                f"2/5 importing {plan.data} ({plan.size_mb:.1f} MB) as {dataset}, "
                "through POST /api/v2/data/upload"
            )
            step = time.perf_counter()
            outcome = await upload_file(
                gw, plan.data, dataset.exchange, dataset.symbol, dataset.timeframe
            )
            describe_import(outcome, sys.stdout)
            _say(f"    imported in {time.perf_counter() - step:.1f} s")

            payload = {
                **EXAMPLE_JOB,
                "exchange": dataset.exchange,
                "symbol": dataset.symbol,
                "timeframe": dataset.timeframe,
            }
            _say(
                f"3/5 training {payload['strategy']} on {dataset}: {payload['optimizer']} search, "
                f"{payload['n_iterations']} trials, the last {payload['lookback_candles']:,} "
                f"candles, seed {payload['seed']} (POST /api/v2/training/start)"
            )
            step = time.perf_counter()
            accepted = await gw.submit_training(payload)
            job_id = str(accepted["job_id"])
            _say(f"    job {job_id} {accepted.get('status', 'queued')}")
            job, found = await follow_job(gw, job_id, int(payload["n_iterations"]))
            _say(
                f"    job {job_id} {job.get('status')}: {job.get('trials_done')} trials in "
                f"{time.perf_counter() - step:.1f} s"
            )
            completed = job.get("status") == "completed"
            if completed:
                _say("4/5 the result")
                render.best_configuration(job, found, sys.stdout)
                config_id = (found or {}).get("config_id") or job.get("config_id")
                completed = await walk_forward_step(gw, payload)
                _say()
                for line in next_steps(system, config_id):
                    _say(line)
                _say()
            else:
                _say(f"    {job.get('error') or 'the job did not complete'}")
        _say("stopping everything")
    _say("stopped; nothing is left running")
    return 0 if completed else 1


async def walk_forward_step(gw: Gateway, plain: Mapping[str, Any]) -> bool:
    """Step 5: the same search, walk-forward, and its verdict in plain words; whether the job
    completed."""
    wf = WALK_FORWARD_JOB["walk_forward"]
    payload = {**plain, **WALK_FORWARD_JOB}
    _say(
        f"5/5 the same search, walk-forward: {wf['folds']} folds x {payload['n_iterations']} "
        f"trials and a final optimization over the last {payload['lookback_candles']:,} "
        "candles; each fold's best is tested on the candles after its training span"
    )
    step = time.perf_counter()
    accepted = await gw.submit_training(payload)
    job_id = str(accepted["job_id"])
    total = int(payload["n_iterations"]) * (int(wf["folds"]) + 1)
    job, found = await follow_job(gw, job_id, total)
    _say(
        f"    job {job_id} {job.get('status')}: {job.get('trials_done')} trials in "
        f"{time.perf_counter() - step:.1f} s"
    )
    report = job.get("walk_forward")
    if job.get("status") != "completed" or not isinstance(report, dict):
        _say(f"    {job.get('error') or 'the walk-forward job did not complete'}")
        return False
    render.walk_forward_report(report, found, sys.stdout)
    _say(f"verdict: {render.walk_forward_verdict(found)}")
    return True


def plan_from(args: argparse.Namespace, environ: Mapping[str, str], cwd: Path) -> Plan:
    from tradepulse.cli.embedded import free_port

    data = locate_data(args.data, cwd)
    if args.port and not 1 <= args.port <= 65535:
        raise UserError("--port must be between 1 and 65535")
    port = args.port or free_port(set())
    key = new_api_key()
    return Plan(
        config=config_for(args, environ, port, key),
        data=data,
        size_mb=data.stat().st_size / 1e6,
        dataset=dataset_of(data),
        port=port,
        key=key,
        ready_timeout=args.ready_timeout,
    )


async def _main(plan: Plan) -> int:
    from tradepulse.cli.supervisor import NotReadyError, PortTakenError, SystemStartError

    loop = asyncio.get_running_loop()
    main = asyncio.current_task()
    assert main is not None
    for sig in STOP_SIGNALS:
        loop.add_signal_handler(sig, main.cancel)
    try:
        return await run_demo(plan)
    except asyncio.CancelledError:
        # System.start has stopped everything before the cancellation got here.
        print("tradepulse demo: interrupted; everything it started is stopped", file=sys.stderr)
        return 130
    except PortTakenError as exc:
        raise UserError(f"{exc}: choose another port with --port") from exc
    except SystemStartError as exc:
        raise UserError(str(exc)) from exc
    except NotReadyError as exc:
        raise UserError(f"the system did not start: {exc}") from exc
    finally:
        for sig in STOP_SIGNALS:
            loop.remove_signal_handler(sig)


def run(args: argparse.Namespace) -> int:
    return asyncio.run(_main(plan_from(args, os.environ, Path.cwd())))
