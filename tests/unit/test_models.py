"""Every registered model, on tiny inputs: shape, NaN and backward checks (as timm's tests do).

Parametrized over model_names(), so a newly registered model is tested without editing this file.
External tv:/timm: models never touch the network: the caches point at empty temp folders,
huggingface_hub is put offline and torch.hub's downloader is cut off.
"""
from __future__ import annotations

import urllib.error

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cnnkit.errors import CnnkitError
from cnnkit.models import build_model, describe, model_names

# (in_channels, image_size, num_classes): MNIST-like and CIFAR-like, with an odd class count.
SHAPES = [(1, 28, 10), (3, 32, 7)]


def _check_forward_backward(model: nn.Module, in_channels: int, size: int, num_classes: int) -> None:
    torch.manual_seed(0)
    x = torch.randn(2, in_channels, size, size)  # batch 2: BatchNorm needs > 1 sample in train mode
    model.train()
    out = model(x)
    assert out.shape == (2, num_classes)
    assert torch.isfinite(out).all()
    out.logsumexp(dim=1).sum().backward()
    for name, param in model.named_parameters():
        if param.requires_grad:
            assert param.grad is not None, f"{name} got no gradient (unused layer?)"
            assert torch.isfinite(param.grad).all(), f"{name} has a non-finite gradient"
    model.eval()
    with torch.no_grad():
        assert model(x).shape == (2, num_classes)


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("name", model_names())
def test_every_model_trains_on_small_inputs(name: str, shape: tuple[int, int, int]) -> None:
    in_channels, size, num_classes = shape
    model = build_model(name, num_classes=num_classes, in_channels=in_channels, image_size=size)
    _check_forward_backward(model, in_channels, size, num_classes)


@pytest.mark.parametrize("name,size", [("baseline-cnn", 64), ("cnn", 100), ("lenet5", 64),
                                       ("resnet18", 64), ("vgg11", 64), ("alexnet", 40)])
def test_larger_inputs(name: str, size: int) -> None:
    model = build_model(name, num_classes=5, in_channels=3, image_size=size)
    _check_forward_backward(model, 3, size, 5)


@pytest.mark.parametrize("name", ["resnet18", "googlenet", "alexnet"])
def test_imagenet_stem_from_128px(name: str) -> None:
    """stem="auto" switches to the ImageNet stem, so a 128 px image costs what the original does."""
    model = build_model(name, num_classes=3, in_channels=3, image_size=128).eval()
    first_conv = next(m for m in model.modules() if isinstance(m, nn.Conv2d))
    assert first_conv.stride == (4, 4) if name == "alexnet" else (2, 2)
    with torch.no_grad():
        assert model(torch.randn(1, 3, 128, 128)).shape == (1, 3)


@pytest.mark.parametrize("name", model_names())
def test_every_model_has_a_one_line_description(name: str) -> None:
    text = describe(name)
    assert text and "\n" not in text and len(text) < 200


# ----------------------------------------------------------------------------- options

def test_cnn_width_option_scales_the_model() -> None:
    def count(**kw: object) -> int:
        return sum(p.numel() for p in build_model("cnn", 10, 1, 28, **kw).parameters())

    assert count(width=8) < count() < count(width=48)


def test_cnn_convs_option_sets_the_convs_per_stage_and_keeps_the_default_layer_names() -> None:
    def convs(model: nn.Module) -> list[int]:
        return [m.out_channels for m in model.modules() if isinstance(m, nn.Conv2d)]

    assert convs(build_model("cnn", 10, 1, 28, width=8, convs=[1, 2, 3])) == [8, 16, 16, 32, 32, 32]
    # Runs saved before the option existed must load into the default build unchanged.
    names = list(build_model("cnn", 10, 1, 28).state_dict())
    assert names[0] == "features.0.0.weight" and "features.6.0.weight" in names and "features.8.0.weight" not in names
    _check_forward_backward(build_model("cnn", 10, 3, 32, convs=(1, 1, 4)), 3, 32, 10)


def test_vgg_without_batch_norm() -> None:
    model = build_model("vgg11", 10, 1, 28, batch_norm=False, width=0.25)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    _check_forward_backward(model, 1, 28, 10)


