"""/api/v2/configs: trained configurations, filtered and sorted, with their history."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from fastapi import APIRouter, Query

from tradepulse.common.contracts.base import ID_PATTERN
from tradepulse.common.contracts.registry import (
    ConfigReply,
    ConfigSort,
    ConfigsReply,
    ConfigStatus,
    ConfigView,
    GetConfig,
    ListConfigs,
)
from tradepulse.gateway.deps import GatewayDep, ReadKeyDep
from tradepulse.gateway.errors import ERRORS, NotFoundError
from tradepulse.gateway.paging import fetch_pages
from tradepulse.gateway.schemas.common import StrategyName, Symbol
from tradepulse.gateway.schemas.configs import ConfigOut, ConfigsPage, config_out

router = APIRouter(prefix="/api/v2/configs", tags=["configurations"])

CONFIG_ID = re.compile(ID_PATTERN)
# Per NATS request: a reply must stay under the 1 MB message limit.
CONFIGS_PER_REQUEST = 200


@router.get("", response_model=ConfigsPage, summary="Configurations", responses=ERRORS)
async def list_configs(
    gw: GatewayDep,
    _: ReadKeyDep,
    status: ConfigStatus | None = None,
    min_sharpe: Annotated[float | None, Query(allow_inf_nan=False, ge=-1e9, le=1e9)] = None,
    min_trades: Annotated[int | None, Query(ge=0, le=1_000_000_000)] = None,
    min_dsr: Annotated[
        float | None, Query(allow_inf_nan=False, ge=0, le=1, description="deflated Sharpe")
    ] = None,
    max_pbo: Annotated[
        float | None,
        Query(allow_inf_nan=False, ge=0, le=1, description="probability of backtest overfitting"),
    ] = None,
    symbol: Annotated[Symbol | None, Query()] = None,
    strategy: Annotated[StrategyName | None, Query()] = None,
    sort: ConfigSort = "created_at",
    order: Literal["asc", "desc"] = "desc",
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    offset: Annotated[int, Query(ge=0, le=1_000_000_000)] = 0,
) -> ConfigsPage:
    """E.g. Sharpe above 1 and more than 50 trades, best first:
    `?min_sharpe=1&min_trades=51&sort=sharpe_ratio&order=desc`; or the ones whose edge is
    likely real and not overfit: `?min_dsr=0.95&max_pbo=0.5&sort=dsr`. Configurations
    without the figure (null) do not pass its filter and sort last."""

    async def page(start: int, count: int) -> tuple[int, list[ConfigView]]:
        reply = await gw.backend.request(
            gw.names.list_configs,
            ListConfigs(
                status=status,
                min_sharpe=min_sharpe,
                min_trades=min_trades,
                min_dsr=min_dsr,
                max_pbo=max_pbo,
                symbol=symbol,
                strategy=strategy,
                sort=sort,
                descending=order == "desc",
                limit=count,
                offset=start,
            ),
            ConfigsReply,
            service="registry",
        )
        return reply.total, list(reply.items)

    total, views = await fetch_pages(page, offset, limit, CONFIGS_PER_REQUEST)
    return ConfigsPage(
        total=total, limit=limit, offset=offset, items=[config_out(c) for c in views]
    )


@router.get(
    "/{config_id}",
    response_model=ConfigOut,
    summary="A configuration with its lineage and status history",
    responses={**ERRORS, 404: {"description": "no such configuration"}},
)
async def get_config(config_id: str, gw: GatewayDep, _: ReadKeyDep) -> ConfigOut:
    if not CONFIG_ID.match(config_id):
        raise NotFoundError(f"no configuration {config_id!r}")
    reply = await gw.backend.request(
        gw.names.get_config, GetConfig(config_id=config_id), ConfigReply, service="registry"
    )
    if reply.config is None:
        raise NotFoundError(f"no configuration {config_id!r}")
    return config_out(reply.config)
