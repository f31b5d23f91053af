"""`tradepulse train`, `jobs`, `job` and `cancel`: training jobs through the gateway."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any, TextIO

from tradepulse.cli import render
from tradepulse.cli.client import (
    Gateway,
    GatewayError,
    add_connection_options,
    client_for,
)
from tradepulse.cli.errors import UserError

# How long a finished job may wait for the registry to file its configuration.
CONFIG_WAIT_S = 15.0


def add_parsers(sub: Any) -> None:
    p = sub.add_parser(
        "train",
        help="submit a training job and follow its progress",
        description="Submit a training job to the gateway, then show its progress live and, "
        "when it ends, the best configuration (params, key metrics, config id).",
    )
    add_training_options(p)
    p.add_argument(
        "--walk-forward",
        type=int,
        default=None,
        metavar="K",
        help="a walk-forward job: K folds (2..20), each an optimization of N trials tested on "
        "the span after it, then a final optimization whose best is the configuration",
    )
    p.add_argument(
        "--anchored",
        action="store_true",
        help="with --walk-forward: every fold trains from the window's start (default rolling)",
    )
    p.add_argument(
        "--is-oos-ratio",
        type=int,
        default=None,
        metavar="R",
        help="with --walk-forward: training span / test span, 1..20 (default 4)",
    )
    p.add_argument("--no-follow", action="store_true", help="print the job id and return at once")
    p.add_argument("--json", action="store_true", help="print the job as JSON when it ends")
    add_connection_options(p)
    p.set_defaults(run=run_train)

    p = sub.add_parser(
        "ensemble",
        help="run one training request for several seeds and tell whether they converge",
        description="Submit the same training job for every seed, follow them with a progress "
        "bar, then print each seed's best and whether their best parameters agree (each "
        "parameter's spread over the seeds as a share of its range, at most --max-dispersion).",
    )
    add_training_options(p, seed=False)
    p.add_argument(
        "--seeds", required=True, metavar="A,B,...", help="2 to 100 distinct seeds, e.g. 42,123,456"
    )
    p.add_argument(
        "--max-dispersion",
        type=float,
        default=None,
        metavar="X",
        help="converged when every parameter's dispersion is at most X, in (0, 1] (default 0.10)",
    )
    p.add_argument("--no-follow", action="store_true", help="print the ensemble id and return")
    p.add_argument("--json", action="store_true", help="print the ensemble as JSON when it ends")
    add_connection_options(p)
    p.set_defaults(run=run_ensemble)

    p = sub.add_parser("jobs", help="list training jobs", description="List training jobs.")
    p.add_argument("--status", default=None, help="queued, running, completed, failed, cancelled")
    p.add_argument("--symbol", default=None)
    p.add_argument("--strategy", default=None)
    p.add_argument("--limit", type=int, default=50)
    p.add_argument("--offset", type=int, default=0)
    p.add_argument("--json", action="store_true", help="print the gateway's JSON")
    add_connection_options(p)
    p.set_defaults(run=run_jobs)

    p = sub.add_parser("job", help="show one training job", description="Show a training job.")
    p.add_argument("job_id", metavar="ID")
    p.add_argument("--json", action="store_true", help="print the gateway's JSON")
    add_connection_options(p)
    p.set_defaults(run=run_job)

    p = sub.add_parser("cancel", help="cancel a training job", description="Cancel a job.")
    p.add_argument("job_id", metavar="ID")
    p.add_argument("--json", action="store_true", help="print the gateway's JSON")
    add_connection_options(p)
    p.set_defaults(run=run_cancel)


def add_training_options(p: Any, *, seed: bool = True) -> None:
    """The options of one training request, shared by `train` and `ensemble`."""
    p.add_argument("--symbol", required=True, help="e.g. BTC/USDT")
    p.add_argument("--exchange", required=True, help="e.g. binance")
    p.add_argument("--timeframe", default="5m", help="candle timeframe (default: 5m)")
    p.add_argument("--strategy", default="LIQUIDITY_SWEEP", help="default: LIQUIDITY_SWEEP")
    p.add_argument(
        "--optimizer",
        default="random",
        help="random, bayesian, grid or cmaes (default: random)",
    )
    p.add_argument("--n-iterations", type=int, required=True, metavar="N", help="trials to run")
    window = p.add_mutually_exclusive_group()
    window.add_argument(
        "--lookback", type=int, metavar="N", help="train on the last N candles of the dataset"
    )
    window.add_argument(
        "--start",
        metavar="TIME",
        help="train on the candles from TIME on (ISO 8601, UTC unless an offset is given)",
    )
    p.add_argument("--end", metavar="TIME", help="with --start: the window's end (exclusive)")
    if seed:
        p.add_argument("--seed", type=int, default=None, help="sampler seed (server default: 42)")
    p.add_argument("--regime", default=None, help="any, bull, bear or sideways")
    p.add_argument(
        "--objective",
        default=None,
        help="sharpe_ratio (default), net_profit, sortino_ratio, calmar_ratio or profit_factor",
    )
    p.add_argument("--min-trades", type=int, default=None, metavar="N")
    p.add_argument(
        "--settings",
        default=None,
        metavar="JSON|FILE",
        help="backtest settings: initial_capital, fee_rate, slippage, risk_per_trade, max_leverage",
    )
    p.add_argument(
        "--pbo-blocks",
        type=int,
        default=None,
        metavar="S",
        help="blocks of the PBO's splits: even, 2..16 (default 16)",
    )
    p.add_argument("--batch-size", type=int, default=None, help=argparse.SUPPRESS)


def json_option(text: str, option: str) -> Any:
    """A JSON value given inline or as a file name."""
    source = text
    path = Path(text)
    try:
        # A long inline value is no file name at all: the OS says so with an error.
        is_file = not text.lstrip().startswith(("{", "[")) and path.is_file()
    except (OSError, ValueError):
        is_file = False
    if is_file:
        try:
            source = path.read_text()
        except OSError as exc:
            raise UserError(f"{option}: cannot read {path}: {exc.strerror or exc}") from None
    try:
        return json.loads(source)
    except ValueError as exc:
        raise UserError(f"{option}: not JSON nor a readable file ({exc})") from None


def training_payload(args: argparse.Namespace) -> dict[str, Any]:
    """The predecessor's payload, plus the new fields the user set (unset ones are left to the
    gateway's defaults)."""
    if args.n_iterations < 1:
        raise UserError("--n-iterations must be at least 1")
    if args.end is not None and args.start is None:
        raise UserError("--end needs --start")
    payload: dict[str, Any] = {
        "strategy": args.strategy,
        "symbol": args.symbol,
        "exchange": args.exchange,
        "timeframe": args.timeframe,
        "optimizer": args.optimizer,
        "n_iterations": args.n_iterations,
    }
    optional = {
        "regime": args.regime,
        "lookback_candles": args.lookback,
        "start": args.start,
        "end": args.end,
        "seed": getattr(args, "seed", None),
        "objective": args.objective,
        "min_trades": args.min_trades,
        "batch_size": args.batch_size,
        "pbo_blocks": args.pbo_blocks,
    }
    payload.update({k: v for k, v in optional.items() if v is not None})
    folds = getattr(args, "walk_forward", None)
    if folds is not None:
        walk_forward: dict[str, Any] = {"folds": folds}
        if args.anchored:
            walk_forward["mode"] = "anchored"
        if args.is_oos_ratio is not None:
            walk_forward["is_oos_ratio"] = args.is_oos_ratio
        payload["walk_forward"] = walk_forward
    elif getattr(args, "anchored", False) or getattr(args, "is_oos_ratio", None) is not None:
        raise UserError("--anchored and --is-oos-ratio need --walk-forward K")
    if args.settings is not None:
        settings = json_option(args.settings, "--settings")
        if not isinstance(settings, dict):
            raise UserError("--settings must be a JSON object")
        payload["settings"] = settings
    return payload


