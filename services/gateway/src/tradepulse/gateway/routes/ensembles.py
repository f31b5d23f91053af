"""/api/v2/training/ensemble/{id}: a seed ensemble's jobs and, once all ended, whether the
seeds converged (validation spec section 4). Ensembles are submitted by
`POST /api/v2/training/ensemble` (routes/training.py)."""

from __future__ import annotations

import re

import structlog
from fastapi import APIRouter

from tradepulse.common.contracts.training import EnsembleReply, EnsembleView, GetEnsemble
from tradepulse.gateway.deps import GatewayDep, ReadKeyDep
from tradepulse.gateway.errors import ERRORS, NotFoundError
from tradepulse.gateway.schemas.validation import EnsembleJobOut, EnsembleOut, ensemble_out

router = APIRouter(prefix="/api/v2/training", tags=["training"])

ENSEMBLE_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


@router.get(
    "/ensemble/{ensemble_id}",
    response_model=EnsembleOut,
    summary="A seed ensemble: each seed's job, and the convergence report once all ended",
    responses={**ERRORS, 404: {"description": "no such ensemble"}},
)
async def get_ensemble(ensemble_id: str, gw: GatewayDep, _: ReadKeyDep) -> EnsembleOut:
    if not ENSEMBLE_ID.match(ensemble_id):
        raise NotFoundError(f"no ensemble {ensemble_id!r}")
    structlog.contextvars.bind_contextvars(ensemble_id=ensemble_id)
    reply = await gw.backend.request(
        gw.names.get_ensemble,
        GetEnsemble(ensemble_id=ensemble_id),
        EnsembleReply,
        service="trainer",
    )
    # Jobs accepted here a moment ago may not be recorded by a trainer yet: they are queued.
    recent = gw.recent_jobs.in_ensemble(ensemble_id)
    queued = [
        EnsembleJobOut(
            job_id=r.request.job_id,
            seed=r.request.seed,
            status="queued",
            best_value=None,
            best_trial=None,
            params=None,
        )
        for r in recent
    ]
    view = reply.ensemble
    if view is None:
        if not recent:
            raise NotFoundError(f"no ensemble {ensemble_id!r}")
        first = recent[0].request
        assert first.ensemble_size is not None
        view = EnsembleView(
            ensemble_id=ensemble_id,
            size=first.ensemble_size,
            max_dispersion=first.max_dispersion,
            ended=False,
            jobs=[],
            convergence=None,
        )
    return ensemble_out(view, queued)
