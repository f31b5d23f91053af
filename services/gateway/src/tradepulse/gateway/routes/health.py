"""Liveness, readiness and metrics: open to all (no data, no key)."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from tradepulse.gateway.backend import SERVICES
from tradepulse.gateway.deps import GatewayDep
from tradepulse.gateway.schemas.system import HealthOut, ReadyOut

router = APIRouter(tags=["operations"])


@router.get("/health", response_model=HealthOut, summary="The process is alive")
async def health() -> HealthOut:
    return HealthOut()


@router.get(
    "/ready",
    response_model=ReadyOut,
    summary="NATS is connected and every service answers its ping",
    responses={503: {"model": ReadyOut, "description": "not ready; the body says what is missing"}},
)
async def ready(gw: GatewayDep) -> JSONResponse:
    answers = await asyncio.gather(*(gw.backend.ping(s) for s in SERVICES))
    services = dict(zip(SERVICES, answers, strict=True))
    nats_up = gw.backend.connected
    ok = nats_up and all(answers)
    body = ReadyOut(status="ready" if ok else "not_ready", nats=nats_up, services=services)
    return JSONResponse(body.model_dump(), status_code=200 if ok else 503)


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}},
)
async def metrics(gw: GatewayDep) -> Response:
    return Response(generate_latest(gw.metrics.registry), media_type=CONTENT_TYPE_LATEST)
