"""Search spaces declared as data: what an optimizer may draw and what the API accepts."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

ParamKind = Literal["int", "float"]


@dataclass(frozen=True)
class ParamSpec:
    """One parameter's range, inclusive at both ends; `step` is None for a continuous float."""

    name: str
    kind: ParamKind
    low: float
    high: float
    step: float | None = None
    description: str = ""

    def grid(self, points_for_float: int = 5) -> tuple[float | int, ...]:
        """The values a grid search walks: every step, or evenly spaced points for a float."""
        if self.step is not None:
            count = math.floor((self.high - self.low) / self.step + 1e-9) + 1
            values = [self.low + i * self.step for i in range(count)]
        elif points_for_float <= 1:
            values = [self.low]
        else:
            span = self.high - self.low
            values = [self.low + span * i / (points_for_float - 1) for i in range(points_for_float)]
        # Accumulated steps can overshoot `high` by an ulp; a grid point must stay in range.
        values = [min(max(v, self.low), self.high) for v in values]
        if self.kind == "int":
            return tuple(round(v) for v in values)
        return tuple(float(v) for v in values)

    def contains(self, value: float) -> bool:
        if not self.low <= value <= self.high:
            return False
        if self.step is None:
            return True
        steps = (value - self.low) / self.step
        return abs(steps - round(steps)) < 1e-9

    def to_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "type": self.kind,
            "low": int(self.low) if self.kind == "int" else self.low,
            "high": int(self.high) if self.kind == "int" else self.high,
            "step": (int(self.step) if self.kind == "int" else self.step)
            if self.step is not None
            else None,
            "description": self.description,
        }


@dataclass(frozen=True)
class SearchSpace:
    params: tuple[ParamSpec, ...]

    def __iter__(self) -> Iterator[ParamSpec]:
        return iter(self.params)

    def __getitem__(self, name: str) -> ParamSpec:
        for p in self.params:
            if p.name == name:
                return p
        raise KeyError(name)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.params)

    def to_list(self) -> list[dict[str, object]]:
        return [p.to_dict() for p in self.params]
