"""``cnnkit train --framework keras``: the run-level flow of ``cnnkit.training.run.train_run``,
with a Keras model and loop; the data, the run folder and its records are the same.

The run folder differs only where the framework does: ``model.keras`` instead of
``model.safetensors``, ``framework: keras`` in model.json (and ``train.framework`` in config.yaml),
TensorFlow and Keras versions in env.json, and ``checkpoints/last-keras.safetensors``.
"""
from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cnnkit.config import Config
from cnnkit.data.sources import load_dataset
from cnnkit.data.transforms import pipelines_for
from cnnkit.engine import make_engine, seed_everything
from cnnkit.errors import CnnkitError
from cnnkit.models.keras.module import WEIGHTS
from cnnkit.runs import RunDir
from cnnkit.training.keras.options import check_keras_options
from cnnkit.training.loop import Callback
from cnnkit.training.run import TrainOutcome, _open_run, _store_diagnosis, environment, final_metrics, model_spec, preprocessing


def _setup_tensorflow(cfg: Config) -> Any:
    from cnnkit.models.keras import import_keras

    keras = import_keras()
    import tensorflow as tf

    if cfg.train.threads:
        try:
            tf.config.threading.set_intra_op_parallelism_threads(cfg.train.threads)
        except RuntimeError:  # TensorFlow already started in this process: keep its pool
            pass
    if cfg.train.deterministic:
        tf.config.experimental.enable_op_determinism()
    keras.utils.set_random_seed(cfg.train.seed)  # Python, NumPy and TensorFlow: the init is part of the run
    return keras


def keras_environment(engine: Any) -> dict[str, Any]:
    import keras
    import tensorflow as tf

    return {**environment(engine), "framework": "keras", "tensorflow": tf.__version__, "keras": keras.__version__}


def save_keras_model(run: RunDir, model: Any) -> None:
    """``model.keras``, atomically (Keras insists on the suffix, so the temp file keeps it)."""
    fd, tmp = tempfile.mkstemp(dir=run.path, prefix=".model.", suffix=".keras")
    os.close(fd)
    try:
        model.save(tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, run.file(WEIGHTS))
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def train_keras(cfg: Config, run: RunDir | None = None, callbacks: Sequence[Callback] = (),
                on_created: Any = None) -> TrainOutcome:
    """Train a new Keras version (or continue ``run`` from its checkpoint); refusals come first."""
    from cnnkit.data.checks import require_usable
    from cnnkit.models.keras.models import build_keras_model
    from cnnkit.training.keras.loop import CHECKPOINT, fit_keras

    check_keras_options(cfg)
    _setup_tensorflow(cfg)
    t = cfg.train
    engine = make_engine("cpu", "off", "off", t.threads)
    ds = load_dataset(cfg.data, t.seed, t.progress)
    require_usable(ds)
    pre = preprocessing(cfg, ds)
    spec = {**model_spec(cfg, ds, pre), "framework": "keras"}
    seed_everything(t.seed, t.deterministic)
    model = build_keras_model(spec)
    if run is None:
        run = _open_run(cfg, ds, spec, engine)
        run.write("env.json", keras_environment(engine))
    elif run.read("data.json", {}).get("checksum") not in (None, ds.checksum):
        raise CnnkitError(f"the data of {run.ref} has changed since it started (checksum differs); cannot resume")
    if on_created is not None:
        on_created(run)
    try:
        run.set_status("running", started=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
        pipes = pipelines_for(pre, cfg.data.augment, False)
        t0 = time.perf_counter()
        def after_epoch(st: Any) -> None:
            run.write("history.json", st.history)
            run.set_status("running", epoch=st.epoch + 1)

        result = fit_keras(model, spec, ds.train, ds.val, pipes, t, engine, ds.num_classes, callbacks,
                           Path(run.file(CHECKPOINT)), after_epoch)
        metrics = final_metrics(result, ds, pipes[1], cfg, engine, time.perf_counter() - t0)
        save_keras_model(run, model)
        run.write("model.json", spec)
        run.write("history.json", result.history)
        run.write("metrics.json", metrics)
        _store_diagnosis(run, result.history)
        run.set_status("finished", finished=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    except BaseException as exc:
        run.set_status("interrupted" if isinstance(exc, KeyboardInterrupt) else "failed",
                       error=f"{type(exc).__name__}: {exc}"[:500])
        raise
    return TrainOutcome(run, metrics, result.history)
