"""The job page's walk-forward section, drawn in Debian's Chromium from a job shaped as the
walk-forward issue (9, item 3) specifies, and a validation report stored before reports kept
their degradation points: the page's own files are served from the package, the API's answers
are this test's (tests/e2e/test_dashboard.py draws a live walk-forward job)."""

from __future__ import annotations

import json
import mimetypes
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Route

from tests.support.browser import Console, chromium, chromium_missing

pytestmark = pytest.mark.skipif(chromium_missing() is not None, reason=str(chromium_missing()))

STATIC = Path(__file__).resolve().parents[2] / "services/gateway/src/tradepulse/gateway/static"
ORIGIN = "http://dashboard.test"
DAY = 86_400_000


def span(first: int, last: int) -> dict[str, Any]:
    """A BarSpan of issue 9's contract (bars as row numbers, open times in ms)."""
    return {
        "first_bar": first,
        "last_bar": last,
        "bars": last - first + 1,
        "first_ms": first * DAY,
        "last_ms": last * DAY,
    }


def fold(i: int) -> dict[str, Any]:
    return {
        "fold": i,
        "train": span(i * 10, i * 10 + 39),
        "test": span(i * 10 + 40, i * 10 + 49),
        "best_trial": 3 + i,
        "params": {"reversal_candles": 2 + i},
        "train_metrics": {"sharpe_ratio": 1.5 + i / 10, "net_profit": 100.0},
        "initial_capital": 10_000.0,
        "test_metrics": {"sharpe_ratio": 0.5 - i / 10, "net_profit": 20.0 * i},
        "test_trades": 4 + i,
        "efficiency": 0.3,
    }


JOB: dict[str, Any] = {
    "job_id": "job_wf",
    "status": "completed",
    "progress": 100.0,
    "trials_done": 60,
    "n_iterations": 60,
    "strategy": "LIQUIDITY_SWEEP",
    "exchange": "binanceus",
    "symbol": "BTC/USDT",
    "timeframe": "5m",
    "regime": "any",
    "optimizer": "random",
    "objective": "sharpe_ratio",
    "seed": 1,
    "lookback_candles": 1000,
    "start": None,
    "end": None,
    "min_trades": 1,
    "batch_size": 10,
    "settings": {},
    "best": None,
    "config_id": None,
    "error": None,
    "sampler": "RandomSampler",
    "created_at": "2026-01-01T00:00:00Z",
    "started_at": None,
    "finished_at": None,
    "duration_s": None,
    "validation": None,
    "param_importances": {"reversal_candles": 0.7, "pierce_depth": 0.3},
    "walk_forward": {
        "folds": 3,
        "mode": "rolling",
        "is_oos_ratio": 4,
        "train_bars": 40,
        "test_bars": 10,
        "fold_results": [fold(i) for i in range(3)],
        "final": {"train": span(30, 69), "validation": None},
        "oos": {
            "metrics": {"sharpe_ratio": 0.41, "net_profit": 60.0},
            "psr": 0.8,
            "fingerprint": "x",
        },
        "wfe": 0.27,
        "dispersion": {"reversal_candles": 0.2},
    },
}


