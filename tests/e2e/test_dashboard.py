"""The dashboard in Debian's Chromium against the real system, used as a person uses it: enter
the key, start a job from the form, watch its bar reach 100 %, open its configuration and see
the equity and candle charts hold the data the API gives; a bad field shows the API's own 422
reason beside it; a wrong key brings the prompt back. Plus the charts' endpoints' rules."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.integration.flows import excerpt
from tests.support.browser import Console, chromium, chromium_missing, enter_key

from .conftest import SharedSystem, wait_job
from .test_api import config_of
from .test_bad_requests import jetstream_counts

pytestmark = pytest.mark.skipif(chromium_missing() is not None, reason=str(chromium_missing()))

TIMEOUT_MS = 120_000


async def background_pixels(page: Any, selector: str) -> int:
    """How many pixels of the chart's canvases differ from its background colour."""
    counted: int = await page.evaluate(
        """(selector) => {
          let n = 0;
          for (const canvas of document.querySelectorAll(`${selector} canvas`)) {
            const ctx = canvas.getContext("2d");
            if (!ctx || !canvas.width || !canvas.height) continue;
            const px = ctx.getImageData(0, 0, canvas.width, canvas.height).data;
            for (let i = 0; i < px.length; i += 4) {
              // The panel's background is #171d24 (23, 29, 36); transparent is not drawn on.
              if (px[i + 3] && !(px[i] === 23 && px[i + 1] === 29 && px[i + 2] === 36)) n++;
            }
          }
          return n;
        }""",
        selector,
    )
    return counted


async def test_a_user_starts_a_job_and_reads_its_configuration(
    shared_system: SharedSystem, tmp_path: Path, shared_candles_path: Path
) -> None:
    data = excerpt(shared_candles_path, 6_000, tmp_path / "btc_5m.csv")
    console = Console()
    gateway = shared_system.gateway
    async with gateway.client() as client, chromium() as browser:
        await shared_system.upload(client, data)
        page = await browser.new_page(viewport={"width": 1400, "height": 1000})
        console.watch(page)
        page.set_default_timeout(TIMEOUT_MS)
        await page.goto(f"{gateway.url}/#/jobs")
        await enter_key(page, gateway.key)
        await page.fill("#f-symbol", shared_system.symbol)
        await page.fill("#f-n_iterations", "40")
        await page.fill("#f-lookback_candles", "4000")
        await page.click("#start-submit")
        link = page.locator("#start-result a")
        await link.wait_for()
        job_id = (await link.text_content() or "").strip()
        assert job_id
        bar = f"tr[data-job='{job_id}'] progress"
        await page.wait_for_function(
            "sel => { const p = document.querySelector(sel); return p && Number(p.value) >= 100; }",
            arg=bar,
            timeout=TIMEOUT_MS,
        )
        config_link = page.locator(f"tr[data-job='{job_id}'] a.config-link")
        await config_link.wait_for()
        await config_link.click()
        await page.wait_for_url("**/#/config/*")
        config_id = page.url.rsplit("/", 1)[-1]
        await page.wait_for_function("() => window.__tp && window.__tp.charts.candles")
        await page.locator("#trades-table").wait_for()

        reply = await client.get(f"/api/v2/configs/{config_id}/backtest")
        assert reply.status_code == 200, reply.text
        backtest = reply.json()
        config = (await client.get(f"/api/v2/configs/{config_id}")).json()
        assert backtest["fingerprint"] == config["fingerprint"]
        assert backtest["matches_config"] is True
        assert backtest["trades_total"] > 0

        drawn = await page.evaluate(
            """() => { const e = window.__tp.charts.equity;
                return { equity: e.equity.data().map((p) => p.value),
                         drawdown: e.drawdown.data().length,
                         candles: window.__tp.charts.candles.series.data().length,
                         markers: window.__tp.charts.candles.markers.markers().length }; }"""
        )
        assert drawn["equity"] == backtest["equity"]["equity"]
        assert drawn["drawdown"] == len(backtest["equity"]["time"])
        assert drawn["candles"] > 0
        shown = min(3, backtest["trades_total"])  # the page shows trades 1-3 first
        assert drawn["markers"] == 2 * shown
        assert await background_pixels(page, "#equity-chart") > 1000
        assert await background_pixels(page, "#candles-chart") > 1000

        rows = await page.eval_on_selector_all(
            "#trades-table tbody tr",
            "rows => rows.map((r) => ({ entry: Number(r.dataset.entry),"
            " cells: [...r.children].map((c) => c.textContent) }))",
        )
        expected = backtest["trades"][: len(rows)]
        assert len(rows) == min(25, backtest["trades_total"])
        assert [r["entry"] for r in rows] == [t["entry_time"] for t in expected]
        assert [r["cells"][1] for r in rows] == [t["side"] for t in expected]
        assert [r["cells"][8] for r in rows] == [t["exit_reason"] for t in expected]
        assert [float(r["cells"][10].replace(",", "")) for r in rows] == pytest.approx(
            [round(t["net_pnl"], 2) for t in expected], abs=0.006
        )

        assert console.errors == [], "\n".join(console.errors)
        # Retire it through the form: a short reason is the API's 422 beside the field, a
        # good one a new history entry by the key's name.
        await page.fill("#status-reason", "no")
        await page.click("#retire")
        await page.locator("[data-error-for='reason']", has_text="at least 3").wait_for()
        await page.fill("#status-reason", "seen enough in the browser")
        await page.click("#retire")
        await page.locator("h1 .status.RETIRED").wait_for()
        history = (await client.get(f"/api/v2/configs/{config_id}")).json()["history"]
        assert history[-1]["to_status"] == "RETIRED"
        assert history[-1]["reason"] == "seen enough in the browser"
        last_row = await page.locator("#status-history tbody tr").last.text_content()
        assert history[-1]["actor"] in (last_row or "")

        # The job page draws the optimization history from the trials API.
        await page.goto(f"{gateway.url}/#/job/{job_id}")
        await page.wait_for_function("() => window.__tp.charts.history")
        points = await page.evaluate("() => window.__tp.charts.history.data[0].length")
        assert points == 40
        await page.locator("#validation").wait_for()
        job = (await client.get(f"/api/v2/training/job/{job_id}")).json()
        importances = job["param_importances"]
        assert sum(importances.values()) == pytest.approx(1.0)
        await page.wait_for_function("() => window.__tp.charts.importances")
        bars = await page.evaluate("() => window.__tp.charts.importances.data[1]")
        assert sorted(bars, reverse=True) == sorted(importances.values(), reverse=True)
    # Since the configuration was drawn, only the deliberate short reason's 422.
    assert len(console.errors) == 1, "\n".join(console.errors)
    assert "status of 422" in console.errors[0]
    assert f"/api/v2/configs/{config_id}/status" in console.errors[0]