async def wait_config(gw: Gateway, job: dict[str, Any], within: float) -> dict[str, Any] | None:
    """The configuration a completed job produced, once the registry has filed it."""
    deadline = asyncio.get_running_loop().time() + within
    while not job.get("config_id"):
        if asyncio.get_running_loop().time() >= deadline:
            return None
        await asyncio.sleep(0.25)
        job.update(await gw.job(str(job["job_id"])))
    try:
        return await gw.config(str(job["config_id"]))
    except GatewayError:
        return None  # the job's own best is shown instead: the same params and metrics


async def follow_job(
    gw: Gateway, job_id: str, total: int | None, progress_out: TextIO | None = None
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """Follow a job with a progress bar until it ends; its final state and configuration."""
    bar = render.ProgressBar(total, progress_out or sys.stderr)
    try:
        job = await gw.follow(job_id, bar.update)
    finally:
        bar.close()
    config = await wait_config(gw, job, CONFIG_WAIT_S) if job.get("status") == "completed" else None
    return job, config


def outcome_code(job: dict[str, Any]) -> int:
    return 0 if job.get("status") == "completed" else 1


async def _train(args: argparse.Namespace) -> int:
    payload = training_payload(args)
    async with client_for(args) as gw:
        accepted = await gw.submit_training(payload)
        job_id = str(accepted.get("job_id", ""))
        if not job_id:
            raise GatewayError(f"the gateway accepted the job without a job_id: {accepted}")
        if args.no_follow:
            if args.json:
                render.print_json(accepted)
            else:
                print(f"job {job_id} {accepted.get('status', 'queued')}", flush=True)
                print(f"follow it with: tradepulse job {job_id}", file=sys.stderr)
            return 0
        print(f"job {job_id} {accepted.get('status', 'queued')}", file=sys.stderr, flush=True)
        try:
            # One bar over every optimization's trials: K folds and the final one.
            optimizations = 1 if args.walk_forward is None else args.walk_forward + 1
            job, config = await follow_job(gw, job_id, args.n_iterations * optimizations)
        except asyncio.CancelledError:
            print(
                f"stopped following; job {job_id} goes on (tradepulse job {job_id}, "
                f"tradepulse cancel {job_id})",
                file=sys.stderr,
            )
            raise
        if args.json:
            render.print_json({"job": job, "config": config})
        else:
            report_outcome(job, config, sys.stdout)
        return outcome_code(job)


def report_outcome(job: dict[str, Any], config: dict[str, Any] | None, out: TextIO) -> None:
    status = job.get("status")
    job_id = job.get("job_id")
    if status == "completed":
        print(f"job {job_id} completed: {job.get('trials_done', '?')} trials", file=out)
        render.best_configuration(job, config, out)
        report = job.get("walk_forward")
        if isinstance(report, dict):
            render.walk_forward_report(report, config, out)
            print(render.walk_forward_verdict(config), file=out)
    elif status == "failed":
        print(f"job {job_id} failed: {job.get('error') or 'no reason given'}", file=out)
    else:
        print(f"job {job_id} {status} after {job.get('trials_done', '?')} trials", file=out)
    out.flush()


def parse_seeds(text: str) -> list[int]:
    try:
        seeds = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise UserError(f"--seeds: {text!r} is not a comma-separated list of integers") from None
    if len(seeds) < 2:
        raise UserError("--seeds: an ensemble needs at least 2 seeds")
    if len(set(seeds)) != len(seeds):
        raise UserError("--seeds: seeds must not repeat")
    return seeds


ENSEMBLE_POLL_S = 0.5


async def follow_ensemble(
    gw: Gateway, ensemble_id: str, trials_per_job: int, progress_out: TextIO | None = None
) -> dict[str, Any]:
    """Poll an ensemble until every seed's job has ended, with one progress bar over all of
    its trials; the final view (with the convergence report)."""
    bar = render.ProgressBar(None, progress_out or sys.stderr)
    done_trials: dict[str, int] = {}
    try:
        while True:
            view = await gw.ensemble(ensemble_id)
            jobs = [j for j in view.get("jobs") or [] if isinstance(j, dict)]
            for j in jobs:
                job_id = str(j.get("job_id"))
                if j.get("status") in ("completed", "failed", "cancelled"):
                    # An ended job's trials are all accounted for, however many ran.
                    done_trials[job_id] = trials_per_job
                elif j.get("status") == "running":
                    done_trials[job_id] = int((await gw.job(job_id)).get("trials_done") or 0)
            total = int(view.get("size") or len(jobs)) * trials_per_job
            done = sum(done_trials.values())
            ended = view.get("status") == "ended"
            bar.update(
                {
                    "status": "ended" if ended else "running",
                    "progress": 100.0 if ended else 100.0 * done / max(total, 1),
                    "trials_done": done,
                    "n_iterations": total,
                }
            )
            if ended:
                return view
            await asyncio.sleep(ENSEMBLE_POLL_S)
    finally:
        bar.close()


async def _ensemble(args: argparse.Namespace) -> int:
    payload = training_payload(args)
    payload["seeds"] = parse_seeds(args.seeds)
    if args.max_dispersion is not None:
        payload["max_dispersion"] = args.max_dispersion
    async with client_for(args) as gw:
        accepted = await gw.submit_ensemble(payload)
        ensemble_id = str(accepted.get("ensemble_id", ""))
        if not ensemble_id:
            raise GatewayError(f"the gateway accepted the ensemble without an id: {accepted}")
        if args.no_follow:
            if args.json:
                render.print_json(accepted)
            else:
                print(f"ensemble {ensemble_id} queued", flush=True)
                print(
                    f"follow it with: GET /api/v2/training/ensemble/{ensemble_id}",
                    file=sys.stderr,
                )
            return 0
        jobs = accepted.get("job_ids") or []
        print(f"ensemble {ensemble_id}: {len(jobs)} jobs queued", file=sys.stderr, flush=True)
        view = await follow_ensemble(gw, ensemble_id, args.n_iterations)
    if args.json:
        render.print_json(view)
    else:
        render.ensemble_report(view, sys.stdout)
    completed = [j for j in view.get("jobs") or [] if j.get("status") == "completed"]
    return 0 if completed else 1


async def _jobs(args: argparse.Namespace) -> int:
    async with client_for(args) as gw:
        body = await gw.jobs(
            status=args.status,
            symbol=args.symbol,
            strategy=args.strategy,
            limit=args.limit,
            offset=args.offset,
        )
    render.listing(body, "jobs", render.job_rows, render.JOB_HEADER, "jobs", args.json)
    return 0


async def _job(args: argparse.Namespace) -> int:
    async with client_for(args) as gw:
        job = await gw.job(args.job_id)
    if args.json:
        render.print_json(job)
    else:
        render.job_details(job, sys.stdout)
    return 0


async def _cancel(args: argparse.Namespace) -> int:
    async with client_for(args) as gw:
        answer = await gw.cancel(args.job_id)
    if args.json:
        render.print_json(answer)
        return 0
    status = answer.get("status")
    if status == "cancelled":
        print(f"job {args.job_id} cancelled")
    else:
        print(
            f"job {args.job_id}: cancel requested; it is still {status} while it winds down "
            f"(see tradepulse job {args.job_id})"
        )
    return 0


def run_train(args: argparse.Namespace) -> int:
    return asyncio.run(_train(args))


def run_ensemble(args: argparse.Namespace) -> int:
    return asyncio.run(_ensemble(args))


def run_jobs(args: argparse.Namespace) -> int:
    return asyncio.run(_jobs(args))


def run_job(args: argparse.Namespace) -> int:
    return asyncio.run(_job(args))


def run_cancel(args: argparse.Namespace) -> int:
    return asyncio.run(_cancel(args))
