"""`tradepulse up`: the whole system on this machine, until Ctrl-C or SIGTERM.

A thin command over `tradepulse.cli.supervisor.System`: builds the configuration from the
options and the environment, prints what runs where, and reports restarts as they happen.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import re
import shutil
import signal
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tradepulse.cli.errors import UserError
from tradepulse.cli.gateway_access import (
    GATEWAY,
    GatewayAccess,
    configured_keys,
    saved_api_key,
    wait_http_ready,
    with_gateway_settings,
)

# The supervisor (nats, asyncpg, the contracts) is imported where it is used: every command
# shares this parser, and `tradepulse jobs` should not pay a second of imports for `up`.
if TYPE_CHECKING:
    from tradepulse.cli.supervisor import Config, System

NAMESPACE = re.compile(r"^[a-z][a-z0-9_]*$")
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "up",
        help="run the whole system on this machine",
        description="Start NATS (JetStream) and PostgreSQL on free loopback ports, or use the "
        "servers named by NATS_URL / DATABASE_URL, then the services (ingest, registry, one "
        "trainer per core, the gateway when installed, on 127.0.0.1:--port); restart any that "
        "dies; stop everything on Ctrl-C or SIGTERM. With TRADEPULSE_API_KEYS unset, the "
        "gateway gets an API key generated once and kept in the data dir (api_key, 0600).",
    )
    p.add_argument(
        "--data-dir",
        default=".tradepulse",
        type=Path,
        help="folder for server data, logs and state (default: ./.tradepulse)",
    )
    p.add_argument(
        "--trainers",
        type=int,
        default=os.cpu_count() or 1,
        metavar="N",
        help="trainer processes (default: one per core)",
    )
    p.add_argument(
        "--namespace",
        default=None,
        help="prefix of every NATS subject and stream (default: $TP_NAMESPACE or tp)",
    )
    p.add_argument(
        "--port",
        type=int,
        default=8000,
        help="port of the gateway's HTTP API on 127.0.0.1 (default: 8000)",
    )
    p.add_argument(
        "--ready-timeout",
        type=float,
        default=60.0,
        metavar="S",
        help="seconds to wait for every process to answer its ping (default: 60)",
    )
    p.add_argument(
        "--stop-timeout",
        type=float,
        default=10.0,
        metavar="S",
        help="seconds a service gets to exit after SIGTERM before SIGKILL (default: 10)",
    )
    # For tests and debugging: a comma-separated subset of the services ("" = servers only).
    p.add_argument("--services", default=None, help=argparse.SUPPRESS)
    p.set_defaults(run=run)

    d = sub.add_parser(
        "down",
        help="stop a `tradepulse up` of a data dir; --purge also deletes its data",
        description="Stop the `tradepulse up` of --data-dir (or what a killed one left running). "
        "With --purge, then delete the data dir and its PostgreSQL cluster, also where it was "
        "relocated (/var/lib/tradepulse/<hash>), and every relocated cluster whose data dir no "
        "longer exists.",
    )
    d.add_argument(
        "--data-dir",
        default=".tradepulse",
        type=Path,
        help="the data dir of that `up` (default: ./.tradepulse; `demo` uses ./.tradepulse-demo)",
    )
    d.add_argument("--purge", action="store_true", help="delete the data and the clusters too")
    d.add_argument(
        "--stop-timeout",
        type=float,
        default=30.0,
        metavar="S",
        help="seconds to wait for each process to exit before SIGKILL (default: 30)",
    )
    d.set_defaults(run=run_down)


def _say(line: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {line}", flush=True)


def namespace_from(option: str | None, environ: Mapping[str, str]) -> str:
    namespace = option or environ.get("TP_NAMESPACE") or "tp"
    if not NAMESPACE.match(namespace):
        raise UserError(
            f"namespace {namespace!r} must be lower-case letters, digits and _, starting with a letter"
        )
    return namespace


def config_from(args: argparse.Namespace, environ: Mapping[str, str]) -> Config:
    from tradepulse.cli.supervisor import Config, SystemStartError, select_services

    if args.trainers < 1:
        raise UserError("--trainers must be at least 1")
    if args.ready_timeout <= 0 or args.stop_timeout <= 0:
        raise UserError("--ready-timeout and --stop-timeout must be positive")
    if not 1 <= args.port <= 65535:
        raise UserError("--port must be between 1 and 65535")
    namespace = namespace_from(args.namespace, environ)
    only = (
        None
        if args.services is None
        else [s.strip() for s in args.services.split(",") if s.strip()]
    )
    try:
        services = select_services(args.trainers, only)
    except SystemStartError as exc:
        raise UserError(str(exc)) from exc
    return Config(
        data_dir=args.data_dir.expanduser().resolve(),
        services=services,
        namespace=namespace,
        nats_url=environ.get("NATS_URL") or None,
        database_url=environ.get("DATABASE_URL") or None,
        stop_timeout=args.stop_timeout,
        report=_say,
    )


def gateway_access(
    args: argparse.Namespace, config: Config, environ: Mapping[str, str]
) -> tuple[Config, GatewayAccess | None]:
    """The gateway on --port, accepting TRADEPULSE_API_KEYS if set, else the data dir's key."""
    if not any(s.name == GATEWAY for s in config.services):
        return config, None
    if configured_keys(environ):
        access = GatewayAccess(args.port, None)
    else:
        try:
            key, path, generated = saved_api_key(config.data_dir)
        except OSError as exc:
            raise UserError(f"cannot keep the API key in {config.data_dir}: {exc}") from exc
        access = GatewayAccess(args.port, key, path, generated)
    services = with_gateway_settings(config.services, access.port, access.api_key)
    return dataclasses.replace(config, services=services), access


