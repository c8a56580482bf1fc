"""Score payload.json with ONNX Runtime the way a watsonx.ai ONNX deployment does, on this machine.

Written by ``cnnkit deploy --target watsonx``. Each entry of ``input_data`` holds ``values``: the
model's input tensor (the normalized float batch (N, C, H, W), as nested lists); its ``id``, when
given, names the graph input. The answer has one entry per graph output, ``{"id", "values"}``,
under ``predictions``. ``--labels`` adds, per image, the top class from ``model/model.json``.

    python score_local.py                       # payload.json, model/model.onnx
    python score_local.py my_payload.json --labels
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort

HERE = Path(__file__).resolve().parent


def score(model: Path, payload: dict) -> dict:
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    inputs = {i.name: i for i in session.get_inputs()}
    outputs = [o.name for o in session.get_outputs()]
    predictions = []
    for entry in payload["input_data"]:
        name = entry.get("id") or next(iter(inputs))
        if name not in inputs:
            raise SystemExit(f"payload input id {name!r} is not an input of the model ({', '.join(inputs)})")
        x = np.asarray(entry["values"], dtype=np.float32)
        for out_name, value in zip(outputs, session.run(outputs, {name: x})):
            predictions.append({"id": out_name, "values": value.tolist()})
    return {"predictions": predictions}


def labels(result: dict, classes: list[str]) -> list[str]:
    return [classes[int(np.argmax(row))] for p in result["predictions"] for row in p["values"]]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("payload", nargs="?", default=str(HERE / "payload.json"))
    parser.add_argument("--model", default=str(HERE / "model" / "model.onnx"))
    parser.add_argument("--labels", action="store_true", help="add the top class of each image")
    args = parser.parse_args(argv)
    result = score(Path(args.model), json.loads(Path(args.payload).read_text()))
    if args.labels:
        spec = json.loads((Path(args.model).parent / "model.json").read_text())
        result["labels"] = labels(result, spec["classes"])
    json.dump(result, sys.stdout)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
