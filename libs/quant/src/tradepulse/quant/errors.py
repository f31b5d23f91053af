"""The core's one exception hierarchy. Messages are written for the user who must fix the input."""

from __future__ import annotations


class QuantError(Exception):
    """Base of every error the quant core raises on purpose."""


class CandleDataError(QuantError):
    """Candles that cannot be used: unreadable file, bad row, unsorted or invalid values."""

    def __init__(self, problem: str, *, where: str | None = None) -> None:
        self.problem = problem
        self.where = where
        super().__init__(f"{where}: {problem}" if where else problem)


class ParameterError(QuantError):
    """A strategy parameter or backtest setting that is missing, unknown, mistyped or out of range."""

    def __init__(self, name: str, problem: str) -> None:
        self.name = name
        self.problem = problem
        super().__init__(f"{name}: {problem}")


class WindowError(QuantError):
    """A requested trading window that the candles cannot provide."""


class WalkForwardError(QuantError):
    """A walk-forward request the job's window cannot hold; `field` names the request field."""

    def __init__(self, field: str, problem: str) -> None:
        self.field = field
        self.problem = problem
        super().__init__(f"{field}: {problem}")


class FoldTooShortError(WalkForwardError):
    """The window is too short for the folds asked: a test span would have fewer than 2 bars."""


class WarmupRoomError(WalkForwardError):
    """A fold's test span starts too close to the dataset's start for its full warm-up."""
