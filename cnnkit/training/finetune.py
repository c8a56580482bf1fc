"""Fine-tuning: start from another run's weights (``--init``), freeze part of the network
(``--freeze``, ``--unfreeze-at``), give the pretrained layers a smaller learning rate
(``--backbone-lr-mult``).

Vocabulary, for every model (cnnkit's, tv:, timm:):
- the *head* is the top-level module holding the output layer (the last Linear, else the last
  conv); the *backbone* is everything else;
- the *units* that ``--freeze N`` counts are the backbone's top-level modules in forward order,
  with containers of blocks (resnet's ``stages``, EfficientNet's ``stages``, cnn's ``features``,
  torchvision's ``layer1``...) opened one level, so N counts stages or blocks, never single convs.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cnnkit.config import parse_freeze
from cnnkit.errors import CnnkitError

INIT_FILE = "init.json"  # in a run version: where its weights came from
_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)


# ----------------------------------------------------------------------------- head, backbone, units

def head_name(model: nn.Module) -> str:
    """The top-level child that holds the output layer."""
    layers = [p for p, m in model.named_modules() if isinstance(m, nn.Linear)]
    layers = layers or [p for p, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    if not layers:
        raise CnnkitError("cannot find the model's output layer (no Linear or Conv2d)")
    return layers[-1].split(".")[0]


def _has_params(module: nn.Module) -> bool:
    return any(True for _ in module.parameters())


def _is_block_container(module: nn.Module) -> bool:
    # Opened when its parameterized children are themselves composite (blocks, stages), not leaf layers.
    if not isinstance(module, (nn.Sequential, nn.ModuleList)):
        return False
    kids = [m for m in module.children() if _has_params(m)]
    return len(kids) > 1 and all(any(_has_params(g) for g in k.children()) for k in kids)


def freeze_units(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The backbone's stages/blocks in forward order (what ``--freeze N`` counts)."""
    head = head_name(model)
    units: list[tuple[str, nn.Module]] = []
    for name, child in model.named_children():
        if name == head or not _has_params(child):
            continue
        if _is_block_container(child):
            units += [(f"{name}.{k}", m) for k, m in child.named_children() if _has_params(m)]
        else:
            units.append((name, child))
    return units


def backbone_parameters(model: nn.Module) -> list[nn.Parameter]:
    head = head_name(model)
    return [p for name, child in model.named_children() if name != head for p in child.parameters()]


# ----------------------------------------------------------------------------- freezing

def frozen_parameters(model: nn.Module, freeze: str) -> list[nn.Parameter]:
    """The parameters ``freeze`` holds fixed; a count beyond the model's units is a CnnkitError."""
    spec = parse_freeze(freeze)
    if spec in ("none", "auto"):
        return []
    if spec == "backbone":
        return backbone_parameters(model)
    units = freeze_units(model)
    if spec > len(units):
        names = ", ".join(n for n, _ in units)
        raise CnnkitError(f"--freeze {spec}: the model has only {len(units)} stages/blocks before its head ({names})")
    return [p for _, m in units[:spec] for p in m.parameters()]


@dataclass
class Freezer:
    """Applies ``--freeze`` until ``--unfreeze-at`` (1-based epoch; 0 = never): a function of the
    epoch alone, so a resumed run freezes exactly as the uninterrupted one did."""

    frozen: list[nn.Parameter] = field(default_factory=list)
    unfreeze_at: int = 0

    @classmethod
    def for_model(cls, model: nn.Module, freeze: str, unfreeze_at: int) -> Freezer:
        return cls(frozen_parameters(model, freeze), unfreeze_at)

    def set_epoch(self, epoch: int) -> None:
        """``epoch`` is 0-based, as in the loop."""
        train_all = bool(self.unfreeze_at) and epoch + 1 >= self.unfreeze_at
        for p in self.frozen:
            p.requires_grad_(train_all)


def keep_frozen_norms_eval(model: nn.Module) -> None:
    """Frozen BatchNorm layers stay in eval mode: their running statistics are part of what was
    pretrained, and updating them from small fine-tuning batches undoes it (call after train())."""
    for m in model.modules():
        if isinstance(m, _NORMS):
            params = list(m.parameters(recurse=False))
            if params and not any(p.requires_grad for p in params):
                m.eval()


