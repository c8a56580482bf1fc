"""The models being served, addressed by name and version, and swapping versions while serving.

A ``ServedModel`` is one run version: its Predictor (preprocessing, classes, the eager model for
Grad-CAM), a backend for forward passes and its own Batcher. The ``ModelRegistry`` maps name ->
version -> ServedModel plus each name's *current* version (what requests without a version
get). A new version is loaded off the event loop, started, and only then made current with one
dict assignment; the old one keeps answering the requests that already hold it and is closed
after its queue drains, so a swap fails no request.

With several worker processes, a swap made through one worker is written to a small state file
that every worker polls (``SharedState``), so all of them converge on the same set of models.
"""
from __future__ import annotations

import asyncio
import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cnnkit.io import write_json
from cnnkit.serve.batching import Batcher
from cnnkit.serve.limits import ApiError
from cnnkit.serve.prometheus import Metrics
from cnnkit.serve.settings import ModelSpec, ServeSettings


@dataclass
class ServedModel:
    spec: ModelSpec
    predictor: Any  # cnnkit.predict.Predictor
    backend: Any  # cnnkit.serve.backends.Backend
    batcher: Batcher[np.ndarray, np.ndarray] | None = None
    loaded_at: float = field(default_factory=time.time)
    warm_s: float | None = None  # how long warming took (see cnnkit.serve.warmup); None: not warmed
    observer: Any = None  # cnnkit.serve.monitoring.Observer: prediction log + drift; None: off

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def version(self) -> int:
        return self.spec.version

    @property
    def classes(self) -> list[str]:
        return self.predictor.classes

    @property
    def pre(self) -> dict[str, Any]:
        return self.predictor.pre

    def run_batch(self, items: list[np.ndarray]) -> list[np.ndarray]:
        """One forward pass over single images (C, S, S), uint8 or 0..1 float32 -> probability rows."""
        if all(a.dtype == np.uint8 for a in items):
            batch = np.stack(items)
        else:
            batch = np.stack([a.astype(np.float32) / 255.0 if a.dtype == np.uint8 else a.astype(np.float32) for a in items])
        return list(self.backend.probabilities(batch))

    def incoming(self) -> Any:
        """Context: a request for this model is being decoded (see Batcher.incoming)."""
        assert self.batcher is not None, "start() the model before predicting"
        return self.batcher.incoming()

    async def probabilities(self, arrays: list[np.ndarray]) -> list[np.ndarray]:
        assert self.batcher is not None, "start() the model before predicting"
        return await self.batcher.submit_many(arrays)

    def start(self, settings: ServeSettings, metrics: Metrics) -> None:
        label = f"{self.name}:v{self.version}"
        batch_size, batch_time, depth = (metrics.batch_size.labels(label), metrics.batch_seconds.labels(label),
                                         metrics.queue_depth.labels(label))

        def on_batch(size: int, seconds: float) -> None:
            batch_size.observe(size)
            batch_time.observe(seconds)

        self.batcher = Batcher(self.run_batch, settings.max_batch, settings.max_wait_ms / 1000, settings.max_queue,
                               on_batch=on_batch, on_depth=depth.set, name=f"forward-{label}")
        self.batcher.start()

    def describe(self) -> dict[str, Any]:
        pre = self.pre
        return {"name": self.name, "version": self.version, "run": self.predictor.loaded.ref,
                "backend": self.backend.name, "classes": self.classes, "kind": pre.get("kind"),
                "input": {"channels": pre["channels"], "size": pre["stored_size"]},
                "digit_preprocessing": bool(self.predictor.digits)}


def load_model(spec: ModelSpec, settings: ServeSettings) -> ServedModel:
    """Blocking: weights from disk, the backend ready (ONNX exported and checked if needed)."""
    import torch

    from cnnkit.predict import Predictor
    from cnnkit.runs import load
    from cnnkit.serve.backends import OnnxBackend, TorchBackend

    torch.set_num_threads(settings.threads)
    digits = {"auto": None, "on": True, "off": False}[settings.digits]
    predictor = Predictor(load(spec.ref, settings.runs_dir, "cpu"), "cpu", digits)
    if settings.backend in ("onnx", "onnx-int8"):
        path = spec.onnx_path
        if path is None:
            from cnnkit.export.formats import serving_export

            path = str(serving_export(predictor.loaded, settings.backend, settings.data_dir)[0])
            spec = ModelSpec(spec.name, spec.version, spec.ref, path)
        backend: Any = OnnxBackend(path, predictor.pre, settings.threads, name=settings.backend)
    else:
        backend = TorchBackend(predictor.model, predictor.pre)
    model = ServedModel(spec, predictor, backend)
    from cnnkit.serve.warmup import warm

    model.warm_s = warm(model, settings.max_batch)  # before it is added: a version takes traffic only warm
    return model


