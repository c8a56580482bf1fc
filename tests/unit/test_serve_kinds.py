"""Statuses come from the kind of error raised, not its wording; worker counts from the cores allowed."""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cnnkit.data.imageio import ImageDecodeError, ImageTooLarge, decode_image
from cnnkit.serve import service
from cnnkit.serve.cores import auto_workers, available_cores
from cnnkit.serve.limits import ApiError
from cnnkit.serve.settings import Limits


def _png(side: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.zeros((side, side), dtype=np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def test_decoder_marks_size_refusals():
    with pytest.raises(ImageTooLarge):
        decode_image(_png(64), max_pixels=100)
    with pytest.raises(ImageDecodeError) as info:
        decode_image(b"not an image")
    assert not isinstance(info.value, ImageTooLarge)


class _Predictor:
    def __init__(self, exc: Exception) -> None:
        self.exc = exc

    def prepare(self, *_: object, **__: object) -> None:
        raise self.exc


class _Model:
    def __init__(self, exc: Exception) -> None:
        self.predictor = _Predictor(exc)


@pytest.mark.parametrize("exc, status", [
    (ImageTooLarge("image data", "some wording the server must not depend on"), 413),
    (ImageDecodeError("image data", "refused: over the limit and a decompression bomb (words only)"), 422),
])
def test_status_follows_the_error_type_not_its_message(exc, status):
    with pytest.raises(ApiError) as info:
        service.prepare(_Model(exc), [b"x"], "auto", Limits())
    assert info.value.status == status and info.value.kind == "bad_image"


def test_cores_follow_the_cgroup_quota(tmp_path: Path):
    (tmp_path / "cpu.max").write_text("100000 100000\n")  # docker --cpus 1
    assert available_cores(tmp_path)[0] == 1
    (tmp_path / "cpu.max").write_text("max 100000\n")
    cores, how = available_cores(tmp_path)
    import os

    assert cores == len(os.sched_getaffinity(0)) and "quota none" in how
    workers, threads, _ = auto_workers(tmp_path)
    assert (workers, threads) == (cores, 1)
