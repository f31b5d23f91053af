"""Entry point of the `tradepulse` console script: parses arguments, maps errors to exit codes."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import NoReturn

from tradepulse.cli import backtest, configs, data, demo, status, training, up
from tradepulse.cli.errors import UserError

EXIT_USAGE = 2


class _Parser(argparse.ArgumentParser):
    """argparse that reports a usage error in one line instead of a usage block."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="tradepulse", description="Train and validate trading strategies.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    backtest.add_parser(sub)
    up.add_parser(sub)
    demo.add_parser(sub)
    training.add_parsers(sub)
    configs.add_parsers(sub)
    status.add_parsers(sub)
    data.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
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