async def test_the_form_shows_the_apis_reasons_and_a_wrong_key_brings_the_prompt(
    shared_system: SharedSystem, tmp_path: Path, shared_candles_path: Path
) -> None:
    data = excerpt(shared_candles_path, 3_000, tmp_path / "btc_5m.csv")
    console = Console()
    env, gateway = shared_system.env, shared_system.gateway
    async with gateway.client() as client, chromium() as browser:
        await shared_system.upload(client, data)
        before = await jetstream_counts(env.nats_url, env.names)
        page = await browser.new_page()
        console.watch(page)
        page.set_default_timeout(30_000)
        await page.goto(f"{gateway.url}/#/jobs")
        await enter_key(page, "not-" + gateway.key, accepted=False)
        # Refused: the prompt comes back and says so.
        await page.locator("#key-reason", has_text="refused (401)").wait_for()
        await page.locator("#key-dialog[open]").wait_for()
        await enter_key(page, gateway.key)
        await page.locator("#start-form").wait_for()

        await page.fill("#f-n_iterations", "0")
        await page.fill("#f-symbol", "BTCUSDT")
        async with page.expect_response("**/api/v2/training/start") as answer:
            await page.click("#start-submit")
        response = await answer.value
        assert response.status == 422
        errors = {e["field"]: e["reason"] for e in (await response.json())["errors"]}
        assert set(errors) == {"n_iterations", "symbol"}
        for field, reason in errors.items():
            beside = page.locator(f"[data-error-for='{field}']")
            assert (await beside.text_content()) == reason
            assert await page.get_attribute(f"#f-{field}", "aria-invalid") == "true"

        # The upload form: the API's reasons beside its fields too.
        await page.goto(f"{gateway.url}/#/data")
        await page.locator("#upload-form").wait_for()
        await page.fill("#u-symbol", "nonsense")
        async with page.expect_response("**/api/v2/data/upload") as uploaded:
            await page.click("#upload-form button[type=submit]")
        refused = await uploaded.value
        assert refused.status == 422
        for problem in (await refused.json())["errors"]:
            beside = page.locator(f"[data-error-for='{problem['field']}']")
            assert (await beside.text_content()) == problem["reason"]

        # No job was started, nothing imported, by the refused forms: nothing was published.
        assert await jetstream_counts(env.nats_url, env.names) == before

        # The dashboard's own responses carry the security headers.
        home = await client.get("/")
        assert "script-src 'self'" in home.headers["content-security-policy"]
        assert home.headers["x-frame-options"] == "DENY"
        assert home.headers["x-content-type-options"] == "nosniff"
        module = await client.get("/static/app/main.js")
        assert module.headers["x-content-type-options"] == "nosniff"
        assert "javascript" in module.headers["content-type"]
        vendor = await client.get(
            "/static/vendor/lightweight-charts-5.2.1/lightweight-charts.standalone.production.mjs"
        )
        assert vendor.status_code == 200
        assert "Lightweight Charts" in vendor.text[:300]
    assert console.errors == [e for e in console.errors if "401" in e or "422" in e], (
        "only the refused key's 401 and the form's 422 may show in the console"
    )


