"""The HTTP routes: the JSON API, KServe v2, Grad-CAM, metrics, admin, the web page.

Routes only: each handler resolves the model, calls one function of ``service`` or
``protocol_v2`` and returns its answer; the logic lives in those modules.
"""
from __future__ import annotations

import asyncio
import hmac
import logging
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from importlib import resources
from typing import Any

from fastapi import Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from cnnkit.errors import CnnkitError
from cnnkit.serve import protocol_v2 as v2
from cnnkit.serve import service
from cnnkit.serve.fastpath import DEFAULT_TOP_K, FastPredict
from cnnkit.serve.inputs import read_images
from cnnkit.serve.limits import ApiError, BodyLimit
from cnnkit.serve.monitoring import observer_for
from cnnkit.serve.prometheus import Metrics
from cnnkit.serve.repository import ModelRegistry, ServedModel, SharedState
from cnnkit.serve.schemas import (
    IMAGE_BODY,
    INFER_BODY,
    ExplainResponse,
    LoadRequest,
    ModelInfo,
    ModelsResponse,
    PredictResponse,
    error_responses,
)
from cnnkit.serve.settings import ADMIN_ENV, Limits, ModelSpec, Preprocess, ServeSettings

log = logging.getLogger("cnnkit.serve")
# What a request that carries images may be answered with (/predict, /explain, v2 infer).
REQUEST_ERRORS = error_responses(400, 404, 413, 415, 422, 503, 504)

TOP_K = Query(DEFAULT_TOP_K, ge=1, le=Limits.max_top_k, description="how many classes to return per image")
PREPROCESS = Query("auto", description="auto: the run's default (digit photo preprocessing for digit runs); "
                                       "digits: force it; plain: only resize as trained")
INCLUDE_INPUT = Query(False, description="also return the image the model saw (PNG data URL)")


@dataclass(frozen=True)
class Target:
    """Which model a per-model route addresses; ``version`` is the raw path segment, parsed in
    the handler so that a bad query parameter is still answered with 422 first, as before."""

    name: str | None
    version: str | None


async def _default_model() -> Target:
    return Target(None, None)


async def _named_model(name: str) -> Target:
    return Target(name, None)


async def _model_version(name: str, version: str) -> Target:
    return Target(name, version)


# (async: FastAPI would run a plain def dependency in a thread pool, a thread hop per request.)
# Each per-model route is served under these prefixes: (prefix, path-parameter dependency, what).
TARGETS: tuple[tuple[str, Callable[..., Awaitable[Target]], str], ...] = (
    ("", _default_model, "the default model"),
    ("/models/{name}", _named_model, "a model's current version"),
    ("/models/{name}/versions/{version}", _model_version, "one version"),
)
V2_TARGETS = TARGETS[1:]  # v2 always names the model


def _version(raw: str | None) -> int | None:
    if raw is None:
        return None
    if not raw.isdigit() or len(raw) > 9:
        raise ApiError(404, "unknown_version", f"version must be a positive integer, got {raw!r}")
    return int(raw)


def _error(status: int, kind: str, message: str, metrics: Metrics, **extra: Any) -> JSONResponse:
    metrics.errors.labels(kind).inc()
    headers = extra.pop("headers", None)
    return JSONResponse({"error": message, "kind": kind, **extra}, status_code=status, headers=headers)


