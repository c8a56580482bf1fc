"""Prediction logs: one JSON line per answered image, written by a thread, off the request path.

Requests put plain dicts on a bounded queue (``put_nowait``: a request never waits for the
disk); one writer thread turns them into lines, appends them to
``DIR/predictions-<start time>-<pid>-<n>.jsonl`` and flushes whenever the queue runs empty. A
file past ``max_file_bytes`` is closed and a new one started; beyond ``max_total_bytes`` in all,
the oldest files of the folder are deleted. ``close()`` writes everything queued before it
returns (clean shutdown loses no line). Each worker process writes its own files (the pid in
the name), so lines never interleave. If the queue is full (the disk far slower than the
traffic) a line is dropped and counted, rather than slowing answers down.
"""
from __future__ import annotations

import base64
import io
import json
import os
import queue
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from cnnkit.errors import CnnkitError

PATTERN = "predictions-*.jsonl"
_STOP = object()


def check_writable(folder: str | Path) -> Path:
    """Create ``folder`` if needed and prove it takes files; a CnnkitError naming it otherwise."""
    path = Path(folder)
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise CnnkitError(f"--log-predictions {folder}: the folder is not writable ({exc.strerror or exc})") from None
    return path


def thumbnail(array: np.ndarray) -> str:
    """What the model saw, uint8 (C, S, S), as a base64 PNG (a 28x28 digit is ~300 bytes)."""
    from PIL import Image

    img = array[0] if array.shape[0] == 1 else array.transpose(1, 2, 0)
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(img)).save(buf, "PNG")
    return base64.b64encode(buf.getvalue()).decode()


class PredictionLog:
    def __init__(self, folder: str | Path, max_file_bytes: int = 16 << 20, max_total_bytes: int = 256 << 20,
                 max_queue: int = 10_000, on_drop: Callable[[], None] | None = None) -> None:
        self.folder = check_writable(folder)
        self.max_file_bytes, self.max_total_bytes = max_file_bytes, max_total_bytes
        self._queue: queue.Queue[Any] = queue.Queue(max_queue)
        self._on_drop = on_drop
        self.dropped = 0
        self._stamp, self._count = time.strftime("%Y%m%dT%H%M%S"), 0
        self._file: Any = None
        self._thread = threading.Thread(target=self._run, name="cnnkit-predlog", daemon=True)
        self._thread.start()

    def put(self, record: dict[str, Any]) -> None:
        """Queue one line (a dict; an ``_input`` array becomes its ``thumbnail`` in the writer)."""
        try:
            self._queue.put_nowait(record)
        except queue.Full:
            self.dropped += 1
            if self._on_drop is not None:
                self._on_drop()

    def close(self) -> None:
        """Write what is queued, then stop (idempotent)."""
        if self._thread.is_alive():
            self._queue.put(_STOP)
            self._thread.join()

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                break
            self._write(item)
            if self._queue.empty() and self._file is not None:
                self._file.flush()
        if self._file is not None:
            self._file.close()

    def _write(self, record: dict[str, Any]) -> None:
        array = record.pop("_input", None)
        if array is not None:
            record["thumbnail"] = thumbnail(array)
        line = (json.dumps(record, separators=(",", ":")) + "\n").encode()
        if self._file is None or self._file.tell() + len(line) > self.max_file_bytes:
            self._rotate()
        self._file.write(line)

    def _rotate(self) -> None:
        if self._file is not None:
            self._file.close()
        self._count += 1
        name = f"predictions-{self._stamp}-{os.getpid()}-{self._count:05d}.jsonl"
        self._file = open(self.folder / name, "ab")  # held open across writes, closed in _run
        self._prune()

    def _prune(self) -> None:
        """Delete the oldest files until the folder's logs fit ``max_total_bytes`` (the open one stays)."""
        files = _oldest_first(self.folder)
        current = Path(self._file.name)
        total = sum(_stat(p)[1] for p in files)
        for path in files:
            if total <= self.max_total_bytes - self.max_file_bytes or path == current:
                break
            total -= _stat(path)[1]
            path.unlink(missing_ok=True)


def _stat(path: Path) -> tuple[float, int]:
    """(mtime, size); a file another worker just deleted counts as empty."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return 0.0, 0
    return st.st_mtime, st.st_size


def _oldest_first(folder: Path) -> list[Path]:
    return sorted(folder.glob(PATTERN), key=lambda p: (_stat(p)[0], p.name))


def read_lines(folder: str | Path) -> list[dict[str, Any]]:
    """Every logged line of a folder, oldest file first (``cnnkit monitor``); a torn last line is skipped."""
    out = []
    for path in _oldest_first(Path(folder)):
        with open(path, encoding="utf-8") as f:
            for line in f:
                try:
                    out.append(json.loads(line))
                except json.JSONDecodeError:
                    continue  # a line cut by a crash: the rest of the log is still worth reading
    return out