async def test_the_chart_endpoints_follow_the_apis_rules(
    shared_system: SharedSystem, tmp_path: Path, shared_candles_path: Path
) -> None:
    data = excerpt(shared_candles_path, 3_000, tmp_path / "btc_5m.csv")
    market = shared_system.market
    gateway = shared_system.gateway
    async with gateway.client() as client, gateway.client(authorized=False) as anonymous:
        await shared_system.upload(client, data)
        first = await client.get("/api/v2/data/candles", params={**market, "limit": 1000})
        assert first.status_code == 200, first.text
        page = first.json()
        assert page["count"] == 1000
        assert page["time"] == sorted(page["time"])
        second = await client.get(
            "/api/v2/data/candles", params={**market, "start": page["next_start"]}
        )
        rest = second.json()
        assert rest["time"][0] == page["time"][-1] + 300_000
        assert page["count"] + rest["count"] == 3_000
        assert rest["next_start"] is None

        gaps = await client.get("/api/v2/data/gaps", params=market)
        assert gaps.status_code == 200, gaps.text
        assert gaps.json()["total"] == 0  # the shared file's first rows have none

        cases: list[tuple[str, dict[str, Any], int, str | None]] = [
            ("/api/v2/data/gaps", {**market, "symbol": "ETH/USDT"}, 404, None),
            ("/api/v2/data/gaps", {"exchange": "binanceus"}, 422, "symbol"),
            ("/api/v2/data/candles", {**market, "limit": 5001}, 422, "limit"),
            ("/api/v2/data/candles", {**market, "start": "yesterday"}, 422, "start"),
            (
                "/api/v2/data/candles",
                {**market, "start": "2024-02-01", "end": "2024-01-01"},
                422,
                "end",
            ),
            ("/api/v2/data/candles", {**market, "symbol": "ETH/USDT"}, 404, None),
            ("/api/v2/data/candles", {"exchange": "binanceus"}, 422, "symbol"),
            ("/api/v2/configs/nope/backtest", {}, 404, None),
            ("/api/v2/configs/..%2F/backtest", {}, 404, None),
            ("/api/v2/configs/x/backtest", {"points": 5}, 422, "points"),
            ("/api/v2/configs/x/backtest", {"limit": 0}, 422, "limit"),
        ]
        for path, params, status_code, field in cases:
            reply = await client.get(path, params=params)
            assert reply.status_code == status_code, (path, params, reply.text)
            body = reply.json()
            assert body["request_id"]
            if field is not None:
                assert field in {e["field"] for e in body["errors"]}, body
        for path in ("/api/v2/data/candles", "/api/v2/data/gaps", "/api/v2/configs/x/backtest"):
            refused = await anonymous.get(path, params=market)
            assert refused.status_code == 401
            assert refused.headers["www-authenticate"].startswith("Bearer")


