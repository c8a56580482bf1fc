"""Refusing what a server should not try to process, each time with a 4xx that says why.

``ApiError`` is the one way handlers fail on purpose (status, a short machine-readable kind, a
human message). ``BodyLimit`` is ASGI middleware that refuses a body over the size limit from
its Content-Length, or, for chunked uploads, as soon as the bytes received pass the limit, so
a huge upload is never held in memory. ``decompress`` undoes a Content-Encoding (the Triton
client may gzip its requests) without letting a zip bomb expand past the same limit.
"""
from __future__ import annotations

import json
import zlib
from collections.abc import Awaitable, Callable
from typing import Any

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

# Content types /predict and /explain accept; the v2 infer route has its own rules.
IMAGE_TYPES = ("image/png", "image/jpeg", "image/bmp", "image/webp", "image/gif", "image/tiff", "application/octet-stream")
FORM_TYPES = ("multipart/form-data",)
JSON_TYPES = ("application/json",)


class ApiError(Exception):
    """An answer other than success: ``status`` (4xx, or 503/504), ``kind`` (for metrics), message."""

    def __init__(self, status: int, kind: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.kind, self.message = status, kind, message
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {"error": self.message, "kind": self.kind}


def media_type(content_type: str | None) -> str:
    """'multipart/form-data; boundary=x' -> 'multipart/form-data' (lower case, no parameters)."""
    return (content_type or "").split(";", 1)[0].strip().lower()


def declared_length(scope: Scope) -> int | None:
    """The request's Content-Length: None when absent, -1 when it is not a number."""
    declared = next((v for k, v in scope["headers"] if k == b"content-length"), None)
    if declared is None:
        return None
    try:
        return int(declared)
    except ValueError:
        return -1


def too_large(limit: int) -> ApiError:
    return ApiError(413, "too_large", f"request body is over the limit of {limit:,} bytes")


async def _reply(send: Send, status: int, body: dict[str, Any]) -> None:
    data = json.dumps(body).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": data})


class BodyLimit:
    """ASGI middleware: 413 for bodies over ``max_bytes`` (declared or streamed)."""

    def __init__(self, app: ASGIApp, max_bytes: int, on_refuse: Callable[[str], None] | None = None) -> None:
        self.app, self.max_bytes, self.on_refuse = app, max_bytes, on_refuse

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        size = declared_length(scope)
        if size is not None:
            if size < 0 or size > self.max_bytes:
                await self._refuse(send, "bad_length" if size < 0 else "too_large",
                                   "Content-Length is not a number" if size < 0 else too_large(self.max_bytes).message,
                                   400 if size < 0 else 413)
                return
        received = 0
        started = False

        async def counted_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise _BodyTooLarge()
            return message

        async def tracked_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted_receive, tracked_send)
        except _BodyTooLarge:
            if not started:
                await self._refuse(send, "too_large", too_large(self.max_bytes).message, 413)

    async def _refuse(self, send: Send, kind: str, message: str, status: int) -> None:
        if self.on_refuse is not None:
            self.on_refuse(kind)
        await _reply(send, status, {"error": message, "kind": kind})


class _BodyTooLarge(Exception):
    pass


def decompress(body: bytes, encoding: str | None, limit: int) -> bytes:
    """Undo ``Content-Encoding`` gzip/deflate, refusing output over ``limit`` bytes (zip bombs)."""
    encoding = (encoding or "identity").strip().lower()
    if encoding in ("", "identity"):
        return body
    wbits = {"gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}.get(encoding)
    if wbits is None:
        raise ApiError(415, "bad_encoding", f"Content-Encoding {encoding!r} is not supported (use gzip or deflate)")
    inflater = zlib.decompressobj(wbits)
    try:
        out = inflater.decompress(body, limit + 1)
    except zlib.error as exc:
        raise ApiError(400, "bad_encoding", f"body is not valid {encoding} data ({exc})") from None
    if len(out) > limit or inflater.unconsumed_tail:
        raise too_large(limit)
    return out
