"""Annotated dependencies, so route signatures read like prose."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from app.services.inspections import InspectionRunner
from app.services.models import ModelRegistry
from core.config import Settings


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