async def test_a_walk_forward_jobs_page_draws_its_folds_stitched_equity_and_degradation(
    shared_system: SharedSystem, tmp_path: Path, shared_candles_path: Path
) -> None:
    """A live walk-forward job (2 folds of 12 trials over 3,000 candles, then the final
    optimization): the job page draws its folds on the time axis, each fold's in- and
    out-of-sample Sharpe, the stitched out-of-sample equity a trainer re-ran (its metrics the
    report's) and the degradation scatter with the report's points."""
    data = excerpt(shared_candles_path, 6_000, tmp_path / "btc_5m.csv")
    payload = {
        **shared_system.market,
        "strategy": "LIQUIDITY_SWEEP",
        "regime": "any",
        "optimizer": "random",
        "n_iterations": 12,
        "lookback_candles": 3_000,
        "seed": 7,
        "walk_forward": {"folds": 2, "is_oos_ratio": 2},
    }
    console = Console()
    gateway = shared_system.gateway
    async with (
        gateway.client() as client,
        gateway.client(authorized=False) as anonymous,
        chromium() as browser,
    ):
        await shared_system.upload(client, data)
        started = await client.post("/api/v2/training/start", json=payload)
        assert started.status_code == 202, started.text
        job_id = started.json()["job_id"]
        job = await wait_job(client, job_id)
        assert job["status"] == "completed", job["error"]
        report = job["walk_forward"]
        pbo = job["validation"]["pbo"]
        points = pbo["degradation"]["points"]
        assert pbo["sets"] == 12_870
        assert len(points["is_performance"]) == len(points["oos_performance"]) == 256
        mine = {"symbol": shared_system.symbol}
        listed = (await client.get("/api/v2/training/jobs", params=mine)).json()["jobs"]
        assert [j["validation"]["pbo"]["degradation"]["points"] for j in listed] == [None]
        # The configuration keeps them too, and its list leaves them out like the jobs'.
        config = await config_of(client, job_id)
        assert config["validation"]["pbo"]["degradation"]["points"] == points
        configs = (await client.get("/api/v2/configs", params=mine)).json()["items"]
        assert [c["validation"]["pbo"]["degradation"]["points"] for c in configs] == [None]
        assert configs[0]["walk_forward"]["final"]["validation"]["pbo"]["degradation"] == {
            **pbo["degradation"],
            "points": None,
        }

        reply = await client.get(f"/api/v2/training/job/{job_id}/walk-forward/equity")
        assert reply.status_code == 200, reply.text
        stitched = reply.json()
        assert stitched["matches_report"] is True
        assert stitched["fingerprint"] == report["oos"]["fingerprint"]
        assert stitched["metrics"] == report["oos"]["metrics"]
        assert stitched["equity"]["bars"] == report["oos"]["span"]["bars"] == 2 * 750
        assert stitched["equity"]["time"][0] == report["oos"]["span"]["first_ms"]
        for path, params, code in [
            (f"/api/v2/training/job/{job_id}/walk-forward/equity", {"points": 5}, 422),
            ("/api/v2/training/job/nope/walk-forward/equity", {}, 404),
            ("/api/v2/training/job/..%2F/walk-forward/equity", {}, 404),
        ]:
            refused = await client.get(path, params=params)
            assert refused.status_code == code, (path, refused.text)
        anonymous_reply = await anonymous.get(f"/api/v2/training/job/{job_id}/walk-forward/equity")
        assert anonymous_reply.status_code == 401

        page = await browser.new_page(viewport={"width": 1400, "height": 1000})
        console.watch(page)
        page.set_default_timeout(TIMEOUT_MS)
        await page.goto(f"{gateway.url}/#/job/{job_id}")
        await enter_key(page, gateway.key)
        await page.wait_for_function(
            "() => ['folds', 'fold-sharpe', 'degradation', 'wf-equity']"
            ".every((name) => window.__tp && window.__tp.charts[name])"
        )
        drawn = await page.evaluate(
            """() => { const c = window.__tp.charts;
                return { folds: c.folds.data.length,
                         sharpe: c['fold-sharpe'].data.slice(1),
                         equity: c['wf-equity'].equity.data().map((p) => p.value),
                         drawdown: c['wf-equity'].drawdown.data().length,
                         scatter: [c.degradation.data[0], c.degradation.data[1]] }; }"""
        )
        assert drawn["folds"] == 1 + 2 * 2  # the time axis, each fold's train and test spans
        folds = report["fold_results"]
        assert drawn["sharpe"] == [
            [f["train_metrics"]["sharpe_ratio"] if f["train_metrics"] else None for f in folds],
            [f["test_metrics"]["sharpe_ratio"] for f in folds],
        ]
        assert drawn["equity"] == stitched["equity"]["equity"]
        assert drawn["drawdown"] == len(stitched["equity"]["time"])
        xs, ys = drawn["scatter"]
        assert sorted(zip(xs, ys, strict=True)) == sorted(
            zip(points["is_performance"], points["oos_performance"], strict=True)
        )
        for chart in ("#folds-chart", "#fold-sharpe-chart", "#wf-equity-chart"):
            assert await background_pixels(page, chart) > 1000, chart
        assert await background_pixels(page, "#degradation-chart") > 1000
        note = await page.locator("#wf-equity-note").text_content()
        assert "matches the walk-forward report" in (note or "")
        assert "256 of the 12,870 splits" in (
            await page.locator("#degradation-note").text_content() or ""
        )
    assert console.errors == [], "\n".join(console.errors)