CONFIG: dict[str, Any] = {
    "config_id": "cfg_wf",
    "job_id": "job_wf",
    "status": "PAPER",
    "strategy": "LIQUIDITY_SWEEP",
    "exchange": "binanceus",
    "symbol": "BTC/USDT",
    "timeframe": "5m",
    "params": {"reversal_candles": 3},
    "metrics": {"sharpe_ratio": 1.2, "total_trades": 0},
    "fingerprint": "f" * 64,
    "created_at": "2026-01-01T00:00:00Z",
    "lineage": {
        "job_id": "job_wf",
        "seed": 1,
        "optimizer": "random",
        "objective": "sharpe_ratio",
        "regime": "any",
        "sampler": "RandomSampler",
        "sampler_version": "5",
        "code_version": "c",
        "exchange": "binanceus",
        "symbol": "BTC/USDT",
        "timeframe": "5m",
        "content_hash": "h" * 16,
        "first": "2026-01-01T00:00:00Z",
        "last": "2026-01-02T00:00:00Z",
        "settings": {},
    },
    "history": [
        {
            "from_status": None,
            "to_status": "CANDIDATE",
            "reason": "born",
            "at": "x",
            "actor": "registry",
        },
        {
            "from_status": "CANDIDATE",
            "to_status": "PAPER",
            "reason": "gates",
            "at": "y",
            "actor": "registry",
        },
    ],
    "validation": None,
    "gates": [
        {"name": "wfe", "value": 0.27, "comparison": ">=", "threshold": 0.25, "passed": True},
        {"name": "oos_psr", "value": None, "comparison": ">=", "threshold": 0.9, "passed": False},
    ],
    "walk_forward": JOB["walk_forward"],
}
BACKTEST: dict[str, Any] = {
    "config_id": "cfg_wf",
    "fingerprint": "f" * 64,
    "matches_config": True,
    "metrics": {},
    "trades_total": 0,
    "offset": 0,
    "limit": 1000,
    "trades": [],
    "equity": {
        "method": "minmax-per-bucket",
        "bars": 2,
        "time": [0, 300_000],
        "equity": [10_000.0, 10_100.0],
        "drawdown": [0.0, 0.0],
    },
    "compute_ms": 1.0,
}


WF_EQUITY: dict[str, Any] = {
    "job_id": "job_wf",
    "fingerprint": "x",
    "matches_report": True,
    "metrics": JOB["walk_forward"]["oos"]["metrics"],
    "trades": 15,
    "equity": {
        "method": "minmax-per-bucket",
        "bars": 30,
        "time": [40 * DAY, 55 * DAY, 69 * DAY],
        "equity": [10_000.0, 9_900.0, 10_060.0],
        "drawdown": [0.0, -0.01, 0.0],
    },
    "compute_ms": 2.0,
}
# A report stored before the degradation's points were kept.
OLD_VALIDATION: dict[str, Any] = {
    "n_trials": 60,
    "sharpe_variance": 1e-6,
    "expected_max_sharpe": 2.0,
    "expected_max_sharpe_per_bar": 0.004,
    "selected": {"trial": 5, "sharpe_per_bar": 0.01, "returns": 999, "skew": 0.1, "kurtosis": 4},
    "psr": 0.9,
    "dsr": 0.4,
    "pbo": {
        "blocks": 16,
        "sets": 12870,
        "pbo": 0.6,
        "prob_oos_loss": 0.5,
        "degradation": {"slope": -0.5, "intercept": 0.001, "r2": 0.2, "points": None},
        "logit_quantiles": {"5": -2.0, "25": -1.0, "50": 0.1, "75": 1.0, "95": 2.0},
        "logit_histogram": [0] * 12 + [12870] + [0] * 11,
    },
}


async def answer(route: Route) -> None:
    url = route.request.url.removeprefix(ORIGIN)
    path = url.split("?", 1)[0]
    if path.startswith("/api/"):
        body: Any = {"job_id": "job_wf", "total": 0, "limit": 1000, "offset": 0, "trials": []}
        body = {
            "/api/v2/training/job/job_wf": JOB,
            "/api/v2/configs/cfg_wf": CONFIG,
            "/api/v2/configs/cfg_wf/backtest": BACKTEST,
            "/api/v2/training/job/job_wf/walk-forward/equity": WF_EQUITY,
            "/api/v2/training/job/job_old": {
                **JOB,
                "job_id": "job_old",
                "walk_forward": None,
                "validation": OLD_VALIDATION,
            },
        }.get(path, body)
        await route.fulfill(status=200, content_type="application/json", body=json.dumps(body))
        return
    file = STATIC / ("index.html" if path == "/" else path.removeprefix("/static/"))
    kind = mimetypes.guess_type(file.name)[0] or "application/octet-stream"
    if file.suffix == ".mjs":
        kind = "text/javascript"
    await route.fulfill(status=200, content_type=kind, body=file.read_bytes())