def scale_backbone_lr(groups: list[dict[str, Any]], model: nn.Module, mult: float, lr: float) -> list[dict[str, Any]]:
    """Split every optimizer group into head and backbone parts; the backbone part's lr is
    ``mult`` times the group's (which keeps any per-group factor set before, e.g. for norms)."""
    if mult == 1.0:
        return groups
    backbone = {id(p) for p in backbone_parameters(model)}
    out = []
    for group in groups:
        base = group.get("lr", lr)
        head = [p for p in group["params"] if id(p) not in backbone]
        body = [p for p in group["params"] if id(p) in backbone]
        out += [{**group, "params": head, "lr": base}, {**group, "params": body, "lr": base * mult}]
    return [g for g in out if g["params"]]


# ----------------------------------------------------------------------------- --init

def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass
class Parent:
    """The run (or folder, or Hub repo) whose weights start a new run."""

    source: str
    name: str
    version: int
    spec: dict[str, Any]
    state: dict[str, torch.Tensor]
    checksum: str
    data: str | None = None  # the parent's dataset name

    @classmethod
    def open(cls, ref: str, runs_dir: str | None) -> Parent:
        from cnnkit.runs import RunStore

        run = RunStore(runs_dir).get(ref)  # NAME[:vN], a version folder, a Hub folder, hf://OWNER/REPO
        spec = run.read("model.json")
        if spec is None:
            raise CnnkitError(f"--init {ref}: {run.path} is not a cnnkit run (no model.json)")
        weights = run.file("model.safetensors")
        state = run.load_weights()
        data = (run.read("data.json") or {}).get("name")
        return cls(ref, run.name, run.version, spec, state, file_sha256(weights) if weights.is_file() else "", data)


def _first_conv(model: nn.Module) -> str | None:
    return next((f"{p}.weight" for p, m in model.named_modules() if isinstance(m, nn.Conv2d) and m.groups == 1), None)


def _adapt_channels(weight: torch.Tensor, channels: int) -> torch.Tensor:
    """First-conv kernels for a different input channel count: summed over the old channels and
    shared out evenly, so a gray image gives the response its RGB copy gave (and vice versa)."""
    return weight.sum(dim=1, keepdim=True).expand(-1, channels, -1, -1).contiguous() / channels


def copy_matching(model: nn.Module, parent: Parent, classes: list[str] | None = None, data: str | None = None) -> dict[str, Any]:
    """Copy every tensor whose name and shape match (the first conv adapted across channel
    counts). The head stays new unless the parent was trained on the same ``data`` with the same
    ``classes`` (a continuation): MNIST's "3" and a hand sign's "3" share a name, not a meaning.
    Returns what was copied and what was not, for init.json and the report."""
    own = model.state_dict()
    first = _first_conv(model)
    head = head_name(model) + "."
    same_classes = (classes is not None and list(parent.spec.get("classes") or []) == list(classes)
                    and data is not None and parent.data == data)
    copied, adapted, skipped = [], [], []
    new_state = {}
    for key, target in own.items():
        src = parent.state.get(key)
        if key.startswith(head) and not same_classes:
            skipped.append(f"{key} (new head)")
        elif src is None:
            skipped.append(f"{key} (not in the parent)")
        elif src.shape == target.shape:
            new_state[key] = src
            copied.append(key)
        elif key == first and src.ndim == 4 and src.shape[0] == target.shape[0] and src.shape[2:] == target.shape[2:]:
            new_state[key] = _adapt_channels(src.float(), target.shape[1]).to(target.dtype)
            adapted.append(key)
        else:
            skipped.append(f"{key} (shape {tuple(src.shape)} -> {tuple(target.shape)})")
    # A shared head alone (same classes) is no common architecture: count the backbone's tensors.
    tensors = [k for k in copied if own[k].is_floating_point() and not k.startswith(head)]
    if not tensors and not adapted:
        raise CnnkitError(f"--init {parent.source}: its architecture ({parent.spec.get('name')}) shares no tensor "
                          f"with the new model; nothing to start from")
    model.load_state_dict(new_state, strict=False)
    return {"copied": len(copied) + len(adapted), "total": len(own), "adapted": adapted, "not_copied": skipped}


