"""`tradepulse up` with the gateway: it listens on --port, generates an API key when
TRADEPULSE_API_KEYS is unset (kept 0600 in the data dir, the same on the next run), the CLI
works with what `up` printed, and a port already taken is refused in one line."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import stat
import sys
from pathlib import Path

from tests.integration.conftest import NATS_URL
from tests.integration.flows import summary_of_up
from tradepulse.cli.embedded import free_port
from tradepulse.common.contracts.subjects import Names

TRADEPULSE = Path(sys.executable).with_name("tradepulse")


def up_env(database: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TRADEPULSE_", "TP_"))}
    return env | {"NATS_URL": NATS_URL, "DATABASE_URL": database}


async def start_up(
    data_dir: Path, port: int, names: Names, database: str
) -> tuple[asyncio.subprocess.Process, str]:
    """`tradepulse up` until it prints its summary."""
    up = await asyncio.create_subprocess_exec(
        str(TRADEPULSE),
        "up",
        "--data-dir",
        str(data_dir),
        "--port",
        str(port),
        # The trainer answers `tradepulse jobs`; ingest and registry are not needed here.
        "--services",
        "trainer,gateway",
        "--trainers",
        "1",
        "--namespace",
        names.prefix,
        "--stop-timeout",
        "5",
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=up_env(database),
    )
    return up, await summary_of_up(up, within=60)


async def stop(up: asyncio.subprocess.Process) -> None:
    up.send_signal(signal.SIGTERM)
    async with asyncio.timeout(30):
        await up.communicate()
    assert up.returncode == 0


def saved(path: Path) -> tuple[str, int]:
    return path.read_text().strip(), stat.S_IMODE(path.stat().st_mode)


async def tradepulse(*args: str, env: dict[str, str]) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        str(TRADEPULSE),
        *args,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    async with asyncio.timeout(60):
        out, err = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_up_runs_the_gateway_with_a_generated_key_kept_for_the_next_run(
    tmp_path: Path, names: Names, database: str
) -> None:
    data_dir = tmp_path / "data"
    port = free_port(set())
    up, text = await start_up(data_dir, port, names, database)
    try:
        assert f"gateway  http://127.0.0.1:{port}  (API docs http://127.0.0.1:{port}/docs)" in text
        found = re.search(r"API key  (\S+)  \(generated now, kept in (\S+)\)", text)
        assert found, text
        key, key_file = found.group(1), Path(found.group(2))
        assert key_file == data_dir / "api_key"
        assert saved(key_file) == (key, 0o600)
        assert re.search(r"gateway-1 +\d+", text)

        client = up_env(database) | {
            "TRADEPULSE_URL": f"http://127.0.0.1:{port}",
            "TRADEPULSE_API_KEY": key,
        }
        code, out, err = await tradepulse("jobs", env=client)
        assert (code, out, err) == (0, "no jobs\n", "")

        # Another system on the same port: refused before anything starts, in one line.
        code, out, err = await tradepulse(
            "up", "--data-dir", str(tmp_path / "other"), "--port", str(port), env=up_env(database)
        )
        assert code == 2
        assert err.count("\n") == 1, err
        assert f"port {port} for the gateway is taken" in err
        assert "--port" in err
    finally:
        await stop(up)

    up, text = await start_up(data_dir, port, names, database)
    try:
        assert f"API key  {key}  (generated earlier, kept in {key_file})" in text
        code, out, _ = await tradepulse("jobs", env=client)
        assert (code, out) == (0, "no jobs\n")
    finally:
        await stop(up)