def gateway_lines(access: GatewayAccess) -> list[str]:
    lines = [f"  gateway  {access.url}  (API docs {access.url}/docs)"]
    if access.api_key is None:
        lines.append("  API keys from TRADEPULSE_API_KEYS")
    else:
        how = "generated now" if access.generated else "generated earlier"
        lines.append(
            f"  API key  {access.api_key}  ({how}, kept in {access.key_file})\n"
            f"      export TRADEPULSE_URL={access.url} TRADEPULSE_API_KEY={access.api_key}"
        )
    return lines


URLS_FILE = "urls.env"


def write_urls(system: System) -> Path | None:
    """The embedded servers' full URLs (with their passwords) in `<data-dir>/urls.env`, mode
    0600, for the user to source; None when both servers came from the environment. The
    screen and the logs only ever show them masked: those passwords bypass the API keys."""
    if system.nats is None and system.postgres is None:
        return None
    path = system.data_dir / URLS_FILE
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, f"NATS_URL={system.nats_url}\nDATABASE_URL={system.database_url}\n".encode())
    finally:
        os.close(fd)
    return path


def summary(
    system: System, access: GatewayAccess | None = None, urls_file: Path | None = None
) -> str:
    from tradepulse.cli.supervisor import mask_url

    lines = [f"TradePulse is up: namespace {system.names.prefix}, data dir {system.data_dir}"]
    if access is not None:
        lines.extend(gateway_lines(access))
    where = f"  (full URL in {urls_file}, mode 0600)" if urls_file else ""
    if system.nats is not None:
        lines.append(
            f"  NATS_URL={mask_url(system.nats_url)}{where}\n"
            f"      nats-server pid {system.nats.pid}, log {system.nats.log_path}"
        )
    else:
        lines.append(f"  NATS_URL={mask_url(system.nats_url)}  (from the environment)")
    if system.postgres is not None:
        pg = system.postgres
        lines.append(
            f"  DATABASE_URL={mask_url(system.database_url)}{where}\n"
            f"      PostgreSQL {pg.version} pid {pg.postmaster_pid()}, cluster {pg.cluster}, "
            f"log {pg.log_path}"
        )
        if system.cluster_note:
            lines.append(f"      ({system.cluster_note})")
    else:
        lines.append(f"  DATABASE_URL={mask_url(system.database_url)}  (from the environment)")
    if system.processes:
        lines.append(f"  {'process':<14}{'pid':>8}{'metrics':>9}  log")
        for proc in system.processes.values():
            lines.append(
                f"  {proc.name:<14}{proc.pid or '-':>8}{proc.metrics_port:>9}  {proc.log_path}"
            )
    else:
        lines.append("  no services started")
    lines.append(f"Ctrl-C (or SIGTERM to pid {os.getpid()}) stops everything.")
    return "\n".join(lines)


