"""A Hugging Face Hub folder read as a run: ``cnnkit.load(FOLDER)`` and ``cnnkit.load("hf://OWNER/REPO[@REV]")``.

The folder (written by ``cnnkit.export.hf.write_hub_folder``) holds ``model.safetensors`` and a
timm-style ``config.json``: ``architecture``, ``num_classes``, ``label_names``, ``model_args`` and
``pretrained_cfg`` (``input_size`` [C, S, S], ``mean``, ``std``) in timm's own field names, plus a
``cnnkit`` section with what timm has no name for (the preprocessing preset, the training config,
the data identity, the metrics). This module turns that back into the run layout the rest of cnnkit
reads (``model.json``, ``config.yaml``, ``data.json`` ...), so ``predict``, ``eval`` and ``serve``
accept a folder as they accept a run.

The folder itself is never written to (it may be the Hub cache, or a folder about to be pushed):
evaluation caches and exports of a folder go to a work directory under the user's cache.
"""
from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cnnkit.errors import CnnkitError
from cnnkit.io import read_json
from cnnkit.runs import RunDir, slug

HF_PREFIX = "hf://"
CONFIG_FILE, WEIGHTS_FILE, CARD_FILE = "config.json", "model.safetensors", "README.md"
LIBRARY = "cnnkit"
FORMAT = 1  # bump when config.json's cnnkit section changes meaning
# Files that live in the folder itself; everything else a run would hold goes to the work dir.
_FOLDER_FILES = frozenset({CONFIG_FILE, WEIGHTS_FILE, CARD_FILE, "model.onnx", "curves.png", "confusion.png"})
_REPO = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")


def cache_root() -> Path:
    """``$CNNKIT_CACHE``, else ``$XDG_CACHE_HOME/cnnkit``, else ``~/.cache/cnnkit``."""
    explicit = os.environ.get("CNNKIT_CACHE")
    if explicit:
        return Path(explicit)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "cnnkit"


def is_hub_folder(path: str | Path) -> bool:
    """A folder with a ``config.json`` whose ``library_name`` is cnnkit (and not a run version)."""
    p = Path(path)
    cfg = p / CONFIG_FILE
    if not cfg.is_file() or (p / "model.json").is_file():
        return False
    try:
        return read_json(cfg).get("library_name") == LIBRARY
    except (ValueError, OSError, AttributeError):
        return False


def spec_from_config(cfg: dict[str, Any]) -> dict[str, Any]:
    """config.json -> the run's model.json (the inverse of ``cnnkit.export.hf.hub_config``)."""
    try:
        pcfg, extra = cfg["pretrained_cfg"], cfg["cnnkit"]
        channels, _, size = (int(v) for v in pcfg["input_size"])
        return {
            "name": cfg["architecture"], "kwargs": dict(cfg.get("model_args") or {}), "num_classes": int(cfg["num_classes"]),
            "in_channels": channels, "image_size": size, "classes": list(cfg["label_names"]),
            "preprocess": {"kind": extra["preprocess"]["kind"], "channels": channels,
                           "stored_size": int(extra["preprocess"]["stored_size"]), "input_size": size,
                           "resize": extra["preprocess"]["resize"], "mean": list(pcfg["mean"]), "std": list(pcfg["std"])},
        }
    except (KeyError, TypeError, ValueError) as exc:
        raise CnnkitError(f"config.json is not a cnnkit Hub config (missing or bad {exc})") from None


@dataclass(frozen=True)
class HubRunDir(RunDir):
    """A Hub folder seen as a finished run version (read-only; writes go to ``work``)."""

    source: str = ""  # what the user named: the folder path or hf://OWNER/REPO@REV
    work: Path = Path()

    @property
    def ref(self) -> str:
        return self.source

    def _config(self) -> dict[str, Any]:
        return read_json(self.path / CONFIG_FILE)

    def file(self, rel: str) -> Path:
        return self.path / rel if rel in _FOLDER_FILES else self.work / rel

    def read(self, rel: str, default: Any = None) -> Any:
        extra = self._config().get("cnnkit", {})
        virtual = {"model.json": lambda: spec_from_config(self._config()), "data.json": lambda: extra.get("data"),
                   "metrics.json": lambda: extra.get("metrics"), "history.json": lambda: extra.get("history"),
                   "status.json": lambda: {"state": "finished", "source": self.source}}
        if rel in virtual:
            value = virtual[rel]()
            return default if value is None else value
        p = self.file(rel)
        return read_json(p) if p.is_file() else default

    def write(self, rel: str, obj: Any) -> None:
        from cnnkit.io import write_json

        write_json(self.file(rel), obj)

    def set_status(self, state: str, **extra: Any) -> None:
        raise CnnkitError(f"{self.source} is a Hub folder, not a run being trained")

    def load_config(self) -> dict[str, Any]:
        config = self._config().get("cnnkit", {}).get("config")
        if not isinstance(config, dict):
            raise CnnkitError(f"{self.source}: config.json has no cnnkit.config (the training config)")
        return config


