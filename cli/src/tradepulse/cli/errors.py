"""Errors every command maps to one line on stderr and exit code 2."""

from __future__ import annotations


class UserError(Exception):
    """Bad input on the command line, or a setup the command cannot work with."""
