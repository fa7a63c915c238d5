"""/v1/apikeys: list and revoke API keys (admin). Keys are created with the CLI only."""

from __future__ import annotations

from fastapi import APIRouter
from sqlalchemy import select

from app.auth import AdminScope
from app.deps import SessionDep
from app.routes.common import Limit, Offset, commit, paginate
from app.schemas.api import ApiKeyRead, Page
from core.apikeys import revoke_api_key
from core.tables import ApiKey

router = APIRouter(prefix="/v1/apikeys", tags=["API keys"])


@router.get("", dependencies=[AdminScope], response_model=Page[ApiKeyRead])
def list_api_keys(session: SessionDep, limit: Limit = 50, offset: Offset = 0) -> Page[ApiKeyRead]:
    query = select(ApiKey).order_by(ApiKey.created_at.desc(), ApiKey.id)
    rows, total = paginate(session, query, limit, offset)
    return Page[ApiKeyRead](
        items=[ApiKeyRead.model_validate(r) for r in rows], total=total, limit=limit, offset=offset
    )


@router.post("/{key_id}/revoke", dependencies=[AdminScope], response_model=ApiKeyRead)
def revoke(key_id: str, session: SessionDep) -> ApiKeyRead:
    """Refuse the key from now on (401). Idempotent: the first revocation time stays."""
    body = ApiKeyRead.model_validate(revoke_api_key(session, key_id))
    commit(session)
    return body
