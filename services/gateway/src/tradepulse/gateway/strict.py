"""Ambiguous input is refused, never guessed: one check that every route runs before its own.

FastAPI (like most parsers) silently picks one reading of input that has several: the last of
two equal JSON keys (`"n_iterations": 1, "n_iterations": 100000` would start 100,000
trials), UTF-16 or UTF-32 JSON (Python's json decodes it by guessing the encoding), the last of
two form fields or file parts, and a query parameter the route does not know is ignored
(`?min_sharp=100` would list everything). Each of these is a 422 here naming what is wrong,
raised before the route's own code runs, so nothing is sent anywhere:

- a JSON body must be UTF-8 (RFC 8259, and what the README promises) with every key once per
  object, at any depth (`settings.fee_rate` names a nested one);
- a form may carry only the route's fields, each once (files included);
- the query string may carry only the route's parameters, each once (no route takes a list).

`strict_input` is installed as an app-wide dependency (`FastAPI(dependencies=...)`): FastAPI
has already read and parsed the body by then and caches it on the request, so the checks
reread nothing from the network.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from fastapi import Request
from fastapi.dependencies.models import Dependant
from fastapi.params import Form
from fastapi.routing import APIRoute

from tradepulse.gateway.errors import NOT_UTF8, ApiError


class AmbiguousInputError(ApiError):
    status_code = 422

    def __init__(self, errors: list[dict[str, str]]) -> None:
        detail = "; ".join(f"{e['field']}: {e['reason']}" for e in errors[:5])
        if len(errors) > 5:
            detail += f"; and {len(errors) - 5} more"
        super().__init__(detail, errors=errors)


@dataclass(frozen=True)
class Declared:
    """What a route takes: its query parameters and form fields (by their names on the wire),
    and whether it reads a JSON body."""

    query: frozenset[str]
    form: frozenset[str]
    json_body: bool


_declared: dict[int, Declared] = {}


def declared(route: APIRoute) -> Declared:
    # Routes live as long as the app; Starlette's routes define __eq__, not __hash__.
    known = _declared.get(id(route))
    if known is None:
        query: set[str] = set()
        form: set[str] = set()
        body = False
        for dependant in _all(route.dependant):
            query.update(f.alias for f in dependant.query_params)
            for field in dependant.body_params:
                if isinstance(field.field_info, Form):  # File is a Form
                    form.add(field.alias)
                else:
                    body = True
        known = _declared[id(route)] = Declared(frozenset(query), frozenset(form), body)
    return known


def _all(dependant: Dependant) -> Iterable[Dependant]:
    stack = [dependant]
    while stack:
        one = stack.pop()
        yield one
        stack.extend(one.dependencies)


async def strict_input(request: Request) -> None:
    """Refuse (422) the input of the route being called that could be read more than one way."""
    route = request.scope.get("route")
    if not isinstance(route, APIRoute):
        return
    takes = declared(route)
    problems = query_problems(request.query_params.multi_items(), takes.query)
    if takes.form:
        form = await request.form()  # FastAPI's own parse, cached on the request
        problems += form_problems([k for k, _ in form.multi_items()], takes.form)
    elif takes.json_body and is_json(request.headers.get("content-type")):
        body = await request.body()
        if body:
            problems += json_problems(body)
    if problems:
        raise AmbiguousInputError(problems)


def is_json(content_type: str | None) -> bool:
    """As FastAPI decides to parse a body as JSON: no content type, or application/*json."""
    if not content_type:
        return True
    kind = content_type.split(";", 1)[0].strip().lower()
    return kind == "application/json" or (
        kind.startswith("application/") and kind.endswith("+json")
    )


def _takes(names: frozenset[str], what: str) -> str:
    if not names:
        return f"this route takes no {what}s"
    return f"this route takes {', '.join(sorted(names))}"


def query_problems(items: list[tuple[str, str]], allowed: frozenset[str]) -> list[dict[str, str]]:
    counts = Counter(name for name, _ in items)
    out = []
    for name, count in counts.items():
        if name not in allowed:
            reason = f"unknown query parameter; {_takes(allowed, 'query parameter')}"
            out.append({"field": name, "reason": reason})
        elif count > 1:
            reason = f"query parameter given {count} times; give it once"
            out.append({"field": name, "reason": reason})
    return out


def form_problems(names: list[str], allowed: frozenset[str]) -> list[dict[str, str]]:
    counts = Counter(names)
    out = []
    for name, count in counts.items():
        if name not in allowed:
            out.append({"field": name, "reason": f"unknown field; {_takes(allowed, 'field')}"})
        elif count > 1:
            reason = f"form field given {count} times; send each field (and file) once"
            out.append({"field": name, "reason": reason})
    return out


class _Object(dict[str, Any]):
    """A JSON object as parsed, remembering the keys it held more than once."""

    repeated: tuple[str, ...] = ()


def _pairs(pairs: list[tuple[str, Any]]) -> _Object:
    obj = _Object(pairs)
    if len(obj) < len(pairs):
        counts = Counter(k for k, _ in pairs)
        obj.repeated = tuple(k for k, n in counts.items() if n > 1)
    return obj


def json_problems(body: bytes) -> list[dict[str, str]]:
    """A JSON body that is not UTF-8, or an object in it holding a key more than once."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        return [{"field": "body", "reason": NOT_UTF8.format(at=exc.start)}]
    if text.startswith("\ufeff"):
        return [{"field": "body", "reason": "starts with a byte order mark; send UTF-8 without"}]
    try:
        value = json.loads(text, object_pairs_hook=_pairs)
    except RecursionError:
        return [{"field": "body", "reason": "the JSON is nested too deeply"}]
    except ValueError:
        # FastAPI's parse of the bytes succeeded, so they are JSON in another encoding only
        # (UTF-16 or UTF-32 of ASCII text is valid UTF-8, NUL bytes and all).
        reason = "JSON only in another encoding than UTF-8 (UTF-16?); send it as UTF-8"
        return [{"field": "body", "reason": reason}]
    out = []
    stack: list[tuple[Any, str]] = [(value, "")]
    while stack:
        node, path = stack.pop()
        if isinstance(node, _Object):
            for key in node.repeated:
                out.append(
                    {
                        "field": f"{path}{key}",
                        "reason": "given more than once in the JSON body; send each key once",
                    }
                )
            stack.extend((v, f"{path}{k}.") for k, v in node.items())
        elif isinstance(node, list):
            stack.extend((v, f"{path}{i}.") for i, v in enumerate(node))
    return sorted(out, key=lambda e: e["field"])
