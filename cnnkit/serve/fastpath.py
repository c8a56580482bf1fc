"""``POST /predict`` as a plain ASGI handler: the hot path, without the framework's per-request layers.

Under load a 28x28 upload costs about as much in FastAPI and Starlette (five middleware layers,
routing, dependency solving, a Request object, an extra task for the timeout) as in decoding and
predicting (issue 17's profile). This handler answers the common request itself: the default
model, a Content-Length within the limit, and query parameters it can read unambiguously. It does
what the layers did for it (counts and times the request, maps errors to the same JSON answers)
and calls the same ``service.predict``. Everything else (a chunked body, an odd query, other
paths) goes through the full app, which stays the reference: tests/integration/test_serve_api.py
runs against both.
"""
from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from typing import Any, get_args
from urllib.parse import parse_qsl

from cnnkit.errors import CnnkitError
from cnnkit.serve import service
from cnnkit.serve.inputs import check_type, from_body
from cnnkit.serve.limits import ApiError, Receive, Scope, Send, declared_length
from cnnkit.serve.prometheus import Metrics
from cnnkit.serve.settings import Preprocess, ServeSettings

log = logging.getLogger("cnnkit.serve")
PATH = "/predict"
DEFAULT_TOP_K = 5
BOOLS = {"true": True, "false": False, "1": True, "0": False}


@dataclass(frozen=True)
class Options:
    top_k: int = DEFAULT_TOP_K
    preprocess: Preprocess = "auto"
    include_input: bool = False


def json_body(content: Any) -> bytes:
    """What Starlette's JSONResponse writes, byte for byte."""
    return json.dumps(content, ensure_ascii=False, allow_nan=False, indent=None, separators=(",", ":")).encode()


def options(query: bytes, max_top_k: int) -> Options | None:
    """The query's options, or None where the full app should read (and maybe refuse) them."""
    if not query:
        return Options()
    try:
        pairs = parse_qsl(query.decode("latin-1"), keep_blank_values=True, strict_parsing=True)
    except ValueError:
        return None
    given = dict(pairs)
    if len(given) != len(pairs):  # a repeated name
        return None
    top_k, pre, include = given.get("top_k", str(DEFAULT_TOP_K)), given.get("preprocess", "auto"), given.get(
        "include_input", "false")
    if not (top_k.isascii() and top_k.isdigit() and 1 <= int(top_k) <= max_top_k):
        return None
    if pre not in get_args(Preprocess) or include not in BOOLS:
        return None
    return Options(int(top_k), pre, BOOLS[include])  # type: ignore[arg-type]


def header(scope: Scope, name: bytes) -> str | None:
    return next((v.decode("latin-1") for k, v in scope["headers"] if k == name), None)


class FastPredict:
    """Answers ``POST /predict`` requests that ``take`` accepts; the app routes the rest."""

    def __init__(self, registry: Any, settings: ServeSettings, metrics: Metrics, count: Any) -> None:
        self.registry, self.limits, self.metrics, self.count = registry, settings.limits, metrics, count
        self._latency = metrics.latency.labels(PATH)
        self._ok = metrics.requests.labels(PATH, "POST", "200")

    def take(self, scope: Scope) -> Options | None:
        if scope["type"] != "http" or scope["path"] != PATH or scope["method"] != "POST":
            return None
        size = declared_length(scope)
        if size is None or not 0 <= size <= self.limits.max_request_bytes:  # BodyLimit answers these
            return None
        return options(scope.get("query_string", b""), self.limits.max_top_k)

    async def __call__(self, scope: Scope, receive: Receive, send: Send, opts: Options) -> None:
        start = time.perf_counter()
        self.count.accepted += 1
        status = 500
        try:
            status, body, headers = await self._answer(scope, receive, opts)
            await send({"type": "http.response.start", "status": status, "headers": headers})
            await send({"type": "http.response.body", "body": body})
            self.count.answered += 1
        finally:
            counter = self._ok if status == 200 else self.metrics.requests.labels(PATH, "POST", str(status))
            counter.inc()
            self._latency.observe(time.perf_counter() - start)

    async def _answer(self, scope: Scope, receive: Receive, opts: Options) -> tuple[int, bytes, list[Any]]:
        try:
            model = self.registry.get(None, None)
            work = service.predict(model, self._images(scope, receive), opts.top_k, opts.preprocess,
                                   self.limits, opts.include_input)
            status, content, extra = 200, await service.timed(work, self.limits.timeout_s), {}
        except Exception as exc:  # noqa: BLE001 - unexpected ones answered as the app's catch-all does, and logged
            error = self._error(exc)
            self.metrics.errors.labels(error.kind).inc()
            status, content, extra = error.status, error.body(), error.headers
        body = json_body(content)
        headers = [(b"content-length", str(len(body)).encode()), (b"content-type", b"application/json")]
        headers += [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in extra.items()]
        return status, body, headers

    @staticmethod
    def _error(exc: Exception) -> ApiError:
        """The answer the app's exception handlers give for ``exc``."""
        if isinstance(exc, ApiError):
            return exc
        if isinstance(exc, CnnkitError):
            return ApiError(422, "bad_input", str(exc))
        log.error("unhandled error", exc_info=exc)
        return ApiError(500, "internal", f"internal error ({type(exc).__name__})")

    async def _images(self, scope: Scope, receive: Receive) -> list[bytes]:
        content_type = header(scope, b"content-type")
        check_type(content_type)  # before the body is read, as inputs.read_images does
        chunks = []
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise ApiError(400, "disconnected", "the client went away before its body was sent")
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        return from_body(content_type, b"".join(chunks), self.limits)