def test_googlenet_aux_heads_leave_logits_in_aux_outputs() -> None:
    model = build_model("googlenet", 10, 3, 32, aux_logits=True).train()
    out = model(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, 10)
    assert [a.shape for a in model.aux_outputs] == [(2, 10), (2, 10)]
    model.eval()
    with torch.no_grad():
        model(torch.randn(2, 3, 32, 32))
    assert model.aux_outputs == []


def test_resnet_zero_init_residual_makes_blocks_start_as_identity() -> None:
    model = build_model("resnet18", 10, 1, 28, zero_init_residual=True)
    last_bns = [m.branch[-1][1] for m in model.modules() if hasattr(m, "branch")]
    assert last_bns and all(bool((bn.weight == 0).all()) for bn in last_bns)


@pytest.mark.parametrize("kwargs,match", [
    ({"widht": 8}, "no option 'widht'; its options: width, dropout, convs"),
    ({"dropout": 1.0}, "dropout must be in"),
    ({"width": 0}, "width must be a positive"),
    ({"convs": [2, 2]}, "convs must be three positive integers"),
    ({"convs": [2, 0, 1]}, "convs must be three positive integers"),
    ({"convs": "221"}, "convs must be three positive integers"),
])
def test_bad_options_are_cnnkit_errors(kwargs: dict, match: str) -> None:
    with pytest.raises(CnnkitError, match=match):
        build_model("cnn", 10, 1, 28, **kwargs)


@pytest.mark.parametrize("name,args", [("cnn", (0, 1, 28)), ("cnn", (10, 0, 28)), ("cnn", (10, 1, 0)),
                                       ("baseline-cnn", (10, 1, 8)), ("resnet18", (10, 1, 28.0))])
def test_bad_shapes_are_cnnkit_errors(name: str, args: tuple) -> None:
    with pytest.raises(CnnkitError):
        build_model(name, *args)


def test_bad_stem_is_a_cnnkit_error() -> None:
    with pytest.raises(CnnkitError, match="stem must be one of"):
        build_model("resnet18", 10, 1, 28, stem="tiny")


def test_pretrained_needs_an_external_model() -> None:
    with pytest.raises(CnnkitError, match="tv:NAME or timm:NAME"):
        build_model("resnet18", 10, 3, 32, pretrained=True)


# ----------------------------------------------------------------------------- LeNet-5

def test_lenet5_has_the_classic_parameter_count() -> None:
    # C1 6*(1*5*5)+6 = 156; C3 16*(6*5*5)+16 = 2,416 (C3 fully connected to S2, not the paper's
    # sparse table, which gives 1,516); C5 120*400+120 = 48,120; F6 84*120+84 = 10,164;
    # output 10*84+10 = 850. Plain average pools have no parameters (the paper's S2/S4 had a
    # gain and bias per map: 12 + 32 more). Total 61,706, the figure usually quoted.
    model = build_model("lenet5", num_classes=10, in_channels=1, image_size=32)
    assert sum(p.numel() for p in model.parameters()) == 156 + 2416 + 48120 + 10164 + 850 == 61706


def test_lenet5_pads_28px_inputs_to_32_inside_the_model() -> None:
    small = build_model("lenet5", 10, 1, 28).eval()
    native = build_model("lenet5", 10, 1, 32).eval()
    native.load_state_dict(small.state_dict())
    x = torch.randn(2, 1, 28, 28)
    with torch.no_grad():
        torch.testing.assert_close(small(x), native(F.pad(x, (2, 2, 2, 2))))


# ----------------------------------------------------------------------------- tv: and timm:

@pytest.fixture
def external():
    """The pretrained module, offline: empty caches, HF offline, torch.hub downloads refused."""
    from cnnkit.models import pretrained

    pretrained._import_timm()  # timm is in the dev extra: a broken install must fail, not skip
    return pretrained


@pytest.fixture
def offline(tmp_path, monkeypatch):
    import huggingface_hub.constants as hf_constants

    def refuse(*args: object, **kwargs: object) -> None:
        raise urllib.error.URLError("network disabled in tests")

    monkeypatch.setattr(torch.hub, "_hub_dir", str(tmp_path / "hub"))
    monkeypatch.setattr(torch.hub, "urlopen", refuse)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    return tmp_path


@pytest.mark.parametrize("name", ["tv:resnet18", "timm:resnet18"])
def test_external_models_build_for_grey_images(external, offline, name: str) -> None:
    model = build_model(name, num_classes=10, in_channels=1, image_size=32)
    _check_forward_backward(model, 1, 32, 10)


