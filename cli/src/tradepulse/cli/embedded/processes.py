"""Processes that are not necessarily our children: liveness, start times, stopping, logs."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from pathlib import Path


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


def open_log(path: Path, what: str) -> int:
    """An append-only descriptor for a child's output, starting with a marker line; mode 0600
    (a service's log may carry what only its user should read)."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    os.fchmod(fd, 0o600)
    stamp = time.strftime("%Y-%m-%d %H:%M:%S")
    os.write(fd, f"--- tradepulse up: starting {what} at {stamp} ---\n".encode())
    return fd


def tail(path: Path, lines: int = 5) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return " | ".join(line.strip() for line in text.strip().splitlines()[-lines:])
