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
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from importlib import resources
from typing import Any, Literal, TypeVar

from fastapi import Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from cnnkit.errors import CnnkitError
from cnnkit.serve import protocol_v2 as v2
from cnnkit.serve import service
from cnnkit.serve.batching import BatcherClosed, QueueFull
from cnnkit.serve.inputs import read_images
from cnnkit.serve.limits import ApiError, BodyLimit
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
from cnnkit.serve.settings import ModelSpec, ServeSettings

log = logging.getLogger("cnnkit.serve")
T = TypeVar("T")
Mode = Literal["auto", "digits", "plain"]
ADMIN_ENV = "CNNKIT_ADMIN_TOKEN"
IMAGE_ERRORS = error_responses(400, 404, 413, 415, 422, 503, 504)
V2_ERRORS = error_responses(400, 404, 413, 415, 422, 503, 504)

TOP_K = Query(5, ge=1, le=1000, description="how many classes to return per image")
PREPROCESS = Query("auto", description="auto: the run's default (digit photo preprocessing for digit runs); "
                                       "digits: force it; plain: only resize as trained")
INCLUDE_INPUT = Query(False, description="also return the image the model saw (PNG data URL)")


def _version(raw: str | None) -> int | None:
    if raw is None:
        return None
    if not raw.isdigit() or len(raw) > 9:
        raise ApiError(404, "unknown_version", f"version must be a positive integer, got {raw!r}")
    return int(raw)


async def _timed(work: Awaitable[T], seconds: float) -> T:
    try:
        return await asyncio.wait_for(work, seconds)
    except TimeoutError:
        raise ApiError(504, "timeout", f"no answer within the {seconds:g} s request timeout") from None
    except QueueFull as exc:
        raise ApiError(503, "overloaded", f"server busy: {exc}", {"Retry-After": "1"}) from None
    except BatcherClosed as exc:
        raise ApiError(503, "unloaded", f"{exc}; retry", {"Retry-After": "1"}) from None


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


class MetricsMiddleware:
    """Counts and times every HTTP request by route template (bounded label values)."""

    def __init__(self, app: Any, metrics: Metrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start, status = time.perf_counter(), 500

        async def send_status(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = scope.get("route")
            path = getattr(route, "path", None) or "unmatched"
            self.metrics.requests.labels(path, scope["method"], str(status)).inc()
            self.metrics.latency.labels(path).observe(time.perf_counter() - start)


def create_app(settings: ServeSettings) -> FastAPI:
    metrics = Metrics.create()
    registry = ModelRegistry(settings, metrics)
    shared = SharedState(settings.state_file) if settings.state_file else None

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        # In command-line order: the first name is the default model, and for each name the
        # last version named is its current one.
        for spec in settings.models:
            await registry.load(spec, make_current=True)
        registry.default = settings.models[0].name if settings.models else None
        follower = asyncio.create_task(shared.follow(registry)) if shared else None
        registry.ready = True
        yield
        registry.ready = False
        if follower:
            follower.cancel()
        await registry.close()

    app = FastAPI(title="cnnkit", version=_version_string(), lifespan=lifespan,
                  description="Predictions from cnnkit runs: a JSON API, the KServe v2 inference protocol, "
                              "Grad-CAM explanations, Prometheus metrics and a web page at /.")
    app.state.registry, app.state.metrics, app.state.settings = registry, metrics, settings
    _handlers(app, metrics)
    app.add_middleware(BodyLimit, max_bytes=settings.limits.max_request_bytes,
                       on_refuse=lambda kind: metrics.errors.labels(kind).inc())
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    _page_routes(app)
    _predict_routes(app, registry, settings)
    _explain_routes(app, registry, settings)
    _v2_routes(app, registry, settings)
    _admin_routes(app, registry, shared)

    @app.get("/metrics", tags=["operations"], response_class=Response,
             responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}})
    async def prometheus() -> Response:
        """Prometheus text format: requests, errors by kind, latency, batch sizes, queue depth."""
        body, content_type = metrics.exposition()
        return Response(body, media_type=content_type)

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

    async def run_predict(request: Request, name: str | None, version: str | None, top_k: int, mode: Mode,
                          include_input: bool) -> JSONResponse:
        model = registry.get(name, _version(version))
        work = service.predict(model, read_images(request, limits), top_k, mode, limits, include_input)
        return JSONResponse(await _timed(work, limits.timeout_s))

    predict_doc = dict(tags=["predict"], response_model=None, openapi_extra={"requestBody": IMAGE_BODY},
                       responses={200: {"model": PredictResponse}, **IMAGE_ERRORS})

    @app.post("/predict", summary="Predict with the default model", **predict_doc)
    async def predict(request: Request, top_k: int = TOP_K, preprocess: Mode = PREPROCESS,
                      include_input: bool = INCLUDE_INPUT) -> JSONResponse:
        """Top classes for one or many images: multipart fields named ``file`` (repeatable), JSON
        ``{"images": [base64, ...]}`` or a raw image body. One result per image, in order."""
        return await run_predict(request, None, None, top_k, preprocess, include_input)

    @app.post("/models/{name}/predict", summary="Predict with a model's current version", **predict_doc)
    async def predict_named(request: Request, name: str, top_k: int = TOP_K, preprocess: Mode = PREPROCESS,
                            include_input: bool = INCLUDE_INPUT) -> JSONResponse:
        return await run_predict(request, name, None, top_k, preprocess, include_input)

    @app.post("/models/{name}/versions/{version}/predict", summary="Predict with one version", **predict_doc)
    async def predict_versioned(request: Request, name: str, version: str, top_k: int = TOP_K,
                                preprocess: Mode = PREPROCESS, include_input: bool = INCLUDE_INPUT) -> JSONResponse:
        return await run_predict(request, name, version, top_k, preprocess, include_input)

    @app.get("/models", tags=["models"], response_model=ModelsResponse)
    async def models() -> dict[str, Any]:
        """The served models and versions; ``current`` marks what unversioned requests get."""
        return {"default": registry.default,
                "models": [{**m.describe(), "current": registry.current(m.name) == m.version} for m in registry.models()]}


