"""`tradepulse promote ID --to STATUS --reason TEXT` and `tradepulse retire ID --reason TEXT`:
an operator's status changes, through the gateway (POST /api/v2/configs/{id}/status).

The registry's transition table decides; a refusal is one line naming the statuses allowed
from the current one, and exit code 2. Asking for the status a configuration already has
changes nothing and succeeds, so a command may be run again when its answer was lost.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Mapping
from typing import Any, TextIO

from tradepulse.cli import render
from tradepulse.cli.client import add_connection_options, client_for

# The registry's statuses and reason bounds, copied so that no command loads the contracts
# (pydantic) and the core (numba) to build its parser; test_vocabulary fails if they drift.
STATUSES: tuple[str, ...] = ("DISCOVERY", "CANDIDATE", "PAPER", "LIVE", "RETIRED")
REASON_MIN_CHARS = 3
REASON_MAX_CHARS = 500
REASON_HELP = f"why, kept in the history ({REASON_MIN_CHARS}..{REASON_MAX_CHARS} characters)"


def status_name(value: str) -> str:
    """A status as typed (any case) in the form the gateway knows, for argparse's choices."""
    return value.strip().upper()


def add_parsers(sub: Any) -> None:
    p = sub.add_parser(
        "promote",
        help="change a configuration's status (e.g. PAPER to LIVE)",
        description="Ask the registry to move a configuration to STATUS. Its transition "
        "table decides: PAPER -> LIVE is only ever done this way; a refusal names the "
        "statuses allowed now. The change is recorded with the reason and your key's name.",
    )
    p.add_argument("config_id", metavar="ID")
    p.add_argument(
        "--to",
        dest="status",
        required=True,
        type=status_name,
        choices=STATUSES,
        metavar="STATUS",
        help=", ".join(STATUSES),
    )
    p.add_argument("--reason", required=True, metavar="TEXT", help=REASON_HELP)
    p.add_argument("--json", action="store_true", help="print the gateway's JSON")
    add_connection_options(p)
    p.set_defaults(run=run_change)

    p = sub.add_parser(
        "retire",
        help="retire a configuration (final)",
        description="Move a configuration to RETIRED, from which it never moves again.",
    )
    p.add_argument("config_id", metavar="ID")
    p.add_argument("--reason", required=True, metavar="TEXT", help=REASON_HELP)
    p.add_argument("--json", action="store_true", help="print the gateway's JSON")
    add_connection_options(p)
    p.set_defaults(run=run_change, status="RETIRED")


def show_change(reply: Mapping[str, Any], out: TextIO) -> None:
    """`cfg_x went from PAPER to LIVE (by alice); LIVE may go to PAPER, RETIRED`."""
    allowed = reply.get("allowed") or []
    status = reply.get("status")
    after = f"{status} may go to {', '.join(allowed)}" if allowed else f"{status} is final"
    if reply.get("changed"):
        print(f"{reply.get('detail')} (by {reply.get('actor')}); {after}", file=out)
    else:
        print(f"{reply.get('detail')}: nothing changed; {after}", file=out)


def history_line(change: Mapping[str, Any]) -> str:
    """One status change of a configuration's history: when, from -> to, who, why."""
    return (
        f"{str(change.get('at', ''))[:19]}  {change.get('from_status') or '-'} -> "
        f"{change.get('to_status')}  by {change.get('actor') or '?'}  "
        f"{change.get('reason') or ''}"
    ).rstrip()


async def _change(args: argparse.Namespace) -> int:
    async with client_for(args) as gw:
        reply = await gw.change_status(args.config_id, args.status, args.reason)
    if args.json:
        render.print_json(reply)
    else:
        show_change(reply, sys.stdout)
    return 0


def run_change(args: argparse.Namespace) -> int:
    return asyncio.run(_change(args))
