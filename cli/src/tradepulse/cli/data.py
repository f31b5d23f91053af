"""`tradepulse ingest`: import candles through the gateway, from a local file (uploaded), a file
the server can read, or an exchange; waits for the outcome and prints the dataset."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any, TextIO

from tradepulse.cli import render
from tradepulse.cli.client import (
    POLL_EVERY_S,
    Gateway,
    GatewayError,
    add_connection_options,
    client_for,
)

UPLOAD_WAIT_S = 300.0


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "ingest",
        help="import candles (a file, or from an exchange)",
        description="Import candles into the system through the gateway: upload a local "
        "CSV/CSV.gz/Parquet file (--file), have the ingest service read a file on the server "
        "(--server-path), or pull from an exchange (--from-exchange).",
    )
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--file", type=Path, metavar="PATH", help="a local file to upload")
    source.add_argument("--server-path", metavar="PATH", help="a file the ingest service can read")
    source.add_argument(
        "--from-exchange", action="store_true", help="pull the candles from the exchange"
    )
    p.add_argument("--exchange", required=True, help="e.g. binance")
    p.add_argument("--symbol", required=True, help="e.g. BTC/USDT")
    p.add_argument("--timeframe", required=True, help="e.g. 5m")
    p.add_argument("--since", metavar="TIME", help="ISO 8601 (UTC unless an offset is given)")
    p.add_argument("--until", metavar="TIME", help="ISO 8601, exclusive")
    p.add_argument("--json", action="store_true", help="print the gateway's answer as JSON")
    add_connection_options(p)
    p.set_defaults(run=run_ingest)


async def wait_import(gw: Gateway, answer: Any) -> dict[str, Any]:
    """The import's outcome: the gateway answers at once, or (202) with an id to ask about."""
    if not isinstance(answer, dict) or "request_id" not in answer:
        raise GatewayError(f"unexpected answer from the gateway: {str(answer)[:200]}")
    while answer.get("status") == "pending":
        await asyncio.sleep(POLL_EVERY_S)
        answer = await gw.import_status(str(answer["request_id"]))
    if answer.get("status") == "failed":
        raise GatewayError(f"the candles were refused: {answer.get('reason') or 'no reason'}")
    return dict(answer)


async def upload_file(
    gw: Gateway, path: Path, exchange: str, symbol: str, timeframe: str, **window: str | None
) -> dict[str, Any]:
    fields = {"exchange": exchange, "symbol": symbol, "timeframe": timeframe}
    fields.update({k: v for k, v in window.items() if v is not None})
    return await wait_import(gw, await gw.upload(path, fields, wait_s=UPLOAD_WAIT_S))


def describe_import(outcome: dict[str, Any], out: TextIO) -> None:
    dataset = outcome.get("dataset") or {}
    name = f"{outcome.get('exchange')} {outcome.get('symbol')} {outcome.get('timeframe')}"
    print(
        f"{name}: {render.number(outcome.get('rows_received'))} candles received, "
        f"{render.number(outcome.get('rows_added'))} new",
        file=out,
    )
    if dataset:
        print(
            f"dataset: {render.number(dataset.get('rows'))} candles from "
            f"{dataset.get('first')} to {dataset.get('last')}, "
            + (
                "no gaps"
                if not dataset.get("gaps")
                else f"{dataset.get('gaps')} gap(s), "
                f"{render.number(dataset.get('missing_candles'))} candles missing"
            ),
            file=out,
        )
    out.flush()


async def _ingest(args: argparse.Namespace) -> int:
    async with client_for(args) as gw:
        if args.file is not None:
            outcome = await upload_file(
                gw,
                args.file,
                args.exchange,
                args.symbol,
                args.timeframe,
                since=args.since,
                until=args.until,
            )
        else:
            payload: dict[str, Any] = {
                "exchange": args.exchange,
                "symbol": args.symbol,
                "timeframe": args.timeframe,
            }
            if args.server_path is not None:
                payload["path"] = args.server_path
            payload.update(
                {k: v for k, v in (("since", args.since), ("until", args.until)) if v is not None}
            )
            outcome = await wait_import(gw, await gw.ingest(payload, wait_s=UPLOAD_WAIT_S))
    if args.json:
        render.print_json(outcome)
    else:
        describe_import(outcome, sys.stdout)
    return 0


def run_ingest(args: argparse.Namespace) -> int:
    return asyncio.run(_ingest(args))
