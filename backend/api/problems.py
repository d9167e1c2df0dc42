"""Error bodies for people: validation errors as sentences, 405 with every allowed method,
and the error responses every API operation documents."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import Request
from starlette.routing import Match, Mount

from backend.schemas import ErrorPublic, ValidationErrorPublic

#: ``{code: {"model": …}}`` shared by every route under ``/api`` (OpenAPI).
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorPublic, "description": "The request is refused; `detail` says why."},
    401: {"model": ErrorPublic, "description": "No workspace, or an unknown secret."},
    403: {"model": ErrorPublic, "description": "Built-in resources cannot be changed."},
    404: {"model": ErrorPublic, "description": "No such resource in this workspace."},
    409: {"model": ErrorPublic, "description": "Not possible in the resource's state."},
    413: {"model": ErrorPublic, "description": "Too large (bytes, pixels or images)."},
    415: {"model": ErrorPublic, "description": "Not a type this address reads."},
    422: {"model": ValidationErrorPublic, "description": "A parameter is out of range."},
}

_PHRASES = {
    "missing": "is required",
    "less_than_equal": "must be at most {le}",
    "greater_than_equal": "must be at least {ge}",
    "less_than": "must be less than {lt}",
    "greater_than": "must be greater than {gt}",
    "int_parsing": "must be a whole number",
    "int_type": "must be a whole number",
    "int_from_float": "must be a whole number",
    "float_parsing": "must be a number",
    "float_type": "must be a number",
    "bool_parsing": "must be true or false",
    "bool_type": "must be true or false",
    "string_type": "must be text",
    "too_short": "must have at least {min_length} item(s)",
    "too_long": "must have at most {max_length} item(s)",
    "string_too_short": "must be at least {min_length} character(s) long",
    "string_too_long": "must be at most {max_length} characters long",
    "string_pattern_mismatch": "must match {pattern}",
    "literal_error": "must be {expected}",
    "enum": "must be {expected}",
    "list_type": "must be a list",
    "dict_type": "must be an object",
    "model_attributes_type": "must be an object",
    "model_type": "must be an object",
}


def field_name(loc: Sequence[Any]) -> str:
    """``("body", "orders", 0)`` → ``orders[0]``."""
    name = ""
    for part in loc:
        if part in ("body", "query", "path", "header", "cookie", "form"):
            continue
        name += f"[{part}]" if isinstance(part, int) else f".{part}" if name else str(part)
    return name


def sentence(error: Mapping[str, Any]) -> str:
    """One pydantic error as a sentence, e.g. ``epochs must be at most 500.``"""
    kind, msg = error.get("type", ""), str(error.get("msg", "is not valid"))
    if kind == "json_invalid":
        return "The request body is not valid JSON."
    field = field_name(error.get("loc", ())) or "The request body"
    if kind in _PHRASES:
        try:
            phrase = _PHRASES[kind].format(**error.get("ctx", {}))
        except (KeyError, IndexError):
            phrase = msg
    else:
        phrase = msg.removeprefix("Value error, ")
    return f"{field} {phrase}."


def readable(errors: Sequence[Mapping[str, Any]]) -> str:
    return " ".join(sentence(e) for e in errors) or "The request is not valid."


METHODS = ("DELETE", "GET", "HEAD", "PATCH", "POST", "PUT")


def allowed_methods(request: Request, fallback: str) -> list[str]:
    """Every method some route at this path accepts (Starlette names only the first route's).

    Each method is tried against the app's routes, included routers too; mounts (the static
    files) match any method, so their own answer (``fallback``) stands.
    """
    routes = [r for r in request.app.router.routes if not isinstance(r, Mount)]

    def accepts(method: str) -> bool:
        scope = {**request.scope, "method": method}
        return any(route.matches(scope)[0] is Match.FULL for route in routes)

    methods = [method for method in METHODS if accepts(method)]
    return methods or [m.strip() for m in fallback.split(",") if m.strip()]
