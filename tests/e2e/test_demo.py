"""`tradepulse demo` from start to finish as a user runs it, on the machine's NATS and
PostgreSQL (NATS_URL / DATABASE_URL: the test's namespace and a fresh database), finding the
shared candles on its own from the checkout; and interrupted while starting. Either way nothing it
started may be left running.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import sys
from pathlib import Path

from tests.integration.conftest import NATS_URL
from tests.support.polling import wait_until
from tradepulse.cli.embedded import pid_alive, port_is_free
from tradepulse.common.contracts.subjects import Names

CHECKOUT = Path(__file__).resolve().parents[2]
TRADEPULSE = Path(sys.executable).with_name("tradepulse")


def demo_env(names: Names, database: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TRADEPULSE_", "TP_"))}
    return env | {"NATS_URL": NATS_URL, "DATABASE_URL": database}


async def start_demo(data_dir: Path, names: Names, database: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        str(TRADEPULSE),
        "demo",
        "--data-dir",
        str(data_dir),
        "--namespace",
        names.prefix,
        "--trainers",
        "2",
        cwd=CHECKOUT,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=demo_env(names, database),
    )


def processes_of(namespace: str) -> list[int]:
    """Every live process started with TP_NAMESPACE=<namespace>: the demo's services."""
    marker = f"TP_NAMESPACE={namespace}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            if marker in (entry / "environ").read_bytes().split(b"\0"):
                found.append(int(entry.name))
    return [pid for pid in found if pid_alive(pid)]


def recorded_pids(data_dir: Path) -> dict[str, int]:
    state = json.loads((data_dir / "state.json").read_text())
    return {name: entry["pid"] for name, entry in state["processes"].items()}


async def test_demo_runs_start_to_finish_and_leaves_nothing_running(
    tmp_path: Path, names: Names, database: str, shared_candles_path: Path
) -> None:
    data_dir = tmp_path / "demo"
    demo = await start_demo(data_dir, names, database)
    try:
        raw_out, raw_err = await asyncio.wait_for(demo.communicate(), 150)
    finally:
        if demo.returncode is None:
            demo.kill()
            await demo.wait()
    out, err = raw_out.decode(), raw_err.decode()
    assert demo.returncode == 0, f"{out}\n{err}"

    assert f"importing {shared_candles_path}" in out
    assert "315,632 candles received" in out
    assert "200 trials, the last 10,000 candles, seed 12345" in out
    assert re.search(r"job job_\w+ completed: 200 trials", out), out
    assert "100.0%  200/200 trials" in err
    result = out[out.index("4/5 the result") : out.index("5/5 ")]
    assert re.search(r"^best configuration: cfg_\w+ \(\w+\), sharpe_ratio -?[\d,.]+ ", result, re.M)
    params = re.search(r"^params\n((?:  \w+ +\S+\n)+)", result, re.M)
    assert params is not None, result
    assert "key_level_lookback" in params.group(1)
    assert re.search(r"^  sharpe_ratio +-?[\d,.]+$", result, re.M), result
    assert re.search(r"^  total_trades +[\d,]+$", result, re.M), result
    walk_forward = out[out.index("5/5 the same search, walk-forward") :]
    assert re.search(r"job job_\w+ completed: 1200 trials", walk_forward), walk_forward
    assert re.search(r"^stitched out-of-sample ", walk_forward, re.M), walk_forward
    assert re.search(r"^WFE ", walk_forward, re.M), walk_forward
    assert re.search(r"^status (DISCOVERY|CANDIDATE|PAPER)$", walk_forward, re.M), walk_forward
    assert re.search(r"^verdict: (it survived|it did not survive|every gate)", walk_forward, re.M)
    assert "where to look next:" in out
    assert "/docs" in out
    assert "tradepulse configs" in out
    assert out.rstrip().endswith("stopped; nothing is left running")

    gateway = re.search(r"gateway http://127\.0\.0\.1:(\d+)", out)
    assert gateway is not None
    assert port_is_free(int(gateway.group(1)))
    pids = recorded_pids(data_dir)
    assert sorted(pids) == ["gateway-1", "ingest-1", "registry-1", "trainer-1", "trainer-2"]
    assert [name for name, pid in pids.items() if pid_alive(pid)] == []
    assert processes_of(names.prefix) == []


async def test_an_interrupted_demo_stops_everything_it_started(
    tmp_path: Path, names: Names, database: str, shared_candles_path: Path
) -> None:
    """Ctrl-C while the services start up: the hardest moment to stop cleanly."""
    data_dir = tmp_path / "demo"
    demo = await start_demo(data_dir, names, database)
    assert demo.stdout is not None
    seen: list[str] = []
    try:
        async with asyncio.timeout(60):
            while "waiting for" not in "".join(seen):
                line = (await demo.stdout.readline()).decode()
                assert line, f"the demo ended early: {''.join(seen)}"
                seen.append(line)

            async def all_five_up() -> bool:
                return len(processes_of(names.prefix)) == 5

            await wait_until(
                all_five_up, within=60, interval=0.05, message="the demo's five processes"
            )
        demo.send_signal(signal.SIGINT)
        async with asyncio.timeout(30):
            _, raw_err = await demo.communicate()
    finally:
        if demo.returncode is None:
            demo.kill()
            await demo.wait()
    assert demo.returncode == 130, raw_err.decode()
    assert "interrupted; everything it started is stopped" in raw_err.decode()
    assert "Traceback" not in raw_err.decode()
    assert [name for name, pid in recorded_pids(data_dir).items() if pid_alive(pid)] == []
    assert processes_of(names.prefix) == []
