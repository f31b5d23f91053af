"""`tradepulse configs` and `tradepulse config ID`: the registry's configurations."""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

from tradepulse.cli import render
from tradepulse.cli.client import add_connection_options, client_for
from tradepulse.cli.status import history_line


def add_parsers(sub: Any) -> None:
    p = sub.add_parser(
        "configs",
        help="list trained configurations",
        description="List configurations from the registry, e.g. "
        "`--min-sharpe 1 --min-trades 50 --sort sharpe_ratio` (best first).",
    )
    p.add_argument("--status", default=None, help="DISCOVERY, CANDIDATE, PAPER, LIVE, RETIRED")
    p.add_argument("--min-sharpe", type=float, default=None, metavar="X")
    p.add_argument("--min-trades", type=int, default=None, metavar="N")
    p.add_argument(
        "--min-dsr", type=float, default=None, metavar="P", help="deflated Sharpe at least P"
    )
    p.add_argument(
        "--max-pbo",
        type=float,
        default=None,
        metavar="P",
        help="probability of backtest overfitting at most P",
    )
    p.add_argument("--symbol", default=None)
    p.add_argument("--strategy", default=None)
    p.add_argument(
        "--sort",
        default=None,
        help="sharpe_ratio, net_profit, total_trades, dsr, pbo or created_at (default), "
        "highest first",
    )
    p.add_argument("--ascending", action="store_true", help="lowest first")
    p.add_argument("--limit", type=int, default=50)
    p.add_argument("--offset", type=int, default=0)
    p.add_argument("--json", action="store_true", help="print the gateway's JSON")
    add_connection_options(p)
    p.set_defaults(run=run_configs)

    p = sub.add_parser(
        "config", help="show one configuration", description="Show a configuration and its history."
    )
    p.add_argument("config_id", metavar="ID")
    p.add_argument("--json", action="store_true", help="print the gateway's JSON")
    add_connection_options(p)
    p.set_defaults(run=run_config)


async def _configs(args: argparse.Namespace) -> int:
    async with client_for(args) as gw:
        body = await gw.configs(
            status=args.status,
            min_sharpe=args.min_sharpe,
            min_trades=args.min_trades,
            min_dsr=args.min_dsr,
            max_pbo=args.max_pbo,
            symbol=args.symbol,
            strategy=args.strategy,
            sort=args.sort,
            order="asc" if args.ascending else None,
            limit=args.limit,
            offset=args.offset,
        )
    render.listing(
        body, "items", render.config_rows, render.CONFIG_HEADER, "configurations", args.json
    )
    return 0


async def _config(args: argparse.Namespace) -> int:
    async with client_for(args) as gw:
        config = await gw.config(args.config_id)
    if args.json:
        render.print_json(config)
        return 0
    out = sys.stdout
    print(f"config     {config.get('config_id')}", file=out)
    print(f"status     {config.get('status')}", file=out)
    lineage = config.get("lineage") or {}
    print(
        f"trained    {config.get('strategy')} on {render.market(config)} by job "
        f"{config.get('job_id')} ({lineage.get('optimizer')}, "
        f"seed {lineage.get('seed')}, objective {lineage.get('objective')}, regime "
        f"{lineage.get('regime')})",
        file=out,
    )
    if lineage.get("first"):
        print(f"window     {lineage.get('first')} to {lineage.get('last')}", file=out)
    render.block("params", config.get("params") or {}, out, params=True)
    render.block("metrics", config.get("metrics") or {}, out)
    if config.get("fingerprint"):
        print(f"fingerprint  {config['fingerprint']}", file=out)
    render.validation_block(config.get("validation"), config.get("metrics"), out)
    history = config.get("history") or []
    if history:
        print("history", file=out)
        for change in history:
            if isinstance(change, dict):
                print(f"  {history_line(change)}", file=out)
    return 0


def run_configs(args: argparse.Namespace) -> int:
    return asyncio.run(_configs(args))


def run_config(args: argparse.Namespace) -> int:
    return asyncio.run(_config(args))
