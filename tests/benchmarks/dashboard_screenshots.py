"""Screenshots of every dashboard page into docs/screenshots/*.png, from the real system.

    scripts/screenshots            # or: .venv/bin/python -m tests.benchmarks.dashboard_screenshots
    scripts/screenshots job data   # only these pages (and only the work they need)

Starts its own system (own namespace and database), uploads 20,000 BTC 5m candles (and the
whole shared file as a second dataset, for its gap), runs a walk-forward job (the job page:
its folds, stitched equity and the final optimization's validation) and a three-seed ensemble
from the API, then opens each page in Debian's Chromium.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any

from playwright.async_api import ViewportSize

from tests.benchmarks.dashboard_stack import Stack, dashboard_stack
from tests.conftest import SHARED_CANDLES
from tests.e2e.conftest import upload_candles, wait_job
from tests.support.browser import chromium, chromium_missing, enter_key

OUT = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
VIEWPORT: ViewportSize = {"width": 1440, "height": 1000}


PAGES = ("jobs", "job", "configuration", "ensemble", "data")


async def main(pages: set[str]) -> int:
    missing = chromium_missing()
    if missing:
        print(missing, file=sys.stderr)
        return 2
    OUT.mkdir(parents=True, exist_ok=True)
    async with dashboard_stack(rows=20_000, trainers=2) as stack:
        if "data" in pages:
            # The whole shared file too, as the exchange it came from: its real gap
            # (2023-03-24) shows on the data page.
            await upload_candles(stack.client, SHARED_CANDLES, exchange="binance")
        job = await stack.job(
            n_iterations=150,
            lookback_candles=15_000,
            min_trades=5,
            walk_forward={"folds": 4, "is_oos_ratio": 3},
        )
        config = await stack.config_of(job["job_id"])
        ensemble = {"ensemble_id": ""}
        if "ensemble" in pages:
            ensemble = await run_ensemble(stack)
        async with chromium() as browser:
            page = await browser.new_page(viewport=VIEWPORT)
            page.set_default_timeout(60_000)
            await page.goto(f"{stack.gateway.url}/#/jobs")
            await enter_key(page, stack.gateway.key)
            await page.locator("#jobs-table").wait_for()
            shots = [
                ("jobs", "#/jobs", "#jobs-table"),
                ("job", f"#/job/{job['job_id']}", "#wf-equity-chart canvas"),
                ("configuration", f"#/config/{config['config_id']}", "#trades-table"),
                ("ensemble", f"#/ensemble/{ensemble['ensemble_id']}", "#ensemble-params"),
                ("data", "#/data", "#coverage-chart canvas"),
            ]
            for name, route, ready in shots:
                if name not in pages:
                    continue
                await page.goto(f"{stack.gateway.url}/{route}")
                await page.locator(ready).first.wait_for()
                # Charts draw on the next animation frames.
                await page.evaluate(
                    "() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)))"
                )
                await page.wait_for_timeout(300)
                path = OUT / f"{name}.png"
                await page.screenshot(path=str(path), full_page=True)
                print(f"{path.relative_to(OUT.parents[1])}")
    return 0


async def run_ensemble(stack: Stack) -> dict[str, Any]:
    reply = await stack.client.post(
        "/api/v2/training/ensemble",
        json={
            "strategy": "LIQUIDITY_SWEEP",
            "exchange": "binanceus",
            "symbol": "BTC/USDT",
            "timeframe": "5m",
            "regime": "any",
            "n_iterations": 80,
            "lookback_candles": 15_000,
            "seed": 7,
            "n_seeds": 3,
            "min_trades": 5,
            "pbo_blocks": 8,
        },
    )
    assert reply.status_code == 202, reply.text
    ensemble: dict[str, Any] = reply.json()
    for job_id in ensemble["job_ids"]:
        await wait_job(stack.client, job_id, within=900)
    return ensemble


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument(
        "pages", nargs="*", metavar="PAGE", help=f"of {', '.join(PAGES)}; default all"
    )
    args = parser.parse_args()
    unknown = set(args.pages) - set(PAGES)
    if unknown:
        parser.error(f"unknown pages {', '.join(sorted(unknown))}; choose from {', '.join(PAGES)}")
    sys.exit(asyncio.run(main(set(args.pages or PAGES))))
