"""Annotated dependencies, so route signatures read like prose; and the one check of every
string a request brings in, which the app runs before each route."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any

from fastapi import Depends, Request
from sqlalchemy.orm import Session
from starlette.datastructures import UploadFile

from app.services.inspections import InspectionRunner
from app.services.models import ModelRegistry
from core.config import Settings
from core.errors import Unprocessable

FORM_TYPES = ("multipart/form-data", "application/x-www-form-urlencoded")
MAX_FILE_NAME = 200  # a file name may become a set's or a model's name (200 characters)
MAX_CONTENT_TYPE = 100  # a part's type is stored with its blob (100 characters)


def get_session(request: Request) -> Iterator[Session]:
    """One session per request. It never commits: a route that writes calls
    app.routes.common.commit() before it answers, since the exit of a yield dependency
    may run after the response is sent. Whatever was not committed is rolled back."""
    with request.app.state.sessions() as session:
        yield session


def get_settings_dep(request: Request) -> Settings:
    return request.app.state.settings


def get_registry(request: Request) -> ModelRegistry:
    return request.app.state.registry


def get_runner(request: Request) -> InspectionRunner:
    return request.app.state.runner


SessionDep = Annotated[Session, Depends(get_session)]
SettingsDep = Annotated[Settings, Depends(get_settings_dep)]
RegistryDep = Annotated[ModelRegistry, Depends(get_registry)]
RunnerDep = Annotated[InspectionRunner, Depends(get_runner)]


async def checked_inputs(request: Request) -> None:
    """Every route's first dependency (the app's): 422 for a NUL character in any string
    the request brings (path, query, form field, file name, JSON), which PostgreSQL cannot
    store, for a file name or part type longer than its column, and for a form field the
    route does not take (as for an unknown JSON field)."""
    for name, value in request.path_params.items():
        _no_nul(str(value), name)
    for name, value in request.query_params.multi_items():
        _no_nul(name, name)
        _no_nul(value, name)
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    route = request.scope.get("route")
    dependant = getattr(route, "dependant", None)
    if dependant is None or not _takes_body(dependant):
        return
    if content_type in FORM_TYPES:
        known = _body_names(dependant)
        for name, value in (await request.form()).multi_items():
            _no_nul(name, name)
            if name not in known:
                raise Unprocessable(
                    f"{name}: unknown form field; this route takes {', '.join(sorted(known))}",
                    field=name,
                )
            if isinstance(value, UploadFile):
                _checked_file(value, name)
            else:
                _no_nul(value, name)
    elif content_type == "application/json" or content_type.endswith("+json"):
        try:
            body = await request.json()  # parsed already by the route: read from its cache
        except ValueError:
            return  # the route's own validation answers it
        _no_nul_in_json(body)


def _checked_file(upload: UploadFile, field: str) -> None:
    """A file part's name and type are stored as text: they must fit their columns."""
    _no_nul(upload.filename or "", field)
    if len(upload.filename or "") > MAX_FILE_NAME:
        raise Unprocessable(
            f"{field}: the file name is longer than {MAX_FILE_NAME} characters", field=field
        )
    if len(upload.content_type or "") > MAX_CONTENT_TYPE:
        raise Unprocessable(
            f"{field}: the part's Content-Type is longer than {MAX_CONTENT_TYPE} characters",
            field=field,
        )


def _no_nul(text: str, field: str) -> None:
    if "\x00" in text:
        raise Unprocessable(f"{field}: NUL characters are not allowed", field=field)


def _no_nul_in_json(body: Any) -> None:
    stack: list[tuple[str, Any]] = [("", body)]
    while stack:  # iterative: nesting depth is the client's choice
        where, value = stack.pop()
        if isinstance(value, str):
            _no_nul(value, where or "body")
        elif isinstance(value, dict):
            for key, item in value.items():
                path = f"{where}.{key}" if where else str(key)
                _no_nul(str(key), path)
                stack.append((path, item))
        elif isinstance(value, list):
            stack.extend((f"{where}.{i}" if where else str(i), v) for i, v in enumerate(value))


def _takes_body(dependant: Any) -> bool:
    return bool(_body_names(dependant))


def _body_names(dependant: Any) -> set[str]:
    """The body fields a route takes, its sub-dependencies' included."""
    names: set[str] = set()
    stack = [dependant]
    while stack:
        current = stack.pop()
        names |= {field.alias for field in current.body_params}
        stack.extend(current.dependencies)
    return names
