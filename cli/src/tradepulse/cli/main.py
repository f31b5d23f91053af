"""Entry point of the `tradepulse` console script: parses arguments, maps errors to exit codes."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from typing import NoReturn

from tradepulse.cli.errors import UserError

EXIT_USAGE = 2

# The module that defines each command, in the order `--help` lists them. Only the module of
# the command being run is imported: `backtest` needs numba but no HTTP client, the client
# commands need httpx but no numba, and neither should pay for the other's imports.
COMMANDS: dict[str, str] = {
    "backtest": "backtest",
    "up": "up",
    "down": "up",
    "demo": "demo",
    "train": "training",
    "ensemble": "training",
    "jobs": "training",
    "job": "training",
    "cancel": "training",
    "configs": "configs",
    "config": "configs",
    "promote": "status",
    "retire": "status",
    "ingest": "data",
}


class _Parser(argparse.ArgumentParser):
    """argparse that reports a usage error in one line instead of a usage block."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The whole parser, or with `command` (a key of COMMANDS) only the commands of its module."""
    parser = _Parser(prog="tradepulse", description="Train and validate trading strategies.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    names = [COMMANDS[command]] if command is not None else list(dict.fromkeys(COMMANDS.values()))
    for name in names:
        module = importlib.import_module(f"tradepulse.cli.{name}")
        # A module that defines several commands names its function in the plural.
        register = getattr(module, "add_parsers", None) or module.add_parser
        register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    first = args_list[0] if args_list else None
    args = build_parser(first if first in COMMANDS else None).parse_args(args_list)
    try:
        code: int = args.run(args)
    except UserError as exc:
        print(f"tradepulse {args.command}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `tradepulse backtest --json ... | head` closes stdout early; that is not an error.
        sys.stderr.close()
        return 0
    return code


if __name__ == "__main__":
    sys.exit(main())
