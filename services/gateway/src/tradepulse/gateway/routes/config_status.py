"""POST /api/v2/configs/{id}/status: an operator moves a configuration along the lifecycle.

The registry decides with its transition table and records the change, its reason and the
name of the caller's key as the actor. Asking for the status a configuration already has is
a 200 that changes nothing, so a client may repeat a request whose answer it did not get.
"""

from __future__ import annotations

import re

from fastapi import APIRouter

from tradepulse.common.contracts.base import ID_PATTERN
from tradepulse.common.contracts.registry import ChangeStatus, ChangeStatusReply, ConfigStatus
from tradepulse.gateway.deps import ApiKeyDep, GatewayDep
from tradepulse.gateway.errors import ERRORS, ConflictError, NotFoundError
from tradepulse.gateway.schemas.configs import StatusBody, StatusChangedOut, StatusRefusedOut

router = APIRouter(prefix="/api/v2/configs", tags=["configurations"])

CONFIG_ID = re.compile(ID_PATTERN)


def targets(status: ConfigStatus, allowed: list[ConfigStatus]) -> str:
    """`PAPER may go to CANDIDATE, LIVE, RETIRED`, or that it may go nowhere."""
    if not allowed:
        return f"{status} is final: it may go nowhere"
    return f"{status} may go to {', '.join(allowed)}"


@router.post(
    "/{config_id}/status",
    response_model=StatusChangedOut,
    summary="Change a configuration's status (DISCOVERY, CANDIDATE, PAPER, LIVE, RETIRED)",
    responses={
        **ERRORS,
        404: {"description": "no such configuration"},
        409: {
            "model": StatusRefusedOut,
            "description": "the transition table forbids the change from the current status, "
            "or another change of the configuration committed first; `allowed` lists the "
            "statuses it may go to now",
        },
    },
)
async def change_status(
    config_id: str, body: StatusBody, gw: GatewayDep, actor: ApiKeyDep
) -> StatusChangedOut:
    """E.g. `{"status": "LIVE", "reason": "paper results match the backtest"}`. PAPER -> LIVE
    is only ever done this way. The history entry records `reason` and the key's name."""
    if not CONFIG_ID.match(config_id):
        raise NotFoundError(f"no configuration {config_id!r}")
    reply = await gw.backend.request(
        gw.names.change_status,
        ChangeStatus(config_id=config_id, status=body.status, reason=body.reason, actor=actor),
        ChangeStatusReply,
        service="registry",
    )
    if reply.refused == "not_found" or reply.status is None:
        raise NotFoundError(f"no configuration {config_id!r}")
    if reply.refused is not None:
        detail = reply.detail
        if reply.refused == "conflict":
            detail = f"{detail}; {targets(reply.status, reply.allowed)}"
        raise ConflictError(
            detail,
            extra={"refused": reply.refused, "status": reply.status, "allowed": reply.allowed},
        )
    return StatusChangedOut(
        config_id=reply.config_id,
        status=reply.status,
        changed=reply.changed,
        detail=reply.detail,
        allowed=reply.allowed,
        actor=actor,
    )