def init_record(parent: Parent, copy: dict[str, Any]) -> dict[str, Any]:
    return {"parent": {"source": parent.source, "name": parent.name, "version": parent.version,
                       "ref": f"{parent.name}:v{parent.version}", "model": parent.spec.get("name"),
                       "checksum": parent.checksum},
            **copy}


def summary_line(record: dict[str, Any]) -> str:
    p = record["parent"]
    text = f"init from {p['ref']}: {record['copied']}/{record['total']} tensors copied"
    if record["adapted"]:
        text += f" ({len(record['adapted'])} adapted: {', '.join(record['adapted'])})"
    if record["not_copied"]:
        shown = ", ".join(record["not_copied"][:4])
        more = f" and {len(record['not_copied']) - 4} more" if len(record["not_copied"]) > 4 else ""
        text += f"; not copied: {shown}{more}"
    return text


def lineage(run: Any, runs_dir: str | None, limit: int = 20) -> list[str]:
    """``run`` and its ancestors through init.json, nearest first (stops at a missing parent)."""
    from cnnkit.runs import RunStore

    chain, current = [], run
    for _ in range(limit):
        record = current.read(INIT_FILE)
        if not record:
            break
        p = record["parent"]
        chain.append(f"{p['ref']} ({p.get('model')}, sha256 {str(p.get('checksum'))[:12]})")
        try:
            current = RunStore(runs_dir).get(p["ref"])
        except CnnkitError:
            break
    return chain


# ----------------------------------------------------------------------------- train_run's hooks

def resolve_defaults(cfg: Any) -> None:
    """Turn the ``auto`` fine-tuning options into values (stored so the run records what ran). The
    optimizer defaults for --pretrained / --init are set with the raw options (training/recipes.py),
    where it is known which options the user named."""
    if str(cfg.train.freeze).lower() == "auto":
        cfg.train.freeze = "none"
    if cfg.train.backbone_lr_mult is None:
        cfg.train.backbone_lr_mult = 1.0


def open_parent(cfg: Any) -> Parent | None:
    """The --init source, opened before the data so a bad reference fails first; the new data
    is loaded at the parent's input size unless --image-size says otherwise."""
    if not cfg.model.init:
        return None
    parent = Parent.open(cfg.model.init, cfg.run.runs_dir)
    if cfg.data.image_size is None and parent.spec.get("image_size"):
        cfg.data.image_size = int(parent.spec["image_size"])
    return parent


def prepare_model(cfg: Any, model: nn.Module, pre: dict[str, Any], parent: Parent | None,
                  classes: list[str] | None = None, data: str | None = None) -> dict[str, Any] | None:
    """Copy the parent's tensors into ``model``, keep its normalization when the channels agree
    (its filters were learned on inputs scaled that way), and check ``--freeze`` against the
    model; returns init.json's record (None without --init)."""
    frozen_parameters(model, cfg.train.freeze)  # refuses --freeze N beyond the model's units now
    if parent is None:
        return None
    record = init_record(parent, copy_matching(model, parent, classes, data))
    parent_pre = parent.spec.get("preprocess") or {}
    if parent_pre.get("channels") == pre["channels"] and parent_pre.get("mean"):
        pre["mean"], pre["std"] = list(parent_pre["mean"]), list(parent_pre["std"])
    return record


def inherit_model(cfg: Any) -> None:
    """``--init`` with no ``--model``: build the parent's architecture (and its options)."""
    from cnnkit.runs import RunStore

    spec = RunStore(cfg.run.runs_dir).get(cfg.model.init).read("model.json") or {}
    if spec.get("name"):
        cfg.model.name = spec["name"]
        if not cfg.model.kwargs:
            cfg.model.kwargs = dict(spec.get("kwargs") or {})