@pytest.mark.filterwarnings("ignore:The default weight initialization:FutureWarning")  # googlenet's
@pytest.mark.parametrize("arch", ["vgg11", "squeezenet1_1", "mobilenet_v3_small", "densenet121", "googlenet"])
def test_tv_heads_are_found_and_replaced(external, offline, arch: str) -> None:
    model = build_model(f"tv:{arch}", num_classes=4, in_channels=2, image_size=64).eval()
    with torch.no_grad():
        assert model(torch.randn(2, 2, 64, 64)).shape == (2, 4)


@pytest.mark.parametrize("name", ["tv:resnet18", "timm:resnet18"])
def test_pretrained_without_cache_or_network_is_one_line_cnnkit_error(external, offline, name: str) -> None:
    with pytest.raises(CnnkitError) as info:
        build_model(name, num_classes=10, in_channels=1, image_size=28, pretrained=True)
    message = str(info.value)
    assert "\n" not in message and name in message
    assert str(offline) in message  # says which cache folder the weights belong in


def test_tv_pretrained_weights_are_loaded_from_the_hub_cache(external, offline) -> None:
    """A file in the hub cache is used; grey input gets the RGB kernels summed, as timm does."""
    tv = external._import_torchvision()
    weights = tv.models.get_model_weights("resnet18").DEFAULT
    reference = tv.models.resnet18()
    cache = offline / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    torch.save(reference.state_dict(), cache / weights.url.rsplit("/", 1)[-1])

    same = build_model("tv:resnet18", num_classes=1000, in_channels=3, image_size=224, pretrained=True)
    torch.testing.assert_close(same.fc.weight, reference.fc.weight)  # 1000 classes: head kept
    grey = build_model("tv:resnet18", num_classes=10, in_channels=1, image_size=28, pretrained=True)
    torch.testing.assert_close(grey.conv1.weight, reference.conv1.weight.sum(dim=1, keepdim=True))
    torch.testing.assert_close(grey.layer1[0].conv1.weight, reference.layer1[0].conv1.weight)
    assert grey.fc.out_features == 10


def test_adapt_rgb_kernel_sums_for_grey_and_repeats_for_more(external) -> None:
    weight = torch.randn(8, 3, 3, 3)
    torch.testing.assert_close(external.adapt_rgb_kernel(weight, 1), weight.sum(dim=1, keepdim=True))
    five = external.adapt_rgb_kernel(weight, 5)  # RGB, RG again, all scaled by 3/5
    torch.testing.assert_close(five, torch.cat([weight, weight[:, :2]], dim=1) * 3 / 5)


@pytest.mark.parametrize("name", ["tv:no_such_net", "timm:no_such_net", "tv:", "timm:"])
def test_unknown_external_names_are_cnnkit_errors(external, name: str) -> None:
    with pytest.raises(CnnkitError, match="no_such_net|tv:NAME or timm:NAME"):
        build_model(name, num_classes=10, in_channels=3, image_size=32)


def test_external_bad_option_is_a_cnnkit_error(external, offline) -> None:
    with pytest.raises(CnnkitError, match="does not accept"):
        build_model("tv:resnet18", 10, 3, 32, no_such_option=1)


def test_a_size_the_external_model_cannot_take_is_a_cnnkit_error(external, offline) -> None:
    name = "timm:vit_tiny_patch16_224"  # a ViT's patch grid is fixed at build time
    with pytest.raises(CnnkitError, match=rf"{name} cannot take 32x32 inputs.*made for 224x224"):
        build_model(name, num_classes=10, in_channels=3, image_size=32)


def test_input_size_hint(external) -> None:
    hint = external.input_size_hint
    assert hint("tv:resnet18") == 224
    assert hint("tv:inception_v3") == 299
    assert hint("timm:resnet18") == 224
    assert hint("cnn") is None
    with pytest.raises(CnnkitError):
        hint("tv:no_such_net")


def test_resolved_options_fill_in_defaults_so_old_runs_rebuild_the_same():
    from cnnkit.models import resolved_options

    assert resolved_options("cnn", {"dropout": 0.1}) == {"width": 16, "dropout": 0.1, "convs": (2, 2, 1)}
    assert resolved_options("lenet5", {}) == {}
    assert resolved_options("tv:resnet18", {"x": 1}) == {"x": 1}
