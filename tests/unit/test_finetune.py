"""Fine-tuning pieces: units that --freeze counts, freezing and unfreezing, frozen BatchNorm in
eval mode, the backbone's learning rate, copying tensors from a parent run."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from cnnkit.config import Config
from cnnkit.errors import CnnkitError
from cnnkit.models import build_model
from cnnkit.training import finetune
from cnnkit.training.finetune import Freezer, Parent, copy_matching, freeze_units, frozen_parameters, head_name


def test_units_are_stages_or_blocks() -> None:
    assert [n for n, _ in freeze_units(build_model("resnet18", 10, 3, 32))] == ["stem", *(f"stages.{i}" for i in range(4))]
    assert len(freeze_units(build_model("cnn", 10, 3, 32))) == 5  # the five conv blocks, not single layers
    eff = [n for n, _ in freeze_units(build_model("efficientnet-lite0", 10, 3, 32))]
    assert eff == ["stem", *(f"stages.{i}" for i in range(7)), "features_head"]
    assert head_name(build_model("resnet18", 10, 3, 32)) == "head"


def test_freeze_n_and_backbone() -> None:
    model = build_model("resnet18", 10, 3, 32)
    two = {id(p) for p in frozen_parameters(model, "2")}
    assert {id(p) for p in model.stem.parameters()} <= two
    assert {id(p) for p in model.stages[0].parameters()} <= two
    assert not {id(p) for p in model.stages[1].parameters()} & two
    backbone = {id(p) for p in frozen_parameters(model, "backbone")}
    assert not {id(p) for p in model.head.parameters()} & backbone
    assert len(backbone) == len(list(model.parameters())) - 2
    assert frozen_parameters(model, "none") == []


def test_freeze_beyond_the_model_is_one_line() -> None:
    with pytest.raises(CnnkitError, match="only 5 stages/blocks") as err:
        frozen_parameters(build_model("resnet18", 10, 3, 32), "6")
    assert "\n" not in str(err.value)
    with pytest.raises(CnnkitError, match="train.freeze"):
        Config.from_dict({"train": {"freeze": "half"}})


def test_unfreeze_at_and_frozen_batchnorm_stays_in_eval() -> None:
    model = build_model("resnet18", 10, 3, 32)
    freezer = Freezer.for_model(model, "backbone", unfreeze_at=3)
    freezer.set_epoch(0)
    model.train()
    finetune.keep_frozen_norms_eval(model)
    bn = model.stem[1]
    assert not bn.weight.requires_grad and not bn.training
    before = bn.running_mean.clone()
    model(torch.randn(4, 3, 32, 32)).sum().backward()
    assert torch.equal(bn.running_mean, before) and bn.weight.grad is None
    assert model.head[-1].weight.grad is not None
    freezer.set_epoch(2)  # epoch 3 (1-based): everything trains again
    model.train()
    finetune.keep_frozen_norms_eval(model)
    assert bn.weight.requires_grad and bn.training


def test_backbone_lr_mult_composes_with_existing_groups() -> None:
    model = build_model("cnn", 10, 3, 32)
    groups = [{"params": [p for p in model.parameters() if p.ndim > 1], "weight_decay": 5e-4},
              {"params": [p for p in model.parameters() if p.ndim <= 1], "weight_decay": 0.0, "lr": 0.4}]
    out = finetune.scale_backbone_lr(groups, model, 0.1, lr=0.2)
    head = {id(p) for p in model.head.parameters()}
    for g in out:
        is_head = all(id(p) in head for p in g["params"])
        base = 0.4 if g["weight_decay"] == 0.0 else 0.2
        assert g["lr"] == pytest.approx(base if is_head else base * 0.1)
    assert sum(len(g["params"]) for g in out) == len(list(model.parameters()))


def _parent(model: nn.Module, classes: list[str], data: str = "parent-data") -> Parent:
    spec = {"name": "cnn", "classes": classes, "preprocess": {"channels": 3}}
    return Parent("p", "p", 1, spec, {k: v.clone() for k, v in model.state_dict().items()}, "abc", data)


def test_copy_matching_adapts_the_first_conv_and_renews_the_head() -> None:
    torch.manual_seed(0)
    rgb = build_model("cnn", 10, 3, 32)
    gray = build_model("cnn", 4, 1, 32)
    record = copy_matching(gray, _parent(rgb, list("0123456789")), ["a", "b", "c", "d"], "new-data")
    first = "features.0.0.weight"
    assert record["adapted"] == [first]
    assert torch.allclose(gray.state_dict()[first], rgb.state_dict()[first].sum(1, keepdim=True))
    assert torch.equal(gray.state_dict()["features.1.0.weight"], rgb.state_dict()["features.1.0.weight"])
    assert any(k.startswith("head.3.weight") for k in record["not_copied"])
    # the same classes but other data: still a new head (names are not meanings)
    same = build_model("cnn", 10, 3, 32)
    rec = copy_matching(same, _parent(rgb, list("0123456789")), list("0123456789"), "other")
    assert "head.3.weight (new head)" in rec["not_copied"]
    cont = copy_matching(build_model("cnn", 10, 3, 32), _parent(rgb, list("0123456789")), list("0123456789"), "parent-data")
    assert cont["copied"] == cont["total"]


def test_copy_matching_refuses_an_unrelated_architecture() -> None:
    with pytest.raises(CnnkitError, match="shares no tensor"):
        copy_matching(build_model("resnet18", 10, 3, 32), _parent(build_model("cnn", 10, 3, 32), ["x"]), ["y"], "d")


def test_defaults_follow_the_start() -> None:
    scratch = Config.from_dict({})
    finetune.resolve_defaults(scratch)
    assert scratch.train.freeze == "none" and scratch.train.backbone_lr_mult == 1.0
    tuned = Config.from_dict({"model": {"name": "efficientnet-lite0", "pretrained": True}, "train": {"freeze": "2"}})
    finetune.resolve_defaults(tuned)  # every layer at the full rate unless told (the transfer sweep's finding)
    assert tuned.train.freeze == "2" and tuned.train.backbone_lr_mult == 1.0
