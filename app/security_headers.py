"""Security headers on every answer: no MIME sniffing, no framing, no referrer, and a
Content-Security-Policy that lets each kind of page load only what it needs from this server."""

from __future__ import annotations

from urllib.parse import urlsplit

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# The dashboard: its own modules and styles; photos and crops arrive as blob: URLs.
DASHBOARD_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "
    "connect-src 'self'{extra}; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)
# Swagger UI (/docs) sets inline styles as it renders; its scripts are files of this server.
DOCS_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'{extra}; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
API_CSP = "default-src 'none'; frame-ancestors 'none'"  # JSON, images, files: nothing runs
COMMON = (
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
)


def policy_for(path: str, public_url: str | None = None) -> str:
    """The Content-Security-Policy for an answer on `path`; the configured public URL's
    origin may be called too, as the answers' links lead there."""
    extra = ""
    if public_url:
        parts = urlsplit(public_url)
        extra = f" {parts.scheme}://{parts.netloc}"
    if path == "/dashboard" or path.startswith("/dashboard/"):
        return DASHBOARD_CSP.format(extra=extra)
    if path == "/docs" or path.startswith("/docs/"):
        return DOCS_CSP.format(extra=extra)
    return API_CSP


class SecurityHeaders:
    def __init__(self, app: ASGIApp, public_url: str | None = None) -> None:
        self.app = app
        self.public_url = public_url

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        csp = policy_for(scope["path"], self.public_url).encode()

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in (*COMMON, (b"content-security-policy", csp)):
                    headers.setdefault(name.decode(), value.decode())
            await send(message)

        await self.app(scope, receive, with_headers)
