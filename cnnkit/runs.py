"""The versioned run store: ``runs/NAME/vN/``, one new version per training, never overwritten.

A version holds the resolved config, the weights (safetensors), what is needed to rebuild the
model with no flags (model.json), history, metrics, environment, data identity, and the last
checkpoint. Versions are allocated with ``mkdir`` (atomic, so concurrent trainings never share
one) and every file is written atomically.
"""
from __future__ import annotations

import json
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from cnnkit.config import runs_root
from cnnkit.errors import CnnkitError
from cnnkit.io import read_json, write_atomic, write_json, write_text

_VERSION = re.compile(r"^v(\d+)$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
CHECKPOINT = "checkpoints/last.pt"


def slug(label: str, fallback: str) -> str:
    """``label`` made into a valid run or study name (runs of other characters become one '-')."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", label).strip("-._") or fallback


def check_name(name: str) -> str:
    if not _NAME.match(name):
        raise CnnkitError(f"run name {name!r} must be letters, digits, '.', '_' or '-' (and not start with one of the last three)")
    return name


@dataclass(frozen=True)
class RunDir:
    """One version of a run on disk."""

    path: Path
    name: str
    version: int

    @property
    def ref(self) -> str:
        return f"{self.name}:v{self.version}"

    def file(self, rel: str) -> Path:
        return self.path / rel

    def read(self, rel: str, default: Any = None) -> Any:
        p = self.path / rel
        return read_json(p) if p.is_file() else default

    def write(self, rel: str, obj: Any) -> None:
        write_json(self.path / rel, obj)

    def status(self) -> dict[str, Any]:
        return self.read("status.json", {"state": "unknown"})

    def set_status(self, state: str, **extra: Any) -> None:
        current = self.status() if self.file("status.json").is_file() else {}
        self.write("status.json", {**current, "state": state, "updated": _now(), **extra})

    def save_weights(self, model: nn.Module, spec: dict[str, Any]) -> None:
        """Weights as safetensors; the model spec rides in the header so the file stands alone."""
        tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
        write_atomic(self.file("model.safetensors"), lambda p: save_file(tensors, str(p), metadata={"cnnkit": json.dumps(spec)}))
        self.write("model.json", spec)

    @property
    def weights_file(self) -> Path:
        """The file holding the weights: model.keras for a Keras run, else model.safetensors."""
        keras = self.file("model.keras")
        return keras if keras.is_file() else self.file("model.safetensors")

    def load_weights(self) -> dict[str, torch.Tensor]:
        if not self.file("model.safetensors").is_file():
            raise CnnkitError(f"run {self.ref} has no weights (state: {self.status().get('state')}); it did not finish")
        return load_file(str(self.file("model.safetensors")))

    def save_checkpoint(self, state: dict[str, Any]) -> None:
        write_atomic(self.file(CHECKPOINT), lambda p: torch.save(state, p))
        self.set_status("running", epoch=int(state["epoch"]) + 1)

    def load_checkpoint(self) -> dict[str, Any] | None:
        p = self.file(CHECKPOINT)
        # weights_only: a checkpoint is data, never code, even one from someone else's disk.
        return torch.load(p, map_location="cpu", weights_only=True) if p.is_file() else None

    def save_config(self, config: dict[str, Any]) -> None:
        import yaml

        write_text(self.file("config.yaml"), yaml.safe_dump(config, sort_keys=False))

    def load_config(self) -> dict[str, Any]:
        import yaml

        p = self.file("config.yaml")
        if not p.is_file():
            raise CnnkitError(f"run {self.ref} has no config.yaml; it is not a cnnkit run")
        return yaml.safe_load(p.read_text()) or {}

    def summary(self) -> dict[str, Any]:
        """The fields ``runs list --json`` promises: name, version, created, model, data, metrics."""
        spec, data, status = self.read("model.json", {}), self.read("data.json", {}), self.status()
        return {
            "name": self.name,
            "version": self.version,
            "ref": self.ref,
            "created": status.get("created"),
            "state": status.get("state"),
            "model": spec.get("name"),
            "data": data.get("name"),
            "metrics": self.read("metrics.json", {}),
            "path": str(self.path),
        }


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


class RunStore:
    """All runs under one root directory."""

    def __init__(self, root: str | Path | None = None) -> None:
        self.root = runs_root(str(root) if root is not None else None)

    def versions(self, name: str) -> list[int]:
        folder = self.root / name
        if not folder.is_dir():
            return []
        return sorted(int(m.group(1)) for p in folder.iterdir() if p.is_dir() and (m := _VERSION.match(p.name)))

    def create(self, name: str) -> RunDir:
        """Allocate the next version; ``mkdir`` fails if another process took it, so we retry."""
        check_name(name)
        (self.root / name).mkdir(parents=True, exist_ok=True)
        version = (self.versions(name) or [0])[-1] + 1
        while True:
            path = self.root / name / f"v{version}"
            try:
                path.mkdir()
            except FileExistsError:
                version += 1
                continue
            run = RunDir(path, name, version)
            run.set_status("created", created=_now(), pid=os.getpid())
            return run

    def get(self, ref: str) -> RunDir:
        """``NAME`` (latest version), ``NAME:vN`` / ``NAME:N``, a path to a version folder, or a Hub
        folder (a path, or ``hf://OWNER/REPO[@REV]``; see cnnkit.hubfolder)."""
        as_path = Path(ref)
        if ref.startswith("hf://") or (as_path / "config.json").is_file():
            from cnnkit.hubfolder import resolve

            hub = resolve(ref)
            if hub is not None:
                return hub
        if (as_path / "status.json").is_file() or (as_path / "model.json").is_file():
            parent = as_path.resolve()
            m = _VERSION.match(parent.name)
            return RunDir(as_path, parent.parent.name, int(m.group(1)) if m else 0)
        name, _, ver = ref.partition(":")
        versions = self.versions(name) if _NAME.match(name) else []
        if not versions:
            known = ", ".join(self.names()) or "none"
            raise CnnkitError(f"no run named {name!r} in {self.root} (runs: {known})")
        if not ver:
            return RunDir(self.root / name / f"v{versions[-1]}", name, versions[-1])
        m = re.match(r"^v?(\d+)$", ver)
        if not m or int(m.group(1)) not in versions:
            raise CnnkitError(f"run {name!r} has no version {ver!r} (versions: {', '.join(f'v{v}' for v in versions)})")
        return RunDir(self.root / name / f"v{int(m.group(1))}", name, int(m.group(1)))

    def names(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if p.is_dir() and self.versions(p.name))

    def all(self) -> list[RunDir]:
        return [RunDir(self.root / n / f"v{v}", n, v) for n in self.names() for v in self.versions(n)]


@dataclass
class LoadedRun:
    """A run ready to use: the model in eval mode on ``device``, and what it was made from."""

    run: RunDir
    model: nn.Module
    spec: dict[str, Any]  # model.json: builder name/kwargs, classes, preprocessing
    config: dict[str, Any]

    @property
    def classes(self) -> list[str]:
        return list(self.spec["classes"])

    @property
    def ref(self) -> str:
        return self.run.ref


def build_from_spec(spec: dict[str, Any]) -> nn.Module:
    """Rebuild the architecture from model.json, without weights (no download for tv:/timm:)."""
    from cnnkit.models import build_model

    return build_model(spec["name"], spec["num_classes"], spec["in_channels"], spec["image_size"], pretrained=False,
                       **spec.get("kwargs", {}))


def load(ref: str, runs_dir: str | Path | None = None, device: str | torch.device = "cpu") -> LoadedRun:
    """``cnnkit.load("mnist-cnn:v2")``: the run's model with its weights, in eval mode."""
    run = RunStore(runs_dir).get(ref)
    spec = run.read("model.json")
    if spec is None:
        raise CnnkitError(f"{run.path} has no model.json; it is not a cnnkit run")
    if spec.get("framework") == "keras":  # a Keras run: a torch-callable wrapper around model.keras
        from cnnkit.models.keras.module import load_keras_module

        model: nn.Module = load_keras_module(run.path, spec)
    else:
        model = build_from_spec(spec)
        model.load_state_dict(run.load_weights())
    model.to(device).eval()
    return LoadedRun(run, model, spec, run.load_config())
