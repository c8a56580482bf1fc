"""The Keras twins (cnnkit[keras]): same layers, same parameters, same logits as PyTorch; the loss
and the option refusals of the Keras training path."""
from __future__ import annotations

import importlib.util
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from cnnkit.config import Config
from cnnkit.errors import CnnkitError
from cnnkit.models import build_model, resolved_options

if importlib.util.find_spec("tensorflow") is None or importlib.util.find_spec("keras") is None:
    pytest.skip("the keras extra is not installed", allow_module_level=True)


def _spec(name: str, size: int, kwargs: dict) -> dict:
    return {"name": name, "kwargs": resolved_options(name, kwargs), "num_classes": 10, "in_channels": 1,
            "image_size": size}


@pytest.fixture(scope="module")
def test_images(data_dir):
    from cnnkit.config import DataConfig
    from cnnkit.data.sources import load_dataset

    ds = load_dataset(DataConfig(data_dir=str(data_dir), limit=2000), 0)
    x = ds.test.images[:64].float() / 255.0
    return (x - x.mean()) / x.std()  # normalized real digits (N, 1, 28, 28)


CASES = [
    ("baseline-cnn", 28, {}),
    ("cnn", 28, {}),
    ("cnn", 28, {"width": 8, "convs": [1, 3, 2], "dropout": 0.1}),
    ("lenet5", 28, {}),
    ("lenet5", 40, {}),  # larger than LeNet's 32: the adaptive pool
]


@pytest.mark.parametrize(("name", "size", "kwargs"), CASES, ids=[f"{n}-{s}-{k}" for n, s, k in CASES])
def test_twins_have_the_same_parameters_and_logits(name, size, kwargs, test_images):
    from cnnkit.models.keras.convert import keras_to_state_dict, load_state_dict_into_keras
    from cnnkit.models.keras.models import build_keras_model

    torch.manual_seed(0)
    net = build_model(name, 10, 1, size, **kwargs).eval()
    for m in net.modules():  # non-trivial BatchNorm statistics, so the copy of those is tested too
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    km = build_keras_model(_spec(name, size, kwargs))
    assert sum(int(np.prod(v.shape)) for v in km.trainable_weights) == sum(p.numel() for p in net.parameters())
    load_state_dict_into_keras(km, net.state_dict())
    x = test_images if size == 28 else F.interpolate(test_images, size=(size, size), mode="bilinear")
    with torch.no_grad():
        expected = net(x).numpy()
    got = np.asarray(km(x.permute(0, 2, 3, 1).numpy(), training=False))
    assert np.abs(got - expected).max() < 1e-4
    assert (got.argmax(1) == expected.argmax(1)).all()
    back = keras_to_state_dict(km)
    assert set(back) == set(net.state_dict())
    assert all(torch.equal(back[k].float(), v.float()) for k, v in net.state_dict().items() if "num_batches" not in k)


@pytest.mark.parametrize(("smoothing", "weighted"), [(0.0, False), (0.1, False), (0.0, True), (0.2, True)])
def test_loss_is_pytorchs_cross_entropy(smoothing, weighted):
    from cnnkit.models.keras import import_keras

    import_keras()  # before TensorFlow itself: the import order matters (see import_keras)
    import tensorflow as tf

    from cnnkit.training.keras.options import torch_cross_entropy

    g = torch.Generator().manual_seed(1)
    logits, labels = torch.randn(32, 5, generator=g) * 3, torch.randint(0, 5, (32,), generator=g)
    weight = torch.rand(5, generator=g) + 0.5 if weighted else torch.ones(5)
    expected = F.cross_entropy(logits, labels, weight=weight, label_smoothing=smoothing).item()
    got = float(torch_cross_entropy(tf, tf.constant(logits.numpy()), tf.constant(labels.numpy()),
                                    tf.constant(weight.numpy()), smoothing))
    assert got == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize(("raw", "named"), [
    ({"model": {"name": "resnet18"}}, "not available for keras; keras models: baseline-cnn, cnn, lenet5"),
    ({"train": {"ema": 0.99}}, "train.ema"),
    ({"train": {"compile": True}}, "train.compile"),
    ({"train": {"amp": "bf16"}}, "train.amp"),
    ({"train": {"lookahead": True}}, "train.lookahead"),
    ({"model": {"init": "some-run"}}, "model.init"),
])
def test_options_keras_cannot_honour_are_refused_by_name(raw, named):
    from cnnkit.training.keras.options import check_keras_options

    cfg = Config.from_dict({**raw, "train": {**raw.get("train", {}), "framework": "keras"}})
    with pytest.raises(CnnkitError, match=named.replace(".", r"\.")):
        check_keras_options(cfg)


def test_honoured_options_pass():
    from cnnkit.training.keras.options import check_keras_options

    check_keras_options(Config.from_dict({"model": {"name": "lenet5"}, "train": {
        "framework": "keras", "optimizer": "adamw", "lr": 0.01, "schedule": "cosine", "warmup_epochs": 1,
        "label_smoothing": 0.1, "class_weights": "auto", "early_stopping": 2, "grad_clip": 1.0, "momentum": 0.8}}))


def test_without_the_extra_one_line_names_it(monkeypatch):
    from cnnkit.models.keras import import_keras

    monkeypatch.setitem(sys.modules, "keras", None)  # "import keras" now raises ImportError
    with pytest.raises(CnnkitError, match=r'pip install "cnnkit\[keras\]"'):
        import_keras()


def test_importing_cnnkit_leaves_keras_alone():
    code = ("import os, sys, cnnkit, cnnkit.runs, cnnkit.training.run, cnnkit.explain, cnnkit.predict; "
            "assert 'keras' not in sys.modules and 'tensorflow' not in sys.modules, 'imported'; "
            "assert 'KERAS_BACKEND' not in os.environ, 'env set'")
    env = {k: v for k, v in __import__("os").environ.items() if k != "KERAS_BACKEND"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr[-500:]
