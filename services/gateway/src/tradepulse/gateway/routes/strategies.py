"""/api/v2/strategies: what can be trained, and the values each parameter may take."""

from __future__ import annotations

from fastapi import APIRouter

from tradepulse.common.contracts.training import OPTIMIZERS
from tradepulse.gateway.deps import ReadKeyDep
from tradepulse.gateway.errors import ERRORS
from tradepulse.gateway.schemas.system import ParamOut, StrategiesOut, StrategyOut
from tradepulse.quant import METRIC_NAMES, OBJECTIVES, REGIMES, STRATEGIES, get_strategy

router = APIRouter(prefix="/api/v2", tags=["strategies"])


@router.get(
    "/strategies",
    response_model=StrategiesOut,
    summary="Strategies and their search spaces",
    responses=ERRORS,
)
async def strategies(_: ReadKeyDep) -> StrategiesOut:
    return StrategiesOut(
        strategies=[
            StrategyOut(
                name=name,
                params=[ParamOut.model_validate(p) for p in get_strategy(name).space.to_list()],
            )
            for name in sorted(STRATEGIES)
        ],
        optimizers=list(OPTIMIZERS),
        objectives=list(OBJECTIVES),
        regimes=list(REGIMES),
        metrics=list(METRIC_NAMES),
    )