async def test_a_walk_forward_job_shows_its_folds_and_stitched_record() -> None:
    console = Console()
    async with chromium() as browser:
        page = await browser.new_page()
        console.watch(page)
        await page.route(f"{ORIGIN}/**", answer)
        await page.add_init_script("sessionStorage.setItem('tradepulse.apiKey', 'k')")
        await page.goto(f"{ORIGIN}/#/job/job_wf")
        section = page.locator("#walk-forward")
        await section.wait_for()
        assert "3 folds, rolling" in (await section.text_content() or "")
        rows = await page.locator("#fold-table tbody tr").all_text_contents()
        assert len(rows) == 3
        assert "0–39 1970-01-01 00:00:00Z → 1970-02-09 00:00:00Z" in rows[0]
        await page.wait_for_function("() => window.__tp.charts['fold-sharpe']")
        sharpes = await page.evaluate("() => window.__tp.charts['fold-sharpe'].data.slice(1)")
        assert sharpes == [pytest.approx([1.5, 1.6, 1.7]), pytest.approx([0.5, 0.4, 0.3])]
        await page.wait_for_function("() => window.__tp.charts['wf-equity']")
        drawn = await page.evaluate(
            "() => window.__tp.charts['wf-equity'].equity.data().map((p) => p.value)"
        )
        assert drawn == WF_EQUITY["equity"]["equity"]
        note = await page.locator("#wf-equity-note").text_content()
        assert "matches the walk-forward report" in (note or "")
        folds = await page.evaluate("() => window.__tp.charts.folds.data.length")
        assert folds == 1 + 2 * 3  # the time axis, then each fold's train and test spans
        bars = await page.evaluate("() => window.__tp.charts.importances.data[1]")
        assert bars == [0.7, 0.3]
    assert console.errors == [], "\n".join(console.errors)


async def test_a_configuration_shows_its_gates_and_walk_forward_record() -> None:
    console = Console()
    async with chromium() as browser:
        page = await browser.new_page()
        console.watch(page)
        await page.route(f"{ORIGIN}/**", answer)
        await page.add_init_script("sessionStorage.setItem('tradepulse.apiKey', 'k')")
        await page.goto(f"{ORIGIN}/#/config/cfg_wf")
        await page.locator("#gates tbody tr").nth(1).wait_for()
        gates = await page.locator("#gates tbody tr").all_text_contents()
        assert len(gates) == 2
        assert "wfe" in gates[0]
        assert "pass" in gates[0]
        assert "fail" in gates[1]
        await page.locator("#walk-forward #fold-table").wait_for()
        await page.wait_for_function("() => window.__tp.charts['fold-sharpe']")
        await page.locator("#status-history tbody tr").nth(1).wait_for()
        history = await page.locator("#status-history tbody tr").all_text_contents()
        assert len(history) == 2
        await page.wait_for_function("() => window.__tp.charts.equity")
        assert await page.evaluate("() => window.__tp.charts.equity.equity.data().length") == 2
    assert console.errors == [], "\n".join(console.errors)


async def test_a_report_stored_without_degradation_points_draws_the_line_alone() -> None:
    console = Console()
    async with chromium() as browser:
        page = await browser.new_page()
        console.watch(page)
        await page.route(f"{ORIGIN}/**", answer)
        await page.add_init_script("sessionStorage.setItem('tradepulse.apiKey', 'k')")
        await page.goto(f"{ORIGIN}/#/job/job_old")
        await page.wait_for_function("() => window.__tp.charts.degradation")
        data = await page.evaluate("() => window.__tp.charts.degradation.data")
        xs, ys, line = data
        assert len(xs) == 21
        assert all(y is None for y in ys)
        assert line == pytest.approx([0.001 - 0.5 * x for x in xs])
        note = await page.locator("#degradation-note").text_content()
        assert "stored without the splits' points" in (note or "")
        assert await page.locator("#walk-forward").count() == 0
    assert console.errors == [], "\n".join(console.errors)
