"""Helpers shared by the routes: pagination, lookups and entity tags for cheap polling."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Annotated, Any, TypeVar
from urllib.parse import quote

from fastapi import Query, Request, Response
from fastapi.responses import StreamingResponse
from pydantic import BaseModel
from sqlalchemy import Select, func, select
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from core.blobs import iter_chunks
from core.errors import Conflict, NotFound, ServiceUnavailable

T = TypeVar("T")

MAX_OFFSET = 1_000_000_000  # far past any real list; keeps OFFSET inside a 64-bit integer
Limit = Annotated[int, Query(ge=1, le=200, description="items per page")]
Offset = Annotated[int, Query(ge=0, le=MAX_OFFSET, description="items to skip")]


def in_utc(value: datetime | None) -> datetime | None:
    """A query time in UTC (naive: taken as UTC). Times whose UTC form falls outside years
    1-9999 (0001-01-01T00:00:00+14:00) are clamped to the ends, which select the same rows."""
    if value is None:
        return None
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    try:
        return value.astimezone(UTC)
    except OverflowError:
        end = datetime.min if value.year == datetime.min.year else datetime.max
        return end.replace(tzinfo=UTC)


def link(request: Request, name: str, **path_params: str) -> str:
    """A link for an answer: CRACKSCAN_PUBLIC_URL and the route's path, or the path alone
    (relative to the server that answered). Never built from the request's Host header,
    which the client chooses."""
    path = str(request.app.url_path_for(name, **path_params))
    base = request.app.state.settings.public_url or request.scope.get("root_path", "")
    return f"{base.rstrip('/')}{path}"


def attachment(filename: str) -> dict[str, str]:
    """A Content-Disposition header for a download (RFC 6266): the name in UTF-8 as
    filename*, and an ASCII fallback without quotes, backslashes or control characters."""
    fallback = "".join(c if " " <= c <= "~" and c not in '"\\;%' else "_" for c in filename)
    encoded = quote(filename, safe="")
    return {
        "Content-Disposition": f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{encoded}"
    }


def get_or_404(session: Session, table: type[T], item_id: str, what: str) -> T:
    row = session.get(table, item_id)
    if row is None:
        raise NotFound(f"no {what} {item_id}")
    return row


def commit(session: Session) -> None:
    """Commit before answering; a failed commit changes nothing and is a 503, not a 2xx."""
    try:
        session.commit()
    except IntegrityError as exc:
        session.rollback()
        raise Conflict(
            "another request changed the same thing at the same time; nothing was changed, "
            "try again"
        ) from exc
    except SQLAlchemyError as exc:
        session.rollback()
        raise ServiceUnavailable(
            f"the change could not be stored ({type(exc).__name__}); nothing was changed, "
            "try again",
            headers={"Retry-After": "5"},
        ) from exc


def paginate(
    session: Session, query: Select[Any], limit: int, offset: int
) -> tuple[list[Any], int]:
    total = session.scalar(select(func.count()).select_from(query.order_by(None).subquery())) or 0
    rows = list(session.scalars(query.limit(limit).offset(offset)))
    return rows, int(total)


def blob_response(
    sessions: sessionmaker[Session],
    blob_id: str,
    media_type: str,
    headers: dict[str, str] | None = None,
) -> StreamingResponse:
    """Stream a stored blob chunk by chunk; the session lives as long as the stream."""
    session = sessions()

    def stream() -> Iterator[bytes]:
        try:
            yield from iter_chunks(session, blob_id)
        finally:
            session.close()

    return StreamingResponse(stream(), media_type=media_type, headers=headers)


def etag_of(*parts: Any) -> str:
    """A weak entity tag naming these parts' values (what the answer is made from)."""
    return _weak_tag(repr(parts).encode())


def _weak_tag(content: bytes) -> str:
    return f'W/"{hashlib.blake2b(content, digest_size=12).hexdigest()}"'


def not_modified(request: Request, etag: str) -> Response | None:
    """A 304 when the client's If-None-Match already names `etag`; None otherwise."""
    sent = request.headers.get("if-none-match")
    if sent is None:
        return None
    tags = {t.strip().removeprefix("W/") for t in sent.split(",")}
    if "*" in tags or etag.removeprefix("W/") in tags:
        return Response(status_code=304, headers={"ETag": etag})
    return None


def tagged_json(request: Request, body: BaseModel) -> Response:
    """`body` as JSON with an ETag of its bytes; a 304 when the client already has them."""
    content = body.model_dump_json().encode()
    etag = _weak_tag(content)
    return not_modified(request, etag) or Response(
        content, media_type="application/json", headers={"ETag": etag}
    )


NOT_MODIFIED: dict[int | str, dict[str, Any]] = {
    304: {"description": "not modified: If-None-Match names the current ETag"}
}