async def serve(config: Config, ready_timeout: float, access: GatewayAccess | None = None) -> int:
    """Start, wait until ready, run until a signal, stop. A signal during start-up aborts it."""
    from tradepulse.cli.supervisor import NotReadyError, PortTakenError, System, SystemStartError

    loop = asyncio.get_running_loop()
    main = asyncio.current_task()
    assert main is not None
    stop = asyncio.Event()
    phase = ["starting"]  # -> running -> stopping; a list so on_signal can change it

    def on_signal() -> None:
        # While starting, cancel the start; once running, stop in order; later ones are ignored
        # so that a second Ctrl-C cannot interrupt the orderly stop.
        if phase[0] == "starting":
            main.cancel()
        elif phase[0] == "running":
            stop.set()
        phase[0] = "stopping"

    # SIGHUP too: when the terminal goes away, the children (in sessions of their own) must not
    # be left behind.
    for sig in STOP_SIGNALS:
        loop.add_signal_handler(sig, on_signal)
    _say(f"starting in {config.data_dir}")
    try:
        async with System.start(config) as system:
            if system.processes:
                _say(f"waiting until {len(system.processes)} processes answer their ping")
            try:
                await system.wait_ready(ready_timeout)
                if access is not None and not await wait_http_ready(access.url, ready_timeout):
                    raise NotReadyError([system.processes[f"{GATEWAY}-1"]], ready_timeout)
            except NotReadyError:
                phase[0] = "stopping"
                raise
            if phase[0] == "starting":
                phase[0] = "running"
            print(summary(system, access, write_urls(system)), flush=True)
            await stop.wait()
            _say("stopping")
    except asyncio.CancelledError:
        _say("stopped before everything was ready")
        return 1
    except NotReadyError as exc:
        print(f"tradepulse up: {exc}", file=sys.stderr, flush=True)
        return 1
    except PortTakenError as exc:
        raise UserError(
            f"{exc}: stop it, or choose another port with --port (e.g. --port {exc.port + 1})"
        ) from exc
    except SystemStartError as exc:
        raise UserError(str(exc)) from exc
    finally:
        for sig in STOP_SIGNALS:
            loop.remove_signal_handler(sig)
    _say("stopped")
    return 0


def run(args: argparse.Namespace) -> int:
    config, access = gateway_access(args, config_from(args, os.environ), os.environ)
    return asyncio.run(serve(config, args.ready_timeout, access))


def recorded_state(data_dir: Path) -> dict[str, Any] | None:
    """data_dir/state.json, None if there is none; refuses a folder that is not a data dir."""
    state_file = data_dir / "state.json"
    try:
        state = json.loads(state_file.read_text())
    except FileNotFoundError:
        if data_dir.exists() and any(data_dir.iterdir()):
            raise UserError(
                f"{data_dir} has no state.json: not a data dir of `tradepulse up`"
            ) from None
        return None
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot read {state_file}: {exc}") from exc
    return state if isinstance(state, dict) else {}


async def stop_recorded(state: Mapping[str, Any], grace: float) -> None:
    """Stop the `up` a state.json names, or, if it was killed, what it left running (only pids
    that still carry the start time recorded for them): the services, then the servers."""
    from tradepulse.cli.embedded import pid_alive, process_starttime, terminate_pid

    up_pid = state.get("up_pid")
    if isinstance(up_pid, int) and up_pid != os.getpid() and pid_alive(up_pid):
        _say(f"stopping tradepulse up (pid {up_pid})")
        # It stops its services, then NATS and PostgreSQL, in order.
        await terminate_pid(up_pid, grace)
    left = [
        (name, entry["pid"])
        for name, entry in (state.get("processes") or {}).items()
        if isinstance(entry.get("pid"), int)
        and pid_alive(entry["pid"])
        and process_starttime(entry["pid"]) == entry.get("starttime")
    ]
    servers = ("nats", "postgres")
    for group in ([x for x in left if x[0] not in servers], [x for x in left if x[0] in servers]):
        for name, pid in group:
            _say(f"stopping {name} (pid {pid}) left running")
        await asyncio.gather(*(terminate_pid(pid, grace) for _, pid in group))


def purge(data_dir: Path) -> None:
    from tradepulse.cli.embedded import purge_relocated

    for removed in purge_relocated(data_dir):
        _say(f"removed the PostgreSQL cluster {removed}")
    if data_dir.exists():
        shutil.rmtree(data_dir)
        _say(f"removed {data_dir}")


def run_down(args: argparse.Namespace) -> int:
    if args.stop_timeout <= 0:
        raise UserError("--stop-timeout must be positive")
    data_dir = args.data_dir.expanduser().resolve()
    state = recorded_state(data_dir)
    if state is not None:
        asyncio.run(stop_recorded(state, args.stop_timeout))
    if args.purge:
        purge(data_dir)
    else:
        _say(f"stopped; {data_dir} kept (--purge deletes it)")
    return 0
