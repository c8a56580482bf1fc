"""The export formats and what each is for: plain data, so `cnnkit export --help` needs no torch."""

# format -> when to use it (shown by `cnnkit export --help`).
FORMATS = {
    "onnx": "model.onnx (opset 18, dynamic batch; checked against eager PyTorch on real test images). For ONNX Runtime, "
            "cloud ML services that store ONNX, Triton, and C++/C#/Java/JS apps without Python. With --quantize int8: "
            "model.int8.onnx, static INT8 (QDQ, per-channel), smaller and faster on CPUs with VNNI (benchmarks/export.py), refused if it "
            "loses more than --max-drop points of test accuracy.",
    "pt2": "model.pt2, a torch.export ExportedProgram (dynamic batch; checked like onnx). For PyTorch deployments "
           "without cnnkit: torch.export.load('model.pt2').module()(x); the input to AOTInductor / ExecuTorch.",
    "hf": "a Hugging Face Hub folder: model.safetensors, timm-style config.json, a model card (README.md) with the "
          "test results of `cnnkit eval`, curves and confusion images, .gitattributes (LFS); --include-onnx adds "
          "model.onnx. To publish (cnnkit push) or share a model that cnnkit.load(FOLDER) reads back.",
}
QUANTIZE = ("int8",)
