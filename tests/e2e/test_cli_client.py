"""The client commands as a user runs them: the installed `tradepulse` script, as separate
processes, against the real gateway and services (the worker's shared system, started by
`supervisor.System` through tests/integration/flows.py), on a market of the test's own.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support.polling import wait_until
from tradepulse.cli.embedded import free_port as any_free_port

from .conftest import SharedSystem

TRADEPULSE = Path(sys.executable).with_name("tradepulse")
DATASET = ["--exchange", "binance", "--symbol", "BTC/USDT", "--timeframe", "5m"]


@dataclass(frozen=True)
class Run:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)

    @property
    def one_error_line(self) -> bool:
        return self.code != 0 and self.err.count("\n") == 1 and "Traceback" not in self.err


def free_port() -> int:
    return any_free_port(set())


async def tradepulse(
    *args: str, env: dict[str, str], cwd: Path | None = None, within: float = 60
) -> Run:
    process = await asyncio.create_subprocess_exec(
        str(TRADEPULSE),
        *args,
        cwd=cwd,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), within)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    assert process.returncode is not None
    return Run(process.returncode, out.decode(), err.decode())


def client_env(url: str, key: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRADEPULSE_")}
    env["TRADEPULSE_URL"] = url
    if key is not None:
        env["TRADEPULSE_API_KEY"] = key
    return env


async def test_ingest_train_follow_list_and_cancel_through_the_cli(
    tmp_path: Path, shared_system: SharedSystem, candles_excerpt: Path
) -> None:
    url, key, symbol = shared_system.gateway.url, shared_system.gateway.key, shared_system.symbol
    dataset = ["--exchange", "binance", "--symbol", symbol, "--timeframe", "5m"]
    env = client_env(url, key)
    ingested = await tradepulse("ingest", "--file", str(candles_excerpt), *dataset, env=env)
    assert ingested.code == 0, ingested.err
    assert "6,000 candles received, 6,000 new" in ingested.out

    window = ["--optimizer", "random", "--lookback", "2000"]
    submitted = await tradepulse(
        "train",
        *dataset,
        *window,
        "--n-iterations",
        "40",
        "--seed",
        "12345",
        "--no-follow",
        env=env,
    )
    assert submitted.code == 0, submitted.err
    match = re.fullmatch(r"job (\S+) queued\n", submitted.out)
    assert match, submitted.out
    job_id = match.group(1)

    async def shown_job() -> dict[str, Any]:
        shown = await tradepulse("job", job_id, "--json", env=env)
        assert shown.code == 0, shown.err
        state: dict[str, Any] = shown.json()
        assert state["status"] in ("queued", "running", "completed"), state
        return state

    job = await wait_until(
        shown_job,
        within=60,
        interval=0.3,
        message=f"job {job_id} completed with a configuration",
        until=lambda state: state["status"] == "completed" and bool(state["config_id"]),
    )
    assert (job["trials_done"], job["progress"], job["seed"]) == (40, 100.0, 12345)
    config_id = job["config_id"]

    text, configs, listed, one, jobs = await asyncio.gather(
        tradepulse("job", job_id, env=env),
        tradepulse("configs", env=env),
        tradepulse("configs", "--symbol", symbol, "--json", env=env),
        tradepulse("config", config_id, env=env),
        tradepulse("jobs", "--status", "completed", "--symbol", symbol, "--json", env=env),
    )
    assert text.code == 0, text.err
    assert "status     completed" in text.out
    assert f"config     {config_id}" in text.out
    assert configs.code == 0, configs.err
    assert config_id in configs.out
    assert f"binance {symbol} 5m" in configs.out
    items = listed.json()["items"]
    assert [(c["config_id"], c["job_id"]) for c in items] == [(config_id, job_id)]
    assert items[0]["params"] == job["best"]["params"]
    assert one.code == 0, one.err
    assert "sharpe_ratio" in one.out
    # The overfitting figures, one plain line each, on the job's and the config's page.
    for page in (text.out, one.out):
        assert re.search(
            r"^  the best of [\d,]+ skill-less tries would show a Sharpe of -?[\d.]+ by luck "
            r"alone; this one has -?[\d.]+ → deflated Sharpe [\d.]+ \(probability that the "
            r"edge is real\)$",
            page,
            re.M,
        ), page
        assert re.search(
            r"^  in \d+ % of the 12,870 splits the in-sample winner ranked below the median "
            r"out of sample \(PBO [\d.]+\)$",
            page,
            re.M,
        ), page
    assert [j["job_id"] for j in jobs.json()["jobs"]] == [job_id]

    # Followed live: the progress bar (a line per tenth off a terminal), then the result.
    followed = await tradepulse(
        "train", *dataset, *window, "--n-iterations", "30", "--seed", "7", env=env
    )
    assert followed.code == 0, followed.err
    assert "100.0%" in followed.err
    assert re.search(r"^best configuration: cfg_\S+ \(\w+\), sharpe_ratio ", followed.out, re.M)
    assert re.search(r"^params\n  \w+", followed.out, re.M)
    assert re.search(r"^  sharpe_ratio +-?[\d,.]+$", followed.out, re.M)
    assert "(probability that the edge is real)" in followed.out

    # A seed ensemble: one progress bar over its jobs, then the convergence report.
    ensemble = await tradepulse(
        "ensemble", *dataset, *window, "--n-iterations", "12", "--seeds", "3,4", env=env
    )
    assert ensemble.code == 0, ensemble.err
    assert "100.0%  24/24 trials" in ensemble.err
    assert re.search(r"^ensemble ens_\w+: 2 seeds, ended$", ensemble.out, re.M), ensemble.out
    assert re.search(r"^the seeds' best parameters (stay within|scatter by)", ensemble.out, re.M)
    assert "objective  mean" in ensemble.out
    one_seed = await tradepulse(
        "ensemble", *dataset, *window, "--n-iterations", "12", "--seeds", "3", env=env
    )
    assert one_seed.one_error_line, one_seed
    assert "at least 2 seeds" in one_seed.err

    long_job = await tradepulse(
        "train", *dataset, *window, "--n-iterations", "100000", "--no-follow", env=env
    )
    long_id = long_job.out.split()[1]
    cancelled = await tradepulse("cancel", long_id, env=env)
    assert cancelled.code == 0, cancelled.err
    assert long_id in cancelled.out

    async def long_status() -> str:
        status: str = (await tradepulse("job", long_id, "--json", env=env)).json()["status"]
        return status

    await wait_until(
        long_status,
        within=20,
        interval=0.3,
        message=f"job {long_id} cancelled",
        until=lambda status: status == "cancelled",
    )

    # Refusals, each one line naming the problem, no traceback.
    bad_key, no_key, unknown, too_long, again = await asyncio.gather(
        tradepulse("jobs", env=client_env(url, "not-a-key")),
        # In a folder without a key saved by `tradepulse up`.
        tradepulse("configs", env=client_env(url, None), cwd=tmp_path),
        tradepulse("job", "job_nope", env=env),
        tradepulse("train", *dataset, "--n-iterations", "5", "--lookback", "999999", env=env),
        tradepulse("cancel", job_id, env=env),
    )
    for refused in (bad_key, no_key, unknown, too_long, again):
        assert refused.one_error_line, refused
    assert "refused the API key" in bad_key.err
    assert "no API key" in no_key.err
    assert "job job_nope not found" in unknown.err
    assert "lookback_candles" in too_long.err
    assert "HTTP 422" in too_long.err
    assert "already completed" in again.err


async def test_with_the_gateway_down_every_command_says_so_in_one_line(tmp_path: Path) -> None:
    env = client_env(f"http://127.0.0.1:{free_port()}", "some-key")
    commands = (
        ["jobs"],
        ["train", *DATASET, "--n-iterations", "10", "--lookback", "100"],
        ["ingest", "--from-exchange", *DATASET],
    )
    runs = await asyncio.gather(*(tradepulse(*args, env=env) for args in commands))
    for args, run in zip(commands, runs, strict=True):
        assert run.one_error_line, (args, run)
        assert run.code == 2
        assert "cannot reach the gateway at http://127.0.0.1:" in run.err, run.err
