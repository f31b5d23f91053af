"""Strategies with their search spaces, and the gateway's health."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel


class ParamOut(BaseModel):
    name: str
    type: Literal["int", "float"]
    low: float | int
    high: float | int
    step: float | int | None
    description: str


class StrategyOut(BaseModel):
    name: str
    params: list[ParamOut]


class StrategiesOut(BaseModel):
    strategies: list[StrategyOut]
    optimizers: list[str]
    objectives: list[str]
    regimes: list[str]
    metrics: list[str]


class HealthOut(BaseModel):
    status: Literal["ok"] = "ok"


class ReadyOut(BaseModel):
    status: Literal["ready", "not_ready"]
    nats: bool
    services: dict[str, bool]
