"""Refuse request bodies over a cap early: on Content-Length, and by counting bytes while
they stream in, before the multipart parser has spooled them to disk or the JSON parser has
read them (app.gate picks the cap for each route)."""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.errors import error_body

MULTIPART_SLACK = 1 << 20  # form fields and part headers beside the file itself


class BodySizeLimit:
    """ASGI middleware: 413 with the JSON error shape once a body passes max_bytes (plus
    `slack`: a multipart body's form fields and part headers beside the file)."""

    def __init__(
        self, app: ASGIApp, max_bytes: int, what: str = "upload", slack: int = MULTIPART_SLACK
    ) -> None:
        self.app = app
        self.cap = f"{max_bytes >> 20} MiB" if max_bytes >= 1 << 20 else f"{max_bytes >> 10} KiB"
        self.what = what
        self.max_bytes = max_bytes + slack

    async def _refuse(self, send: Send) -> None:
        message = f"the {self.what} is larger than {self.cap}"
        body = json.dumps(error_body(413, "payload_too_large", message)).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),
        ]
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._refuse(send)
            return
        seen = 0
        exceeded = False
        started = False

        async def counting_receive() -> Message:
            nonlocal seen, exceeded
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    exceeded = True
                    # Stop the stream here: the parser sees the end and fails.
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if exceeded:  # whatever the app made of a cut body, the answer is 413
                if not started:
                    started = True
                    await self._refuse(send)
                return
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, guarded_send)
        except Exception:
            if not exceeded:
                raise
            if not started:
                await self._refuse(send)
