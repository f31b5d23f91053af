"""FastAPI dependencies, as Annotated aliases for the route signatures."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from tradepulse.gateway.auth import AuthFailure
from tradepulse.gateway.errors import ApiError
from tradepulse.gateway.state import Gateway

# The key is enforced by GatewayMiddleware before the body is read; this scheme puts it in the
# OpenAPI document (and the "Authorize" button of /docs).
bearer = HTTPBearer(auto_error=False, description="an API key from TRADEPULSE_API_KEYS")


class UnauthorizedError(ApiError):
    status_code = 401


# Every dependency is `async def` although none awaits: FastAPI runs a plain `def` dependency
# in a worker thread, and those hand-offs were a quarter of the gateway's CPU under load.
async def get_gateway(request: Request) -> Gateway:
    gateway: Gateway = request.app.state.gateway
    return gateway


async def api_key(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Security(bearer)]
) -> str:
    """The id of the caller's key (a digest prefix, safe to log)."""
    checked = request.scope.get("state", {}).get("api_key")
    if isinstance(checked, str):
        return checked
    header = None if credentials is None else f"{credentials.scheme} {credentials.credentials}"
    gateway: Gateway = request.app.state.gateway
    verdict = gateway.keys.verify(header)
    if isinstance(verdict, AuthFailure):
        raise UnauthorizedError(verdict.detail, headers={"WWW-Authenticate": verdict.challenge})
    return verdict


async def read_key(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Security(bearer)]
) -> str | None:
    gateway: Gateway = request.app.state.gateway
    if gateway.settings.open_reads:
        return None
    return await api_key(request, credentials)


GatewayDep = Annotated[Gateway, Depends(get_gateway)]
ApiKeyDep = Annotated[str, Depends(api_key)]
ReadKeyDep = Annotated[str | None, Depends(read_key)]