class ModelRegistry:
    def __init__(self, settings: ServeSettings, metrics: Metrics) -> None:
        self.settings, self.metrics = settings, metrics
        self._models: dict[str, dict[int, ServedModel]] = {}
        self._current: dict[str, int] = {}
        self.default: str | None = settings.models[0].name if settings.models else None
        self.ready = False
        self._lock = asyncio.Lock()  # one load or unload at a time
        self.observer: Any = None  # set by create_app; given to every model added

    def models(self) -> list[ServedModel]:
        return [m for versions in self._models.values() for _, m in sorted(versions.items())]

    def current(self, name: str) -> int | None:
        return self._current.get(name)

    def set_current(self, name: str, version: int) -> None:
        self.get(name, version)  # 404 if it is not served
        self._current[name] = version

    def get(self, name: str | None = None, version: int | None = None) -> ServedModel:
        name = name or self.default
        versions = self._models.get(name or "")
        if not versions:
            known = ", ".join(sorted(self._models)) or "none"
            raise ApiError(404, "unknown_model", f"no model named {name!r} is served (models: {known})")
        chosen = self._current[name] if version is None else version
        if chosen not in versions:
            have = ", ".join(str(v) for v in sorted(versions))
            raise ApiError(404, "unknown_version", f"model {name!r} has no version {chosen} (versions: {have})")
        return versions[chosen]

    async def add(self, model: ServedModel, make_current: bool = True) -> None:
        model.start(self.settings, self.metrics)
        model.observer = self.observer
        old = self._models.get(model.name, {}).get(model.version)
        self._models.setdefault(model.name, {})[model.version] = model
        if make_current or model.name not in self._current:
            self._current[model.name] = model.version  # the switch: one assignment
        if self.default is None:
            self.default = model.name
        if old is not None and old is not model and old.batcher is not None:
            await old.batcher.close(drain=True)

    async def remove(self, name: str, version: int) -> None:
        model = self.get(name, version)
        versions = self._models[name]
        if len(versions) == 1 and len(self._models) == 1:
            raise ApiError(409, "last_model", "refusing to unload the only model served")
        del versions[version]
        if not versions:
            del self._models[name]
            self._current.pop(name, None)
            if self.default == name:
                self.default = next(iter(self._models))
        elif self._current.get(name) == version:
            self._current[name] = max(versions)
        if model.batcher is not None:
            await model.batcher.close(drain=True)

    async def load(self, spec: ModelSpec, make_current: bool = True) -> ServedModel:
        """Load ``spec`` off the event loop and add it; the one path for startup and admin loads."""
        async with self._lock:
            model = await asyncio.to_thread(load_model, spec, self.settings)
            await self.add(model, make_current)
            return model

    async def close(self) -> None:
        for model in self.models():
            if model.batcher is not None:
                await model.batcher.close(drain=False)

    def snapshot(self) -> dict[str, Any]:
        return {"models": [asdict(m.spec) for m in self.models()], "current": dict(self._current),
                "default": self.default}


class SharedState:
    """The set of models all workers should serve, in a JSON file they poll (multi-worker swaps)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._seen = 0.0

    def mark_ready(self) -> None:
        """This worker is warm: a marker file named by its pid, beside the state file."""
        folder = self.path.parent / "ready"
        folder.mkdir(exist_ok=True)
        (folder / str(os.getpid())).touch()

    def workers_ready(self) -> int:
        """Live workers that marked themselves warm (a killed one's marker no longer counts)."""
        count = 0
        for marker in (self.path.parent / "ready").glob("*"):
            try:
                os.kill(int(marker.name), 0)
                count += 1
            except (ValueError, ProcessLookupError):
                marker.unlink(missing_ok=True)
            except PermissionError:
                count += 1
        return count

    def publish(self, registry: ModelRegistry) -> None:
        write_json(self.path, {**registry.snapshot(), "written": time.time(), "pid": os.getpid()})

    def changed(self) -> dict[str, Any] | None:
        try:
            mtime = self.path.stat().st_mtime
        except FileNotFoundError:
            return None
        if mtime == self._seen:
            return None
        self._seen = mtime
        return json.loads(self.path.read_text())

    async def follow(self, registry: ModelRegistry, every_s: float = 0.25) -> None:
        """Forever: bring ``registry`` in line with the file whenever another worker changed it."""
        self._seen = self.path.stat().st_mtime if self.path.exists() else 0.0
        while True:
            await asyncio.sleep(every_s)
            state = self.changed()
            if state is not None:
                await reconcile(registry, state)


async def reconcile(registry: ModelRegistry, state: dict[str, Any]) -> None:
    wanted = {(m["name"], m["version"]): ModelSpec(**m) for m in state["models"]}
    have = {(m.name, m.version) for m in registry.models()}
    for key in sorted(set(wanted) - have):
        await registry.load(wanted[key], make_current=state["current"].get(key[0]) == key[1])
    for name, version in state["current"].items():
        if (name, version) in wanted and registry.current(name) != version:
            registry.set_current(name, version)
    for name, version in sorted(have - set(wanted)):
        await registry.remove(name, version)
    registry.default = state.get("default") or registry.default
