"""The whole system on one machine: servers, service processes, readiness, restarts, clean stop.

    async with System.start(config) as system:
        await system.wait_ready()
        system.nats_url, system.database_url, system.processes, system.kill("trainer-1")

Services are only ever launched as processes (`python -m tradepulse.<service>`); nothing here
imports service code. Each replica gets its own log file, metrics port and `TP_REPLICA`.

Readiness: a replica is ready once it answers `Names.ping(<service>)` with its replica name
(`TP_REPLICA`, as plain bytes: the one format of the common service skeleton). Every replica
answers each ping; pings are published to a private inbox a few times per round and every
reply is collected, so each answer marks exactly the replica that sent it.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import importlib.util
import json
import os
import signal
import sys
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import nats
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg

from tradepulse.cli.embedded import (
    DATABASE,
    EmbeddedError,
    NatsServer,
    PostgresServer,
    free_port,
    new_secret,
    open_log,
    pid_alive,
    place_cluster,
    port_is_free,
    postgres_run_as,
    process_starttime,
    tail,
    terminate_pid,
)
from tradepulse.common.bus import ensure_streams
from tradepulse.common.contracts.subjects import Names

FIRST_BACKOFF_S = 0.5
MAX_BACKOFF_S = 30.0
STABLE_AFTER_S = 30.0  # a replica that ran this long starts its backoff afresh
PING_WINDOW_S = 0.25
PROBE_EVERY_S = 0.2
# Run when installed, skipped silently when not: the gateway's package arrives with its own issue.
OPTIONAL_SERVICES = frozenset({"gateway"})


class SystemStartError(Exception):
    """The system cannot start as configured; the message says why and what to do."""


class PortTakenError(SystemStartError):
    """A fixed port a service needs (the gateway's) is held by another process."""

    def __init__(self, service: str, port: int) -> None:
        self.service = service
        self.port = port
        super().__init__(f"port {port} for the {service} is taken by another program")


class NotReadyError(Exception):
    def __init__(self, waiting: Sequence[Supervised], timeout: float) -> None:
        self.waiting = list(waiting)
        details = "; ".join(
            f"{p.name} (log {p.log_path}: {tail(p.log_path, 2) or 'empty'})" for p in waiting
        )
        super().__init__(f"not ready after {timeout:g} s: {details}")


# Services -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ServiceSpec:
    """One service and how many replicas of it to run; `command` replaces `python -m`;
    `environment` is added to (and overrides) what every replica of it inherits."""

    name: str
    replicas: int = 1
    command: tuple[str, ...] = ()
    environment: Mapping[str, str] = field(default_factory=dict, hash=False)
    ports: tuple[int, ...] = ()  # fixed ports it listens on: must be free before it starts

    @property
    def module(self) -> str:
        return f"tradepulse.{self.name}"

    def argv(self) -> list[str]:
        return list(self.command) if self.command else [sys.executable, "-m", self.module]


def service_installed(name: str) -> bool:
    """True if `python -m tradepulse.<name>` can run; looks for the files, imports nothing."""
    try:
        spec = importlib.util.find_spec(f"tradepulse.{name}")
    except (ImportError, ValueError):
        return False
    locations = spec.submodule_search_locations if spec else None
    return bool(locations) and any(Path(loc, "__main__.py").is_file() for loc in locations or ())


def catalog(trainers: int) -> list[ServiceSpec]:
    """Every service of the system, in start order."""
    return [
        ServiceSpec("ingest"),
        ServiceSpec("registry"),
        ServiceSpec("trainer", replicas=trainers),
        ServiceSpec("gateway"),
    ]


def select_services(trainers: int, only: Sequence[str] | None = None) -> list[ServiceSpec]:
    """The services to run: all (`only=None`; the gateway once its package is installed) or
    the named ones. A missing required package is an error, not a silent gap."""
    specs = catalog(trainers)
    known = [s.name for s in specs]
    if only is not None:
        unknown = sorted(set(only) - set(known))
        if unknown:
            raise SystemStartError(
                f"unknown service(s) {', '.join(unknown)}; known: {', '.join(known)}"
            )
        specs = [s for s in specs if s.name in only]
    chosen = []
    for spec in specs:
        if service_installed(spec.name):
            chosen.append(spec)
        elif only is not None or spec.name not in OPTIONAL_SERVICES:
            raise SystemStartError(
                f"service package {spec.module} is not installed (no {spec.module}.__main__); "
                "install it with scripts/bootstrap (make install)"
            )
    return chosen


# Configuration and process records -------------------------------------------------------------


def _ignore(_: str) -> None:
    pass


@dataclass(frozen=True)
class Config:
    data_dir: Path
    services: Sequence[ServiceSpec] = ()
    namespace: str = "tp"
    nats_url: str | None = None  # set: use this server and start none
    database_url: str | None = None  # set: use this database and start no PostgreSQL
    stop_timeout: float = 10.0  # SIGTERM → SIGKILL
    report: Callable[[str], None] = _ignore  # one line per event (restarts, relocations, ...)


@dataclass(eq=False)
class Supervised:
    """One replica: `name` is its TP_REPLICA, e.g. trainer-2."""

    name: str
    service: str
    argv: list[str]
    log_path: Path
    environment: Mapping[str, str] = field(default_factory=dict)
    metrics_port: int = 0
    process: asyncio.subprocess.Process | None = None
    started_at: float = 0.0
    restarts: int = 0
    ready: bool = False

    @property
    def pid(self) -> int | None:
        return None if self.process is None else self.process.pid

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.returncode is None


def backoff(failures: int) -> float:
    """Seconds to wait before restart number `failures` in a row: 0.5, 1, 2, ... 30."""
    return min(MAX_BACKOFF_S, FIRST_BACKOFF_S * 2.0 ** (failures - 1))


def exit_text(code: int) -> str:
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"was killed by {signal.Signals(-code).name}"
        return f"was killed by signal {-code}"
    return f"exited with code {code}"


async def _ignore_error(_: Exception) -> None:
    pass


async def quiet_connect(url: str, name: str, within: float) -> NatsClient:
    """Connect, retrying for `within` seconds; then reconnect forever without printing
    nats-py's tracebacks into `up`'s output while the embedded server restarts."""
    deadline = asyncio.get_running_loop().time() + within
    while True:
        try:
            return await nats.connect(
                url,
                name=name,
                connect_timeout=2,
                allow_reconnect=True,
                max_reconnect_attempts=-1,
                reconnect_time_wait=0.5,
                error_cb=_ignore_error,
            )
        except (OSError, nats.errors.Error, TimeoutError) as exc:
            if asyncio.get_running_loop().time() >= deadline:
                raise ConnectionError(f"cannot reach NATS at {mask_url(url)}: {exc}") from exc
            await asyncio.sleep(0.5)


def mask_url(url: str) -> str:
    """The URL with its password hidden: what the screen and the logs show of any server's URL."""
    scheme, sep, rest = url.partition("://")
    userinfo, at, host = rest.rpartition("@")
    if not at or ":" not in userinfo:
        return url
    return f"{scheme}{sep}{userinfo.split(':', 1)[0]}:***@{host}"


# The system --------------------------------------------------------------------------------------


class System:
    """Servers and supervised service processes for one data folder (locked while running)."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.data_dir = config.data_dir.resolve()
        self.logs_dir = self.data_dir / "logs"
        self.names = Names(config.namespace)
        self.nats: NatsServer | None = None
        self.postgres: PostgresServer | None = None
        self.nats_url = config.nats_url or ""
        self.database_url = config.database_url or ""
        self.cluster_note: str | None = None
        self.processes: dict[str, Supervised] = {}
        self._state: dict[str, Any] = {}
        self._taken_ports: set[int] = set()
        self._lock_fd: int | None = None
        self._fresh = True
        self._nc: NatsClient | None = None
        self._stopping = asyncio.Event()
        self._stopped = False
        self._supervisors: list[asyncio.Task[None]] = []
        self._watchers: list[asyncio.Task[None]] = []

    @classmethod
    @asynccontextmanager
    async def start(cls, config: Config) -> AsyncIterator[System]:
        system = cls(config)
        try:
            await system._start()
            yield system
        finally:
            # Cancelling the caller (Ctrl-C during start-up) must not cut the stop short and
            # leave servers running: stop runs to its end, then the cancellation goes on.
            stopping = asyncio.ensure_future(system.stop())
            interrupted = False
            while not stopping.done():
                try:
                    await asyncio.shield(stopping)
                except asyncio.CancelledError:
                    interrupted = True
            stopping.result()
            if interrupted:
                raise asyncio.CancelledError

    # Public API ----------------------------------------------------------------------------

    async def wait_ready(self, within: float = 60.0) -> None:
        """Return once every replica answers its ping; NotReadyError names the ones that don't."""
        deadline = asyncio.get_running_loop().time() + within
        while True:
            waiting = [p for p in self.processes.values() if not (p.ready and p.running)]
            if not waiting:
                return
            if asyncio.get_running_loop().time() >= deadline:
                raise NotReadyError(waiting, within)
            await asyncio.sleep(0.05)

    def kill(self, name: str, sig: int = signal.SIGKILL) -> int:
        """Send `sig` to a replica, to `nats` or to `postgres`; returns the pid signalled."""
        pid: int | None
        if name in self.processes:
            pid = self.processes[name].pid
        elif name == "nats":
            pid = self.nats.pid if self.nats else None
        elif name == "postgres":
            pid = self.postgres.postmaster_pid() if self.postgres else None
        else:
            raise KeyError(name)
        if pid is None:
            raise ProcessLookupError(f"{name} is not running")
        os.kill(pid, sig)
        return pid

    async def stop(self) -> None:
        """Services (SIGTERM, then SIGKILL), then PostgreSQL (fast), then NATS. Idempotent."""
        if self._stopped:
            return
        self._stopped = True
        self._stopping.set()
        for task in self._watchers:
            task.cancel()
        await asyncio.gather(*self._watchers, return_exceptions=True)
        await self._stop_services()
        if self._nc is not None:
            with contextlib.suppress(Exception):
                await self._nc.close()
        if self.postgres is not None:
            try:
                await self.postgres.stop()
            except EmbeddedError as exc:
                self._report(f"PostgreSQL did not stop cleanly: {exc}")
        if self.nats is not None:
            await self.nats.stop(self.config.stop_timeout)
        if self._lock_fd is not None:
            self._save_state()
            os.close(self._lock_fd)
            self._lock_fd = None

    # Start-up ------------------------------------------------------------------------------

    async def _start(self) -> None:
        self.logs_dir.mkdir(parents=True, exist_ok=True)
        self._lock()
        self._state = self._load_state()
        await self._stop_leftovers()
        # Checked only now: a leftover of an earlier run may have been the one holding it.
        for spec in self.config.services:
            for port in spec.ports:
                if not port_is_free(port):
                    raise PortTakenError(spec.name, port)
                self._taken_ports.add(port)
        if self.config.nats_url:
            await self._check_external_nats(self.config.nats_url)
        else:
            await self._start_nats()
        if self.config.database_url:
            await self._check_external_database(self.config.database_url)
        else:
            await self._start_postgres()
        self._nc = await quiet_connect(self.nats_url, "tradepulse-up", within=15.0)
        # Streams created once here, before N replicas would race to create them.
        await ensure_streams(self._nc.jetstream(), self.names)
        for spec in self.config.services:
            for i in range(1, spec.replicas + 1):
                name = f"{spec.name}-{i}"
                self.processes[name] = Supervised(
                    name, spec.name, spec.argv(), self.logs_dir / f"{name}.log", spec.environment
                )
        for proc in self.processes.values():
            self._supervisors.append(asyncio.create_task(self._supervise(proc)))
        self._watchers.append(asyncio.create_task(self._watch_readiness()))
        if self.nats is not None:
            self._watchers.append(asyncio.create_task(self._watch_server("nats-server", self.nats)))
        if self.postgres is not None:
            watch = self._watch_server("PostgreSQL", self.postgres)
            self._watchers.append(asyncio.create_task(watch))

    def _lock(self) -> None:
        path = self.data_dir / "up.lock"
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise SystemStartError(
                f"another `tradepulse up` (pid {holder}) is running with data dir {self.data_dir}"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._lock_fd = fd

    def _load_state(self) -> dict[str, Any]:
        path = self.data_dir / "state.json"
        self._fresh = not path.exists()
        try:
            state = json.loads(path.read_text())
        except (OSError, ValueError):
            return {}
        return state if isinstance(state, dict) else {}

    def _save_state(self) -> None:
        processes = {
            p.name: {
                "pid": p.pid,
                "starttime": process_starttime(p.pid),
                "log": str(p.log_path),
                "metrics_port": p.metrics_port,
            }
            for p in self.processes.values()
            if p.pid is not None
        }
        if self.nats is not None and self.nats.pid is not None:
            processes["nats"] = {
                "pid": self.nats.pid,
                "starttime": process_starttime(self.nats.pid),
                "log": str(self.nats.log_path),
            }
        postmaster = self.postgres.postmaster_pid() if self.postgres else None
        if self.postgres is not None and postmaster is not None:
            processes["postgres"] = {
                "pid": postmaster,
                "starttime": process_starttime(postmaster),
                "log": str(self.postgres.log_path),
            }
        self._state.update(
            up_pid=os.getpid(),
            namespace=self.names.prefix,
            nats_url=self.nats_url,
            database_url=self.database_url,
            processes=processes,
        )
        path = self.data_dir / "state.json"
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            json.dump(self._state, out, indent=2)
        tmp.replace(path)

    async def _stop_leftovers(self) -> None:
        """Stop what an earlier `up` of this data dir left running when it was killed (SIGKILL):
        the pid must still carry the start time recorded then, so a reused pid is left alone."""
        pending = []
        for name, entry in (self._state.get("processes") or {}).items():
            pid, started = entry.get("pid"), entry.get("starttime")
            if name == "postgres" or not isinstance(pid, int) or started is None:
                continue
            if pid_alive(pid) and process_starttime(pid) == started:
                self._report(f"stopping {name} (pid {pid}) left running by an earlier run")
                pending.append(terminate_pid(pid, self.config.stop_timeout))
        await asyncio.gather(*pending)

    def _port(self, key: str) -> int:
        """The port this data dir used last time for `key` if it is still free, else a new one."""
        ports: dict[str, int] = self._state.setdefault("ports", {})
        port = ports.get(key)
        if not (isinstance(port, int) and port not in self._taken_ports and port_is_free(port)):
            port = free_port(self._taken_ports)
        self._taken_ports.add(port)
        ports[key] = port
        return port

    def _secret(self, key: str) -> str:
        stored: dict[str, str] = self._state.setdefault("secrets", {})
        if key not in stored:
            stored[key] = new_secret()
        return stored[key]

    async def _start_nats(self) -> None:
        self.nats = NatsServer(
            self.data_dir / "nats",
            self._port("nats"),
            self._secret("nats_password"),
            self.logs_dir / "nats.log",
        )
        try:
            await self.nats.start()
        except EmbeddedError as exc:
            raise SystemStartError(str(exc)) from exc
        self.nats_url = self.nats.url
        self._save_state()

    async def _start_postgres(self) -> None:
        try:
            run_as = postgres_run_as()
            if run_as is not None and run_as.created:
                self._report(f"created the system user {run_as.name} to run PostgreSQL as")
            known = self._state.get("postgres_cluster")
            place = place_cluster(
                self.data_dir, run_as, Path(known) if known else None, fresh=self._fresh
            )
            if place.removed_stale:
                self._report(
                    f"removed the PostgreSQL cluster {place.directory} of an earlier, deleted "
                    f"data dir at {self.data_dir}"
                )
            replicas = sum(s.replicas for s in self.config.services)
            self.postgres = PostgresServer(
                place.directory,
                0,
                self._secret("postgres_password"),
                run_as,
                self.logs_dir / "postgres.log",
                max_connections=max(100, 12 * replicas + 20),
            )
            self._state["postgres_cluster"] = str(place.directory)
            if place.relocated_because is not None:
                self.cluster_note = (
                    f"user postgres cannot enter {place.relocated_because} (left unchanged), so "
                    f"the PostgreSQL cluster is in {place.directory}"
                )
                self._report(self.cluster_note)
            if self.postgres.running():
                self._report("stopping PostgreSQL left running by an earlier run")
                await self.postgres.stop()
            # Chosen only now: the leftover may have held the port this data dir used last time.
            self.postgres.port = self._port("postgres")
            cluster = str(place.directory)
            # initdb writes PG_VERSION first, so only this record says a cluster is complete.
            if self._state.get("postgres_initialised") != cluster:
                ours = known == cluster
                if not ours and place.directory.exists() and any(place.directory.iterdir()):
                    raise SystemStartError(
                        f"{cluster} is not empty and {self.data_dir}/state.json does not name "
                        "it as a finished cluster; remove it to start afresh"
                    )
                self._save_state()  # names the cluster as ours before initdb writes to it
                await self.postgres.initialise(discard_partial=ours)
                self._state["postgres_initialised"] = cluster
                self._save_state()
            await self.postgres.start()
            await self.postgres.create_database(DATABASE)
        except EmbeddedError as exc:
            raise SystemStartError(str(exc)) from exc
        except asyncpg.InvalidPasswordError as exc:
            raise SystemStartError(
                f"the password of PostgreSQL cluster {self.postgres and self.postgres.cluster} is "
                "not the one in state.json; remove the cluster to start afresh"
            ) from exc
        self.database_url = self.postgres.url(DATABASE)
        self._save_state()

    async def _check_external_nats(self, url: str) -> None:
        try:
            nc = await quiet_connect(url, "tradepulse-up-check", within=10.0)
        except ConnectionError as exc:
            raise SystemStartError(f"cannot reach NATS at {mask_url(url)} (NATS_URL)") from exc
        await nc.close()

    async def _check_external_database(self, url: str) -> None:
        try:
            conn = await asyncpg.connect(url, timeout=10)
        except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
            raise SystemStartError(
                f"cannot connect to PostgreSQL at {mask_url(url)} (DATABASE_URL): {exc}"
            ) from exc
        await conn.close()

    # Supervision -----------------------------------------------------------------------------

    def _report(self, line: str) -> None:
        self.config.report(line)

    async def _sleep_unless_stopping(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)

    def _environment(self, proc: Supervised) -> dict[str, str]:
        return {
            **os.environ,
            "INGEST_FILE_ROOT": os.environ.get("INGEST_FILE_ROOT") or self._import_roots(),
            "NATS_URL": self.nats_url,
            "DATABASE_URL": self.database_url,
            "TP_NAMESPACE": self.names.prefix,
            "TP_REPLICA": proc.name,
            "LOG_JSON": "1",
            "METRICS_PORT": str(proc.metrics_port),
            "PYTHONUNBUFFERED": "1",
            **proc.environment,
        }

    def _import_roots(self) -> str:
        """Where ingest may read files named by a server path when INGEST_FILE_ROOT is unset:
        `<data-dir>/imports` and the project's shared data folder (`shared/data` beside the
        current folder or one above it, where the demo's candles are), nowhere else."""
        imports = self.data_dir / "imports"
        imports.mkdir(mode=0o700, exist_ok=True)
        roots = [imports]
        here = Path.cwd().resolve()
        for folder in (here, here.parent):
            shared = folder / "shared" / "data"
            if shared.is_dir():
                roots.append(shared)
                break
        return ":".join(str(r) for r in roots)

    async def _spawn(self, proc: Supervised) -> None:
        self._taken_ports.discard(proc.metrics_port)
        proc.metrics_port = self._port(f"metrics:{proc.name}")
        proc.ready = False
        log = open_log(proc.log_path, proc.name)
        try:
            proc.process = await asyncio.create_subprocess_exec(
                *proc.argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                env=self._environment(proc),
                start_new_session=True,
            )
        finally:
            os.close(log)
        proc.started_at = asyncio.get_running_loop().time()
        self._save_state()

    async def _supervise(self, proc: Supervised) -> None:
        """Run one replica until stop; restart it whenever it exits, with growing backoff."""
        loop = asyncio.get_running_loop()
        failures = 0
        while not self._stopping.is_set():
            try:
                await self._spawn(proc)
            except OSError as exc:
                failures += 1
                delay = backoff(failures)
                self._report(f"{proc.name} could not start ({exc}); retrying in {delay:g} s")
                await self._sleep_unless_stopping(delay)
                continue
            assert proc.process is not None
            if self._stopping.is_set():
                # stop() began while we were spawning and could not see this process yet.
                proc.process.terminate()
            code = await proc.process.wait()
            if self._stopping.is_set():
                return
            ran = loop.time() - proc.started_at
            failures = 1 if ran >= STABLE_AFTER_S else failures + 1
            delay = backoff(failures)
            self._report(
                f"{proc.name} (pid {proc.pid}) {exit_text(code)} after {ran:.1f} s; "
                f"restarting in {delay:g} s (log {proc.log_path})"
            )
            await self._sleep_unless_stopping(delay)
            if not self._stopping.is_set():
                proc.restarts += 1

    async def _stop_services(self) -> None:
        for proc in self.processes.values():
            if proc.running and proc.process is not None:
                with contextlib.suppress(ProcessLookupError):
                    proc.process.terminate()
        if not self._supervisors:
            return
        _, pending = await asyncio.wait(self._supervisors, timeout=self.config.stop_timeout)
        if pending:
            for proc in self.processes.values():
                if proc.running and proc.process is not None:
                    self._report(f"{proc.name} (pid {proc.pid}) ignored SIGTERM; killing it")
                    with contextlib.suppress(ProcessLookupError):
                        proc.process.kill()
            await asyncio.wait(pending)

    async def _watch_server(self, label: str, server: NatsServer | PostgresServer) -> None:
        """Restart an embedded server that dies (its state is on disk), with backoff."""
        loop = asyncio.get_running_loop()
        started, failures = loop.time(), 0
        while True:
            process = server.process
            code = await process.wait() if process is not None else None
            ran = loop.time() - started
            failures = 1 if ran >= STABLE_AFTER_S else failures + 1
            delay = backoff(failures)
            how = "could not start" if code is None else exit_text(code)
            pid = process.pid if process is not None else "-"
            self._report(f"{label} (pid {pid}) {how}; restarting it in {delay:g} s")
            await self._sleep_unless_stopping(delay)
            started = loop.time()
            try:
                await server.start()
                self._save_state()
            except (EmbeddedError, OSError) as exc:
                self._report(f"{label}: {exc}")

    # Readiness -------------------------------------------------------------------------------

    async def _watch_readiness(self) -> None:
        while True:
            waiting = [p for p in self.processes.values() if p.running and not p.ready]
            if waiting and self._nc is not None and self._nc.is_connected:
                by_service: dict[str, list[Supervised]] = {}
                for proc in waiting:
                    by_service.setdefault(proc.service, []).append(proc)
                with contextlib.suppress(nats.errors.Error, OSError, TimeoutError):
                    await asyncio.gather(
                        *(self._probe(service, procs) for service, procs in by_service.items())
                    )
            await asyncio.sleep(PROBE_EVERY_S)

    async def _probe(self, service: str, procs: list[Supervised]) -> None:
        replicas = await self._ping(service, count=2 * len(procs) + 1)
        for proc in procs:
            if not proc.running:
                continue
            if proc.name in replicas:
                proc.ready = True
                if proc.restarts:
                    self._report(f"{proc.name} (pid {proc.pid}) is ready again")

    async def _ping(self, service: str, count: int) -> set[str]:
        """Ping `count` times into a private inbox; the replica names that answered."""
        assert self._nc is not None
        inbox = self._nc.new_inbox()
        sub = await self._nc.subscribe(inbox)
        replicas: set[str] = set()
        try:
            for _ in range(count):
                await self._nc.publish(self.names.ping(service), b"", reply=inbox)
            await self._nc.flush(timeout=2)
            deadline = asyncio.get_running_loop().time() + PING_WINDOW_S
            while (left := deadline - asyncio.get_running_loop().time()) > 0:
                try:
                    msg: Msg = await sub.next_msg(timeout=left)
                except nats.errors.TimeoutError:
                    break
                if msg.headers and "Status" in msg.headers:
                    continue  # the server's "no responders" notice, not an answer
                replicas.add(msg.data.decode(errors="replace"))
        finally:
            with contextlib.suppress(nats.errors.Error):
                await sub.unsubscribe()
        return replicas


__all__ = [
    "Config",
    "NotReadyError",
    "PortTakenError",
    "ServiceSpec",
    "Supervised",
    "System",
    "SystemStartError",
    "catalog",
    "select_services",
    "service_installed",
]
