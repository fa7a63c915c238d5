"""What the app's routes say about a request before it is routed: which route it is for,
the API-key scope that route needs, what kind of body it takes, and which methods a path has.

FastAPI wraps included routers, so `app.router.routes` holds wrappers: the routes are read
through fastapi.routing.iter_route_contexts, which flattens them as the router sees them.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

from fastapi import params
from fastapi.routing import iter_route_contexts
from starlette.routing import Match
from starlette.types import Scope

SCOPE_ATTRIBUTE = "crackscan_scope"  # set by app.auth.require on its dependency
UNMATCHED = "unmatched"
Body = Literal["none", "json", "form"]


@dataclass(frozen=True)
class RouteFacts:
    template: str  # the path template ("/v1/inspections/{inspection_id}"): a bounded label
    scope: str | None  # the API-key scope the route needs; None for open routes
    body: Body  # what the route reads: nothing, a JSON body or a multipart form
    full: bool  # False: the path matched but not the method (a 405)


def _contexts(app: Any) -> Iterator[Any]:
    yield from iter_route_contexts(app.router.routes)


def _scope_needed(dependant: Any) -> str | None:
    if dependant is None:
        return None
    for sub in dependant.dependencies:
        needed = getattr(sub.call, SCOPE_ATTRIBUTE, None) or _scope_needed(sub)
        if needed:
            return str(needed)
    return None


def _body_of(route: Any) -> Body:
    field = getattr(route, "body_field", None)
    if field is None:
        return "none"
    return "form" if isinstance(field.field_info, params.Form) else "json"


_facts: dict[tuple[int, str], tuple[Any, RouteFacts, RouteFacts]] = {}


def _facts_of(context: Any) -> tuple[RouteFacts, RouteFacts]:
    """(the facts of a full match, of a path-only match) for a route, computed once."""
    route, template = context.original_route, str(getattr(context, "path", None) or UNMATCHED)
    held = _facts.get((id(route), template))
    if held is None or held[0] is not route:
        dependant = getattr(context, "dependant", None)
        full = RouteFacts(template, _scope_needed(dependant), _body_of(context), True)
        held = (route, full, RouteFacts(template, None, "none", False))
        _facts[(id(route), template)] = held
    return held[1], held[2]


def find_route(app: Any, scope: Scope) -> RouteFacts | None:
    """The route that will take this request (the first full match, as the router picks
    it), else the first whose path matches but not the method; None when no path matches."""
    partial = None
    for context in _contexts(app):
        match, _ = context.matches(scope)
        if match == Match.FULL:
            return _facts_of(context)[0]
        if match == Match.PARTIAL and partial is None:
            partial = context
    return None if partial is None else _facts_of(partial)[1]


def allowed_methods(app: Any, path: str) -> list[str]:
    """Every method some route answers on this path; HEAD wherever GET is."""
    methods: set[str] = set()
    for context in _contexts(app):
        regex = getattr(context, "path_regex", None)
        if regex is not None and regex.match(path) and context.methods:
            methods |= set(context.methods)
    if "GET" in methods:
        methods.add("HEAD")
    return sorted(methods)