def _handlers(app: FastAPI, metrics: Metrics) -> None:
    @app.exception_handler(ApiError)
    async def api_error(_: Request, exc: ApiError) -> JSONResponse:
        return _error(exc.status, exc.kind, exc.message, metrics, headers=exc.headers or None)

    @app.exception_handler(v2.ProtocolError)
    async def protocol_error(_: Request, exc: v2.ProtocolError) -> JSONResponse:
        return _error(400, "bad_tensor", str(exc), metrics)

    @app.exception_handler(CnnkitError)
    async def cnnkit_error(_: Request, exc: CnnkitError) -> JSONResponse:
        return _error(422, "bad_input", str(exc), metrics)

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        first = errors[0] if errors else {"loc": (), "msg": "invalid request"}
        where = ".".join(str(p) for p in first.get("loc", ()))
        detail = [{"loc": list(e.get("loc", ())), "msg": e.get("msg")} for e in errors]
        return _error(422, "validation", f"{where}: {first.get('msg')}", metrics, detail=detail)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        kind = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "bad_request")
        return _error(exc.status_code, kind, str(exc.detail), metrics, headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def bug(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error")
        return _error(500, "internal", f"internal error ({type(exc).__name__})", metrics)


@dataclass
class RequestCount:
    """HTTP requests this worker accepted (the app saw them) and answered in full.

    Logged when the worker stops: after a SIGTERM, uvicorn stops accepting, lets the requests
    in flight finish within its grace period and cancels the rest; "cut off" counts those, so a
    shutdown that lost an accepted request says so (tests/integration/test_serve_shutdown.py).
    """

    accepted: int = 0
    answered: int = 0

    def summary(self) -> str:
        return (f"{self.accepted} request(s) accepted, {self.answered} answered, "
                f"{self.accepted - self.answered} cut off")


class MetricsMiddleware:
    """Counts and times every HTTP request by route template (bounded label values)."""

    def __init__(self, app: Any, metrics: Metrics, count: RequestCount) -> None:
        self.app, self.metrics, self.count = app, metrics, count

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start, status = time.perf_counter(), 500
        self.count.accepted += 1

        async def send_status(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                self.count.answered += 1

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = scope.get("route")
            path = getattr(route, "path", None) or "unmatched"
            self.metrics.requests.labels(path, scope["method"], str(status)).inc()
            self.metrics.latency.labels(path).observe(time.perf_counter() - start)


class CnnkitAPI(FastAPI):
    """FastAPI with ``POST /predict`` answered first by ``FastPredict`` when it takes the request."""

    fast: FastPredict | None = None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        opts = self.fast.take(scope) if self.fast is not None else None
        if opts is None:
            await super().__call__(scope, receive, send)
        else:
            await self.fast(scope, receive, send, opts)


def create_app(settings: ServeSettings) -> FastAPI:
    metrics = Metrics.create()
    registry = ModelRegistry(settings, metrics)
    registry.observer = observer_for(settings, metrics)  # prediction log + drift (issue 16); None: off
    shared = SharedState(settings.state_file) if settings.state_file else None
    count = RequestCount()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # In command-line order: the first name is the default model, and for each name the
        # last version named is its current one.
        for spec in settings.models:
            await registry.load(spec, make_current=True)
        registry.default = settings.models[0].name if settings.models else None
        follower = asyncio.create_task(shared.follow(registry)) if shared else None
        registry.ready = True  # every model was warmed as it loaded (cnnkit.serve.warmup)
        if shared and app.state.ready_at_startup:  # (cnnkit.serve.workers marks it once it takes connections)
            shared.mark_ready()
        yield
        registry.ready = False
        if follower:
            follower.cancel()
        await registry.close()
        if registry.observer is not None:
            registry.observer.close()  # writes every queued log line before the process exits
        log.warning("cnnkit serve: worker %d stopped: %s", os.getpid(), count.summary())

    app = CnnkitAPI(title="cnnkit", version=_version_string(), lifespan=lifespan,
                  description="Predictions from cnnkit runs: a JSON API, the KServe v2 inference protocol, "
                              "Grad-CAM explanations, Prometheus metrics and a web page at /.")
    app.state.registry, app.state.metrics, app.state.settings = registry, metrics, settings
    app.state.requests, app.state.shared, app.state.ready_at_startup = count, shared, True
    app.fast = FastPredict(registry, settings, metrics, count)
    _handlers(app, metrics)
    app.add_middleware(BodyLimit, max_bytes=settings.limits.max_request_bytes,
                       on_refuse=lambda kind: metrics.errors.labels(kind).inc())
    app.add_middleware(MetricsMiddleware, metrics=metrics, count=count)
    if settings.gradio_path != "/":  # (cnnkit gradio: the Gradio app is the page)
        _page_routes(app)
    _predict_routes(app, registry, settings)
    _explain_routes(app, registry, settings)
    _v2_routes(app, registry, settings, shared)
    _admin_routes(app, registry, shared)

    @app.get("/metrics", tags=["operations"], response_class=Response,
             responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}})
    async def prometheus() -> Response:
        """Prometheus text format: requests, errors by kind, latency, batch sizes, queue depth."""
        body, content_type = metrics.exposition()
        return Response(body, media_type=content_type)

    if settings.gradio_path:  # last: a mount at / must not shadow the routes above (issue 16)
        from cnnkit.serve.gradio_app import mount

        mount(app, registry, settings)
    return app


def _version_string() -> str:
    from cnnkit import __version__

    return __version__


def _page_routes(app: FastAPI) -> None:
    static = resources.files("cnnkit.serve") / "static"
    app.mount("/static", StaticFiles(directory=str(static)), name="static")

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page() -> HTMLResponse:
        return HTMLResponse((static / "index.html").read_text())


def _predict_routes(app: FastAPI, registry: ModelRegistry, settings: ServeSettings) -> None:
    limits = settings.limits
    doc = dict(tags=["predict"], response_model=None, openapi_extra={"requestBody": IMAGE_BODY},
               responses={200: {"model": PredictResponse}, **REQUEST_ERRORS},
               description="Top classes for one or many images: multipart fields named ``file`` (repeatable), "
                           "JSON ``{\"images\": [base64, ...]}`` or a raw image body. One result per image, in order.")

    def handler(where: Callable[..., Awaitable[Target]]) -> Callable[..., Awaitable[JSONResponse]]:
        located = Depends(where)

        async def predict(request: Request, at: Target = located, top_k: int = TOP_K,
                          preprocess: Preprocess = PREPROCESS, include_input: bool = INCLUDE_INPUT) -> JSONResponse:
            model = registry.get(at.name, _version(at.version))
            work = service.predict(model, read_images(request, limits), top_k, preprocess, limits, include_input)
            return JSONResponse(await service.timed(work, limits.timeout_s))

        return predict

    for prefix, where, what in TARGETS:
        app.post(f"{prefix}/predict", summary=f"Predict with {what}", **doc)(handler(where))

    @app.get("/models", tags=["models"], response_model=ModelsResponse)
    async def models() -> dict[str, Any]:
        """The served models and versions; ``current`` marks what unversioned requests get."""
        return {"default": registry.default,
                "models": [{**m.describe(), "current": registry.current(m.name) == m.version} for m in registry.models()]}


def _explain_routes(app: FastAPI, registry: ModelRegistry, settings: ServeSettings) -> None:
    limits = settings.limits
    doc = dict(tags=["explain"], response_model=None, openapi_extra={"requestBody": IMAGE_BODY},
               responses={200: {"model": ExplainResponse}, **REQUEST_ERRORS},
               description="Where the model looked: Grad-CAM of the last conv layer for each image, with predictions.")
    target_q = Query(None, ge=0, description="class to explain (default: each image's top class)")

    def handler(where: Callable[..., Awaitable[Target]]) -> Callable[..., Awaitable[JSONResponse]]:
        located = Depends(where)

        async def explain(request: Request, at: Target = located, top_k: int = TOP_K,
                          target: int | None = target_q, preprocess: Preprocess = PREPROCESS) -> JSONResponse:
            model = registry.get(at.name, _version(at.version))
            work = service.explain(model, read_images(request, limits), top_k, target, preprocess, limits)
            return JSONResponse(await service.timed(work, limits.timeout_s))

        return explain

    for prefix, where, what in TARGETS:
        app.post(f"{prefix}/explain", summary=f"Grad-CAM with {what}", **doc)(handler(where))


def _v2_health(app: FastAPI, registry: ModelRegistry, settings: ServeSettings, shared: SharedState | None) -> None:
    @app.get("/v2", tags=["kserve-v2"])
    async def server_metadata() -> dict[str, Any]:
        return v2.server_metadata(_version_string())

    @app.get("/v2/health/live", tags=["kserve-v2"])
    async def live() -> dict[str, bool]:
        return {"live": True}

    @app.get("/v2/health/ready", tags=["kserve-v2"], responses=error_responses(503))
    async def ready() -> Any:
        """Ready once every model is warm, in every worker process (not only the one answering)."""
        warm_workers = shared.workers_ready() if shared else 1
        if not registry.ready or warm_workers < settings.workers:
            return JSONResponse({"ready": False, "workers_ready": warm_workers}, status_code=503)
        return {"ready": True}


def _v2_routes(app: FastAPI, registry: ModelRegistry, settings: ServeSettings, shared: SharedState | None) -> None:
    limits = settings.limits

    def metadata(model: ServedModel) -> dict[str, Any]:
        versions = [m.version for m in registry.models() if m.name == model.name]
        platform = "onnxruntime_onnx" if model.backend.name.startswith("onnx") else "pytorch_libtorch"
        return v2.model_metadata(model.name, versions, platform, model.pre["channels"], model.pre["stored_size"],
                                 len(model.classes))

    async def infer(request: Request, model: ServedModel) -> Response:
        async def work() -> Response:
            payload, headers = await service.infer_v2(model, await request.body(), request.headers, limits)
            return Response(payload, headers=headers, media_type=headers.pop("content-type"))

        return await service.timed(work(), limits.timeout_s)

    infer_doc = dict(tags=["kserve-v2"], openapi_extra={"requestBody": INFER_BODY}, response_model=None,
                     responses={200: {"content": {"application/json": {}, "application/octet-stream": {}}}, **REQUEST_ERRORS})

    _v2_health(app, registry, settings, shared)

    def per_model(where: Callable[..., Awaitable[Target]]) -> dict[str, Callable[..., Awaitable[Any]]]:
        located = Depends(where)

        async def model_metadata(at: Target = located) -> dict[str, Any]:
            return metadata(registry.get(at.name, _version(at.version)))

        async def model_ready(at: Target = located) -> dict[str, Any]:
            registry.get(at.name, _version(at.version))
            return {"name": at.name, "ready": True}

        async def model_infer(request: Request, at: Target = located) -> Response:
            """KServe v2 inference; UINT8/FP32 tensors (N, C, S, S) or BYTES encoded images (N)."""
            return await infer(request, registry.get(at.name, _version(at.version)))

        return {"metadata": model_metadata, "ready": model_ready, "infer": model_infer}

    for prefix, where, _ in V2_TARGETS:
        routes = per_model(where)
        app.get(f"/v2{prefix}", tags=["kserve-v2"], responses=error_responses(404))(routes["metadata"])
        app.get(f"/v2{prefix}/ready", tags=["kserve-v2"], responses=error_responses(404))(routes["ready"])
        app.post(f"/v2{prefix}/infer", **infer_doc)(routes["infer"])


def _admin_routes(app: FastAPI, registry: ModelRegistry, shared: SharedState | None) -> None:
    token = registry.settings.admin_token or None

    def authorize(request: Request) -> None:
        if token is None:
            raise ApiError(403, "admin_off", f"the admin API is off; start the server with {ADMIN_ENV} set to enable it")
        given = request.headers.get("authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
            raise ApiError(401, "unauthorized", "missing or wrong admin token (Authorization: Bearer TOKEN)")

    admin = dict(tags=["admin"], dependencies=[Depends(authorize)])

    @app.post("/admin/models", response_model=ModelInfo, responses=error_responses(400, 401, 403, 404, 422), **admin)
    async def load_model(body: LoadRequest) -> dict[str, Any]:
        """Load a run version while serving and (by default) make it current; no request fails.

        Needs ``Authorization: Bearer $CNNKIT_ADMIN_TOKEN``; without that variable the admin API is off."""
        from cnnkit.runs import RunStore

        run = await asyncio.to_thread(RunStore(registry.settings.runs_dir).get, body.run)
        spec = ModelSpec(body.name or run.name, run.version, str(run.path))
        model = await registry.load(spec, body.make_current)
        if shared:
            shared.publish(registry)
        return {**model.describe(), "current": registry.current(model.name) == model.version}

    @app.delete("/admin/models/{name}/versions/{version}", responses=error_responses(401, 403, 404, 409), **admin)
    async def unload_model(name: str, version: str) -> dict[str, Any]:
        """Stop serving a version once its queued requests are answered."""
        await registry.remove(name, _version(version) or 0)
        if shared:
            shared.publish(registry)
        return {"unloaded": {"name": name, "version": int(version)}}