def _work_dir(folder: Path) -> Path:
    """Per folder and weights file (path, size, mtime), so a changed folder never reuses stale caches."""
    st = (folder / WEIGHTS_FILE).stat()
    key = hashlib.sha256(f"{folder.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()[:16]
    return cache_root() / "folders" / key


def open_folder(path: str | Path, source: str | None = None) -> HubRunDir:
    """A Hub folder as a run; CnnkitError naming what is missing when it is not one."""
    p = Path(path)
    if not (p / CONFIG_FILE).is_file():
        raise CnnkitError(f"{source or p} is not a cnnkit Hub folder (no config.json)")
    cfg = read_json(p / CONFIG_FILE)
    if not isinstance(cfg, dict) or cfg.get("library_name") != LIBRARY:
        raise CnnkitError(f"{source or p} is not a cnnkit Hub folder (config.json has no library_name: cnnkit)")
    if int(cfg.get("cnnkit", {}).get("format", 0)) > FORMAT:
        raise CnnkitError(f"{source or p} was written by a newer cnnkit (folder format {cfg['cnnkit']['format']})")
    if not (p / WEIGHTS_FILE).is_file():
        raise CnnkitError(f"{source or p} has no {WEIGHTS_FILE}")
    spec_from_config(cfg)  # validate now: one line, not a KeyError later
    name = slug(str(cfg["cnnkit"].get("run", "hub")).split(":")[0], "hub")
    version = int(cfg["cnnkit"].get("version", 0) or 0)
    return HubRunDir(p, name, version, source=source or str(p), work=_work_dir(p))


def parse_hf_ref(ref: str) -> tuple[str, str | None]:
    """``hf://OWNER/REPO[@REVISION]`` -> (repo id, revision or None)."""
    body = ref[len(HF_PREFIX):]
    repo, _, revision = body.partition("@")
    if not _REPO.match(repo) or (revision == "" and "@" in body):
        raise CnnkitError(f"{ref!r} is not hf://OWNER/REPO[@REVISION]")
    return repo, revision or None


def download(ref: str) -> Path:
    """The folder of ``hf://OWNER/REPO[@REV]`` in huggingface_hub's cache (downloaded when missing)."""
    repo, revision = parse_hf_ref(ref)
    try:
        import huggingface_hub as hf
        from huggingface_hub import errors
    except ImportError:
        raise CnnkitError('loading hf:// models needs huggingface_hub: pip install "cnnkit[hub]"') from None
    from cnnkit import __version__

    try:
        return Path(hf.snapshot_download(repo, revision=revision, library_name=LIBRARY, library_version=__version__))
    except errors.RepositoryNotFoundError:
        raise CnnkitError(f"{ref}: no such model repository on {hf.constants.ENDPOINT} (or it is private: log in "
                          "or set HF_TOKEN)") from None
    except errors.RevisionNotFoundError:
        raise CnnkitError(f"{ref}: the repository has no revision {revision!r}") from None
    except errors.LocalEntryNotFoundError:
        raise CnnkitError(f"{ref} is not in the local Hugging Face cache and the Hub cannot be reached "
                          "(offline); connect once to download it") from None
    except errors.HfHubHTTPError as exc:
        raise CnnkitError(f"{ref}: the Hub answered {_status(exc)}") from None


def _status(exc: Exception) -> str:
    response = getattr(exc, "response", None)
    code = getattr(response, "status_code", None)
    return f"HTTP {code}" if code else str(exc).splitlines()[0]


def resolve(ref: str) -> HubRunDir | None:
    """The Hub folder ``ref`` names (hf://... or a folder path), or None when it names something else."""
    if ref.startswith(HF_PREFIX):
        return open_folder(download(ref), source=ref)
    p = Path(ref)
    if (p / CONFIG_FILE).is_file() and not (p / "model.json").is_file():
        return open_folder(p)  # a Hub folder, or one line saying why it is not one
    return None
