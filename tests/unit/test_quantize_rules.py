"""Which nodes the INT8 export keeps in float, read from real exported graphs."""
from pathlib import Path

import torch
from onnxruntime.quantization.shape_inference import quant_pre_process

from cnnkit.export.onnx import _write_onnx
from cnnkit.export.quantize import image_convs, rescaled_convs
from cnnkit.models import build_model
from cnnkit.models.layers import fold_batchnorm


def _export(name: str, kwargs: dict, tmp_path: Path) -> Path:
    model = build_model(name, num_classes=10, in_channels=1, image_size=28, **kwargs).eval()
    raw, path = tmp_path / f"{name}.raw.onnx", tmp_path / f"{name}.onnx"
    _write_onnx(model, torch.zeros(2, 1, 28, 28), raw, opset=18)
    quant_pre_process(str(raw), str(path), skip_symbolic_shape=True)  # as the INT8 export does: folds what it can
    return path


def test_convs_feeding_an_unfolded_batchnorm_stay_float(tmp_path: Path):
    # airbench: conv -> max pool -> BatchNorm in each block; the exporter cannot fold that BN into the conv
    import onnx

    path = _export("airbench", {"widths": [8, 8, 8]}, tmp_path)
    graph = onnx.load(str(path)).graph
    nodes = {n.name: n for n in graph.node}
    pooled = {n.input[0] for n in graph.node if n.op_type == "MaxPool"}
    keep = rescaled_convs(path)
    assert sum(nodes[k].op_type == "BatchNormalization" for k in keep) == 3
    kept_convs = [nodes[k] for k in keep if nodes[k].op_type == "Conv"]
    assert len(set(keep)) == len(keep) == 6 and all(c.output[0] in pooled for c in kept_convs)  # each block's first conv
    assert len(image_convs(path)) == 1  # the whitening conv reads the image


def test_a_conv_bn_relu_net_keeps_only_its_image_conv(tmp_path: Path):
    path = _export("cnn", {"width": 8}, tmp_path)  # BN right after each conv: folded into it
    assert rescaled_convs(path) == [] and len(image_convs(path)) == 1


def test_folding_removes_every_batchnorm_of_airbench_and_keeps_its_outputs():
    # norm1 sits behind a max pool: folding it into conv1 is exact because its per-channel scale is positive
    model = build_model("airbench", num_classes=10, in_channels=3, image_size=32, widths=[8, 16, 16])
    gen = torch.Generator().manual_seed(0)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):  # statistics unlike a fresh BN's, as after training
            m.running_mean.copy_(torch.randn(m.num_features, generator=gen))
            m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.05)
    model.eval()
    folded = fold_batchnorm(model)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())  # the original is untouched
    x = torch.randn(8, 3, 32, 32, generator=gen)
    with torch.no_grad():
        assert torch.allclose(folded(x), model(x), atol=1e-5, rtol=1e-4)
