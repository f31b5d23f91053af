"""The dashboard's speed on the real system (issue 10, "fast and light"): first paint of every
page on loopback while a job runs, the equity chart of a 155,520-bar window drawn after its
data arrive, the backtest endpoint's latency for that window, and the walk-forward equity
endpoint's for a 5-fold job over it (with its ratio to the backtest's, measured alike).

    .venv/bin/python -m tests.benchmarks.bench_dashboard [--repeat 20]

Prints figures; asserts nothing. Starts its own system and uploads 160,000 BTC 5m candles.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time

from tests.benchmarks.dashboard_stack import dashboard_stack
from tests.support.browser import chromium, chromium_missing, enter_key

BARS = 155_520


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def line(name: str, values: list[float]) -> str:
    return (
        f"{name:<44} median {statistics.median(values):8.1f} ms   p90 {pct(values, 0.9):8.1f} ms"
        f"   max {max(values):8.1f} ms   (n={len(values)})"
    )


async def main(repeat: int) -> int:
    missing = chromium_missing()
    if missing:
        print(missing, file=sys.stderr)
        return 2
    async with dashboard_stack(rows=BARS + 4_000, trainers=1) as stack:
        job = await stack.job(n_iterations=16, lookback_candles=BARS, min_trades=1, pbo_blocks=4)
        config = await stack.config_of(job["job_id"])
        cid = config["config_id"]
        latencies, trainer_ms = [], []
        await stack.client.get(f"/api/v2/configs/{cid}/backtest")  # the trainer's cache warm
        for _ in range(repeat):
            started = time.perf_counter()
            reply = await stack.client.get(f"/api/v2/configs/{cid}/backtest")
            latencies.append((time.perf_counter() - started) * 1000)
            body = reply.json()
            trainer_ms.append(body["compute_ms"])
        print(
            f"window: {body['equity']['bars']:,} bars, {body['trades_total']} trades, "
            f"equity thinned to {len(body['equity']['time'])} points; fingerprint matches: "
            f"{body['matches_config']}"
        )
        print(line("GET /configs/{id}/backtest (HTTP, warm)", latencies))
        print(line("  of which the trainer (backtest + thinning)", trainer_ms))

        # A walk-forward job over the same window: its stitched equity re-runs 5 fold tests.
        wf = await stack.job(
            n_iterations=8,
            lookback_candles=BARS,
            min_trades=1,
            pbo_blocks=4,
            walk_forward={"folds": 5, "is_oos_ratio": 4},
        )
        path = f"/api/v2/training/job/{wf['job_id']}/walk-forward/equity"
        wf_latencies, wf_trainer_ms = [], []
        await stack.client.get(path)
        for _ in range(repeat):
            started = time.perf_counter()
            reply = await stack.client.get(path)
            wf_latencies.append((time.perf_counter() - started) * 1000)
            stitched = reply.json()
            wf_trainer_ms.append(stitched["compute_ms"])
        print(
            f"walk-forward: {stitched['equity']['bars']:,} out-of-sample bars, "
            f"{stitched['trades']} trades, thinned to {len(stitched['equity']['time'])} points; "
            f"matches the report: {stitched['matches_report']}"
        )
        print(line("GET /training/job/{id}/walk-forward/equity", wf_latencies))
        print(line("  of which the trainer (5 tests + stitch + thin)", wf_trainer_ms))
        ratio = statistics.median(wf_latencies) / statistics.median(latencies)
        print(f"walk-forward equity / backtest, medians: {ratio:.2f}x")

        # The system busy: a long job runs while the pages are opened.
        busy = await stack.client.post(
            "/api/v2/training/start",
            json={
                "exchange": "binanceus",
                "symbol": "BTC/USDT",
                "timeframe": "5m",
                "regime": "any",
                "n_iterations": 5_000,
                "lookback_candles": BARS,
            },
        )
        assert busy.status_code == 202, busy.text
        routes = {
            "jobs": "#/jobs",
            "job": f"#/job/{job['job_id']}",
            "configuration": f"#/config/{cid}",
            "ensemble (unknown id: the page's shell)": "#/ensemble/none",
            "data": "#/data",
        }
        async with chromium() as browser:
            context = await browser.new_context(viewport={"width": 1440, "height": 1000})
            page = await context.new_page()
            await page.goto(f"{stack.gateway.url}/#/jobs")
            await enter_key(page, stack.gateway.key)
            paints: dict[str, list[float]] = {name: [] for name in routes}
            renders: list[float] = []
            for _ in range(max(3, repeat // 4)):
                for name, route in routes.items():
                    await page.goto("about:blank")
                    await page.goto(f"{stack.gateway.url}/{route}")
                    fcp = await page.evaluate(
                        """() => new Promise((resolve) => {
                          const seen = () => performance.getEntriesByName("first-contentful-paint")[0];
                          const poll = () => seen() ? resolve(seen().startTime) : setTimeout(poll, 10);
                          poll();
                        })"""
                    )
                    paints[name].append(float(fcp))
                    if name == "configuration":
                        await page.wait_for_function(
                            "() => window.__tp.equityRenderMs !== undefined", timeout=60_000
                        )
                        renders.append(
                            float(await page.evaluate("() => window.__tp.equityRenderMs"))
                        )
            for name, values in paints.items():
                print(line(f"first contentful paint: {name}", values))
            print(line(f"equity chart drawn after its data ({BARS:,} bars)", renders))
        await stack.client.post(f"/api/v2/training/job/{busy.json()['job_id']}/cancel")
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=20)
    sys.exit(asyncio.run(main(parser.parse_args().repeat)))
