"""HTTP errors: one body shape for every 4xx and 5xx, and the exception handlers that make it.

Every error answers `{"detail": "<one readable line>", "request_id": "..."}`; validation
errors (422) add `"errors": [{"field": "n_iterations", "reason": "..."}, ...]` naming each
field (`body` for the request body as a whole, e.g. malformed JSON). At most the first
MAX_LISTED_ERRORS are listed; when there are more, `"errors_total"` counts them all, so that a
body of 50,000 unknown keys costs a short answer, not megabytes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.formparsers import MultiPartException

from tradepulse.common.logging import get_logger

log = get_logger(__name__)

RETRY_AFTER_S = 2
# Errors listed in one 422 (and named in its `detail`); the rest are only counted.
MAX_LISTED_ERRORS = 20

# The answers every API route may give besides its own, for the OpenAPI document.
ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"description": "missing or invalid API key"},
    422: {"description": "invalid input; `errors` names each field and the reason"},
    503: {"description": "NATS or a service is unavailable; nothing was done (see Retry-After)"},
}


class ApiError(Exception):
    """An error the gateway answers on purpose; `detail` is shown to the user as is."""

    status_code = 400

    def __init__(
        self,
        detail: str,
        *,
        errors: Sequence[Mapping[str, str]] = (),
        headers: Mapping[str, str] | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.errors = list(errors)
        self.headers = dict(headers or {})
        self.extra = dict(extra or {})


class NotFoundError(ApiError):
    status_code = 404


class ConflictError(ApiError):
    status_code = 409


class InvalidInputError(ApiError):
    """Bad input found by a check beyond the schema (no data for the symbol, ...)."""

    status_code = 422

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}", errors=[{"field": field, "reason": reason}])


class UnavailableError(ApiError):
    """NATS or the service that must answer is away: nothing was done; try again later."""

    status_code = 503

    def __init__(self, detail: str, *, extra: Mapping[str, Any] | None = None) -> None:
        super().__init__(detail, headers={"Retry-After": str(RETRY_AFTER_S)}, extra=extra)


class UpstreamTimeoutError(ApiError):
    status_code = 504

    def __init__(self, detail: str) -> None:
        super().__init__(detail, headers={"Retry-After": str(RETRY_AFTER_S)})


def field_name(loc: Sequence[int | str]) -> str:
    """("body", "settings", "fee_rate") -> "settings.fee_rate"; ("query", "limit") -> "limit"."""
    parts = [str(p) for p in loc]
    if parts and parts[0] in ("body", "query", "path", "header", "form"):
        parts = parts[1:] or parts[:1]
    return ".".join(parts) or "body"


def describe_validation(errors: Sequence[Any]) -> list[dict[str, str]]:
    """The first MAX_LISTED_ERRORS of pydantic's errors, as {"field", "reason"}."""
    out = []
    for error in errors[:MAX_LISTED_ERRORS]:
        loc = error.get("loc", ())
        kind = error.get("type", "")
        message = str(error.get("msg", "invalid"))
        if kind == "json_invalid":
            # The position FastAPI puts in `loc` is a character offset, not a field.
            ctx = error.get("ctx") or {}
            reason = ctx.get("error", message)
            out.append({"field": "body", "reason": f"malformed JSON: {reason}"})
            continue
        if kind == "extra_forbidden":
            message = "unknown field"
        elif kind == "missing":
            message = "required"
        # pydantic prefixes the messages of custom validators with "Value error, ".
        message = message.removeprefix("Value error, ")
        out.append({"field": field_name(loc), "reason": message})
    return out


def invalid_body(errors: Sequence[Mapping[str, str]], total: int) -> dict[str, Any]:
    """`detail` and `errors` of a 422 listing `errors`, the first of `total` (and the count
    when some are left out)."""
    listed = list(errors[:MAX_LISTED_ERRORS])
    detail = "; ".join(f"{e['field']}: {e['reason']}" for e in listed) or "invalid request"
    if total <= len(listed):
        return {"detail": detail, "errors": listed}
    return {
        "detail": f"{total} errors, the first {len(listed)}: {detail}",
        "errors": listed,
        "errors_total": total,
    }


NOT_UTF8 = "not UTF-8 (byte {at} cannot be decoded); send JSON encoded as UTF-8"


def unparsable(cause: BaseException | None) -> str | None:
    """Why a body could not be parsed, in the user's terms; None to say only that. Python's
    own texts (its limits, its recursion, a server path) are logged, never answered."""
    if isinstance(cause, UnicodeDecodeError):
        return NOT_UTF8.format(at=cause.start)
    if isinstance(cause, RecursionError):
        return "the JSON is nested too deeply"
    if isinstance(cause, MultiPartException):
        return f"a broken multipart form: {cause.message}"
    if isinstance(cause, ValueError) and "digits" in str(cause):
        return "a number has too many digits"
    if cause is not None:
        log.info("body_unparsable", error=f"{type(cause).__name__}: {cause}")
    return None


def _body(request: Request, detail: str, **extra: Any) -> dict[str, Any]:
    return {"detail": detail, "request_id": request_id(request), **extra}


def request_id(request: Request) -> str:
    return str(request.scope.get("state", {}).get("request_id", ""))


def install(app: FastAPI) -> None:
    async def on_api_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ApiError)
        extra: dict[str, Any] = dict(exc.extra)
        if exc.errors:
            extra["errors"] = exc.errors[:MAX_LISTED_ERRORS]
            if len(exc.errors) > MAX_LISTED_ERRORS:
                extra["errors_total"] = len(exc.errors)
        return JSONResponse(
            _body(request, exc.detail, **extra), status_code=exc.status_code, headers=exc.headers
        )

    async def on_validation(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        found = exc.errors()
        errors = describe_validation(found)
        return JSONResponse(_body(request, **invalid_body(errors, len(found))), status_code=422)

    async def on_http(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        if exc.status_code == 400:
            # FastAPI and Starlette answer 400 for a body they cannot even parse (bytes that
            # are not UTF-8, a broken multipart form): to the user, that is malformed input.
            reason = f"malformed body: {unparsable(exc.__cause__) or 'it could not be parsed'}"
            errors = [{"field": "body", "reason": reason}]
            return JSONResponse(_body(request, f"body: {reason}", errors=errors), status_code=422)
        return JSONResponse(
            _body(request, str(exc.detail)),
            status_code=exc.status_code,
            headers=dict(exc.headers or {}),
        )

    async def on_unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.error("request_failed", exc_info=exc)
        return JSONResponse(
            _body(request, "internal error; the request id is in the gateway's log"),
            status_code=500,
        )

    app.add_exception_handler(ApiError, on_api_error)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(Exception, on_unexpected)