def _explain_routes(app: FastAPI, registry: ModelRegistry, settings: ServeSettings) -> None:
    limits = settings.limits

    async def run_explain(request: Request, name: str | None, version: str | None, top_k: int,
                          target: int | None, mode: Mode) -> JSONResponse:
        model = registry.get(name, _version(version))
        work = service.explain(model, read_images(request, limits), top_k, target, mode, limits)
        return JSONResponse(await _timed(work, limits.timeout_s))

    explain_doc = dict(tags=["explain"], response_model=None, openapi_extra={"requestBody": IMAGE_BODY},
                       responses={200: {"model": ExplainResponse}, **IMAGE_ERRORS})
    target_q = Query(None, ge=0, description="class to explain (default: each image's top class)")

    @app.post("/explain", summary="Grad-CAM with the default model", **explain_doc)
    async def explain(request: Request, top_k: int = TOP_K, target: int | None = target_q,
                      preprocess: Mode = PREPROCESS) -> JSONResponse:
        """Where the model looked: Grad-CAM of the last conv layer for each image, with predictions."""
        return await run_explain(request, None, None, top_k, target, preprocess)

    @app.post("/models/{name}/explain", summary="Grad-CAM with a model's current version", **explain_doc)
    async def explain_named(request: Request, name: str, top_k: int = TOP_K, target: int | None = target_q,
                            preprocess: Mode = PREPROCESS) -> JSONResponse:
        return await run_explain(request, name, None, top_k, target, preprocess)

    @app.post("/models/{name}/versions/{version}/explain", summary="Grad-CAM with one version", **explain_doc)
    async def explain_versioned(request: Request, name: str, version: str, top_k: int = TOP_K,
                                target: int | None = target_q, preprocess: Mode = PREPROCESS) -> JSONResponse:
        return await run_explain(request, name, version, top_k, target, preprocess)


def _v2_routes(app: FastAPI, registry: ModelRegistry, settings: ServeSettings) -> None:
    limits = settings.limits

    def metadata(model: ServedModel) -> dict[str, Any]:
        versions = [m.version for m in registry.models() if m.name == model.name]
        platform = "onnxruntime_onnx" if model.backend.name == "onnx" else "pytorch_libtorch"
        return v2.model_metadata(model.name, versions, platform, model.pre["channels"], model.pre["stored_size"],
                                 len(model.classes))

    async def infer(request: Request, model: ServedModel) -> Response:
        async def work() -> Response:
            payload, headers = await service.infer_v2(model, await request.body(), request.headers, limits)
            return Response(payload, headers=headers, media_type=headers.pop("content-type"))

        return await _timed(work(), limits.timeout_s)

    infer_doc = dict(tags=["kserve-v2"], openapi_extra={"requestBody": INFER_BODY}, response_model=None,
                     responses={200: {"content": {"application/json": {}, "application/octet-stream": {}}}, **V2_ERRORS})

    @app.get("/v2", tags=["kserve-v2"])
    async def server_metadata() -> dict[str, Any]:
        return v2.server_metadata(_version_string())

    @app.get("/v2/health/live", tags=["kserve-v2"])
    async def live() -> dict[str, bool]:
        return {"live": True}

    @app.get("/v2/health/ready", tags=["kserve-v2"], responses=error_responses(503))
    async def ready() -> Any:
        if not registry.ready:
            return JSONResponse({"ready": False}, status_code=503)
        return {"ready": True}

    @app.get("/v2/models/{name}", tags=["kserve-v2"], responses=error_responses(404))
    async def model_metadata(name: str) -> dict[str, Any]:
        return metadata(registry.get(name))

    @app.get("/v2/models/{name}/versions/{version}", tags=["kserve-v2"], responses=error_responses(404))
    async def version_metadata(name: str, version: str) -> dict[str, Any]:
        return metadata(registry.get(name, _version(version)))

    @app.get("/v2/models/{name}/ready", tags=["kserve-v2"], responses=error_responses(404))
    async def model_ready(name: str) -> dict[str, Any]:
        registry.get(name)
        return {"name": name, "ready": True}

    @app.get("/v2/models/{name}/versions/{version}/ready", tags=["kserve-v2"], responses=error_responses(404))
    async def version_ready(name: str, version: str) -> dict[str, Any]:
        registry.get(name, _version(version))
        return {"name": name, "ready": True}

    @app.post("/v2/models/{name}/infer", **infer_doc)
    async def model_infer(request: Request, name: str) -> Response:
        """KServe v2 inference; UINT8/FP32 tensors (N, C, S, S) or BYTES encoded images (N)."""
        return await infer(request, registry.get(name))

    @app.post("/v2/models/{name}/versions/{version}/infer", **infer_doc)
    async def version_infer(request: Request, name: str, version: str) -> Response:
        return await infer(request, registry.get(name, _version(version)))


def _admin_routes(app: FastAPI, registry: ModelRegistry, shared: SharedState | None) -> None:
    token = os.environ.get(ADMIN_ENV) or None

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
