"""Keras 3 (TensorFlow backend) twins of a few zoo models, behind the ``keras`` extra.

Nothing here imports Keras at import time: ``import_keras()`` does, the first time a Keras model
is built or loaded, after pointing ``KERAS_BACKEND`` at TensorFlow (Keras reads the variable once,
when it is first imported, so it must be set before that and never by ``import cnnkit``).
"""
from __future__ import annotations

import os
import sys
from types import ModuleType

from cnnkit.errors import CnnkitError

EXTRA = 'pip install "cnnkit[keras]"'


def import_keras() -> ModuleType:
    """Keras on the TensorFlow backend, or a one-line CnnkitError naming the extra."""
    if "keras" not in sys.modules:
        os.environ["KERAS_BACKEND"] = "tensorflow"
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's start-up banner is not for users
    try:
        # Triton's native library (shipped with CUDA builds of torch, imported lazily by torch's
        # compiler stack: the ONNX exporter, captum) crashes the process if it loads after
        # TensorFlow's; loading it first is safe.
        import triton  # noqa: F401
    except ImportError:
        pass
    try:
        import keras
        import tensorflow  # noqa: F401 - the backend must be importable too
    except ImportError:
        raise CnnkitError(f"--framework keras needs Keras and TensorFlow: {EXTRA}") from None
    if keras.backend.backend() != "tensorflow":
        raise CnnkitError(f"Keras was already imported with the {keras.backend.backend()!r} backend; "
                          "cnnkit's Keras path needs KERAS_BACKEND=tensorflow")
    return keras
