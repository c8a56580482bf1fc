"""What ``cnnkit serve`` is told: typed, defaulted, and passed whole to every worker process."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from cnnkit.errors import CnnkitError

Backend = Literal["torch", "onnx", "onnx-int8"]
BACKENDS = ("torch", "onnx", "onnx-int8")
# How /predict and /explain preprocess: the run's default, force the digit photo steps, or none.
Preprocess = Literal["auto", "digits", "plain"]
# Read by the CLI (the env edge) into ServeSettings.admin_token; the app never reads the environment.
ADMIN_ENV = "CNNKIT_ADMIN_TOKEN"


@dataclass(frozen=True)
class Limits:
    """What one request may be; anything beyond is refused with a 4xx that says which limit."""

    max_request_bytes: int = 20 * 1024 * 1024  # whole body, after any Content-Encoding is undone
    max_pixels: int = 40_000_000  # per image, read from the header before decoding (bombs)
    max_images: int = 64  # images (or tensor rows) in one request
    timeout_s: float = 30.0  # from the request's arrival to its answer
    max_top_k: int = 1000


@dataclass(frozen=True)
class ModelSpec:
    """One served model: ``name`` and ``version`` address it; ``ref`` is what RunStore.get takes."""

    name: str
    version: int
    ref: str  # a path to the run version folder, resolved before workers start
    onnx_path: str | None = None  # checked export, when the backend is onnx or onnx-int8


@dataclass(frozen=True)
class Monitoring:
    """Prediction logs and drift scores (cnnkit.serve.monitoring; issue 16)."""

    log_dir: str | None = None  # --log-predictions DIR; None: no log
    log_inputs: bool = False  # --log-inputs: a PNG thumbnail of the model's input in each line
    max_file_mb: float = 16.0  # one log file, before the next is started
    max_total_mb: float = 256.0  # all log files of the folder together; the oldest go first
    drift: bool = True  # drift scores for runs that have a reference.json
    drift_window: int = 500  # recent images compared with the reference
    drift_threshold: float = 0.25  # PSI that turns the alert on (off again below 0.8 x this)

    def __post_init__(self) -> None:
        if self.drift_window < 50 or not self.drift_threshold > 0:
            raise CnnkitError("--drift-window must be at least 50 and --drift-threshold positive")
        if not 0 < self.max_file_mb <= self.max_total_mb:
            raise CnnkitError("--log-max-file-mb must be positive and at most --log-max-total-mb")


@dataclass(frozen=True)
class ServeSettings:
    models: tuple[ModelSpec, ...]
    backend: Backend = "torch"
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1
    threads: int = 1  # intra-op threads per worker for the forward pass
    max_batch: int = 32  # images in one forward pass
    max_wait_ms: float = 2.0  # how long a batch may wait to fill up once its first image arrived
    # Images waiting per model per worker; beyond, 503 + Retry-After. Small on purpose: a queue
    # of 2 batches is ~2 forward passes of wait, so under overload accepted requests keep a
    # bounded latency and the rest are shed at once instead of timing out (issue 17).
    max_queue: int = 64
    digits: Literal["auto", "on", "off"] = "auto"  # digit photo preprocessing default
    limits: Limits = field(default_factory=Limits)
    state_file: str | None = None  # shared by workers so an admin load reaches all of them
    data_dir: str | None = None  # for checking ONNX exports of versions loaded while serving
    runs_dir: str | None = None
    admin_token: str | None = field(default=None, repr=False)  # None: the admin API is off
    monitoring: Monitoring = field(default_factory=Monitoring)
    # Where the Gradio app is mounted (cnnkit serve --ui gradio: /gradio; cnnkit gradio: /); None: no Gradio.
    gradio_path: str | None = None

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise CnnkitError(f"--backend must be one of {', '.join(BACKENDS)}, got {self.backend!r}")
        for name in ("workers", "threads", "max_batch", "max_queue"):
            if getattr(self, name) < 1:
                raise CnnkitError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        if self.max_wait_ms < 0:
            raise CnnkitError(f"--max-wait-ms must be >= 0, got {self.max_wait_ms}")
        if not 0 < self.port < 65536:
            raise CnnkitError(f"--port must be 1-65535, got {self.port}")
        if self.gradio_path is not None and self.workers != 1:  # its queue and sessions live in one process
            raise CnnkitError(f"the Gradio app runs in one worker process; drop --workers {self.workers}")

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> ServeSettings:
        raw: dict[str, Any] = json.loads(text)
        raw["models"] = tuple(ModelSpec(**m) for m in raw["models"])
        raw["limits"] = Limits(**raw["limits"])
        raw["monitoring"] = Monitoring(**raw.get("monitoring", {}))
        return cls(**raw)
