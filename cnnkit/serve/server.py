"""Starting the server: resolve the runs once, export ONNX once, then uvicorn with N workers.

Work that must happen once (finding the run folders, exporting and checking ONNX) happens here
in the parent, before any worker exists. One worker runs in this process; several are worker
processes (``cnnkit.serve.workers``: this process accepts and deals the connections), each
loading the models itself from the settings passed in an environment variable, with Prometheus
multiprocess mode and a shared state file so metrics and admin swaps cover all of them.
"""
from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from cnnkit.errors import CnnkitError
from cnnkit.serve.settings import ModelSpec, ServeSettings

SETTINGS_ENV = "CNNKIT_SERVE_SETTINGS"
# After SIGTERM, how long requests already accepted may take to finish (Kubernetes' default
# terminationGracePeriodSeconds is 30, so the pod is not killed first).
GRACE_S = 10


def resolve_models(refs: Sequence[str], runs_dir: str | None) -> tuple[ModelSpec, ...]:
    """``NAME``, ``NAME:vN``, a path, or ``ALIAS=REF`` -> specs with absolute run folders."""
    from cnnkit.runs import RunStore, check_name

    store = RunStore(runs_dir)
    specs: list[ModelSpec] = []
    for raw in refs:
        alias, sep, ref = raw.partition("=")
        if not sep:
            alias, ref = "", raw
        run = store.get(ref)
        if run.read("model.json") is None:  # (a Hub folder has no model.json file, but reads as one)
            raise CnnkitError(f"run {run.ref} has no model.json; it is not a finished cnnkit run")
        spec = ModelSpec(check_name(alias) if alias else run.name, run.version, str(Path(run.path).resolve()))
        if any((s.name, s.version) == (spec.name, spec.version) for s in specs):
            raise CnnkitError(f"{spec.name} version {spec.version} is named twice")
        specs.append(spec)
    if not specs:
        raise CnnkitError("name at least one run to serve")
    return tuple(specs)


def export_models(settings: ServeSettings, log: Any = print) -> ServeSettings:
    """For --backend onnx / onnx-int8: export and check each model once, before the workers start."""
    if settings.backend == "torch":
        return settings
    from cnnkit.export.formats import describe_check, serving_export
    from cnnkit.runs import load

    specs = []
    for spec in settings.models:
        path, report = serving_export(load(spec.ref, settings.runs_dir, "cpu"), settings.backend, settings.data_dir)
        log(f"cnnkit serve: {spec.name}:v{spec.version} {describe_check(report)}")
        specs.append(replace(spec, onnx_path=str(path)))
    return replace(settings, models=tuple(specs))


def app_from_env() -> Any:
    """uvicorn's factory in each worker process: the settings come from the parent."""
    from cnnkit.serve.app import create_app

    return create_app(ServeSettings.from_json(Path(os.environ[SETTINGS_ENV]).read_text()))


def serve(settings: ServeSettings, log_level: str = "warning") -> int:
    """Blocks until interrupted; returns the exit code."""
    import uvicorn

    from cnnkit.serve.workers import WorkerPool, handoff_supported

    options: dict[str, Any] = dict(log_level=log_level, access_log=False, timeout_graceful_shutdown=GRACE_S,
                                   server_header=False)
    common = dict(host=settings.host, port=settings.port, **options)
    if settings.workers == 1:
        from cnnkit.serve.app import create_app

        uvicorn.run(create_app(settings), **common)
        return 0
    with tempfile.TemporaryDirectory(prefix="cnnkit-serve-") as tmp:
        metrics_dir = Path(tmp) / "metrics"
        metrics_dir.mkdir()
        shared = replace(settings, state_file=str(Path(tmp) / "state.json"))
        settings_file = Path(tmp) / "settings.json"
        settings_file.write_text(shared.to_json())
        # Read by prometheus_client when the workers import it, and by app_from_env.
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
        os.environ[SETTINGS_ENV] = str(settings_file)
        if handoff_supported():  # the supervisor deals connections to the workers in turn
            return WorkerPool(settings.workers, settings.host, settings.port, options, GRACE_S).run()
        uvicorn.run("cnnkit.serve.server:app_from_env", factory=True, workers=settings.workers, **common)
        return 0


def banner(settings: ServeSettings) -> str:
    url = f"http://{settings.host}:{settings.port}"
    models = ", ".join(f"{m.name}:v{m.version}" for m in settings.models)
    return (f"cnnkit serve: {models} ({settings.backend}, {settings.workers} worker(s)) on {url}\n"
            f"  web page {url}/   API docs {url}/docs   metrics {url}/metrics   KServe v2 {url}/v2")


def main_log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
