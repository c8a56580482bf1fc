"""The KServe v2 / Open Inference Protocol over HTTP: decoding infer requests, encoding answers.

Pure functions on bytes and numpy, no web framework. Supports JSON tensors and Triton's binary
tensor extension (a JSON header of ``Inference-Header-Content-Length`` bytes followed by raw
tensor data, which the official ``tritonclient`` uses by default) both ways.

Inputs a cnnkit model takes (one tensor per request):
- ``UINT8`` (N, C, S, S) pixels 0..255, as the run stores its data (C = 1 may be left out);
- ``FP32`` (N, C, S, S) pixels 0..1;
- ``BYTES`` (N,) or (N, 1) encoded images (PNG, JPEG...; base64 strings in JSON), which go
  through the same decoding and preprocessing as /predict.
Outputs: ``probabilities`` FP32 (N, K) and ``label`` BYTES (N,) (the top class's name).
"""
from __future__ import annotations

import base64
import binascii
import json
import math
import struct
from dataclasses import dataclass, field
from typing import Any

import numpy as np

DTYPES: dict[str, np.dtype] = {"UINT8": np.dtype("<u1"), "FP32": np.dtype("<f4")}
KNOWN_DTYPES = ("BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64", "FP16", "FP32",
                "FP64", "BYTES", "BF16")
OUTPUTS = ("probabilities", "label")


class ProtocolError(ValueError):
    """A malformed or unsupported infer request; the message says what (answered with 400)."""


@dataclass
class Tensor:
    name: str
    datatype: str
    shape: list[int]
    data: Any  # np.ndarray for numeric types, list[bytes] for BYTES


@dataclass
class InferRequest:
    id: str | None
    inputs: list[Tensor]
    outputs: dict[str, bool] = field(default_factory=dict)  # requested name -> binary?
    binary_default: bool = False  # request-level "binary_data_output"


def _json_header(body: bytes, header_length: int | None) -> tuple[dict[str, Any], bytes]:
    if header_length is not None and not 0 <= header_length <= len(body):
        raise ProtocolError(f"Inference-Header-Content-Length {header_length} is outside the body of {len(body)} bytes")
    head, rest = (body, b"") if header_length is None else (body[:header_length], body[header_length:])
    try:
        obj = json.loads(head)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ProtocolError(f"the inference header is not valid JSON ({exc})") from None
    if not isinstance(obj, dict):
        raise ProtocolError("the inference request must be a JSON object")
    return obj, rest


def _shape(raw: Any, name: str) -> list[int]:
    if not isinstance(raw, list) or not raw or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in raw):
        raise ProtocolError(f"input {name!r}: shape must be a non-empty list of non-negative integers")
    return raw


def _split_bytes(raw: bytes, name: str) -> list[bytes]:
    """Triton's BYTES serialization: each element is a 4-byte little-endian length, then the bytes."""
    out, pos = [], 0
    while pos < len(raw):
        if pos + 4 > len(raw):
            raise ProtocolError(f"input {name!r}: truncated BYTES element length")
        (n,) = struct.unpack_from("<I", raw, pos)
        pos += 4
        if pos + n > len(raw):
            raise ProtocolError(f"input {name!r}: BYTES element of {n} bytes runs past the data")
        out.append(raw[pos:pos + n])
        pos += n
    return out


def _flat(data: Any) -> list[Any]:
    """JSON tensor data may be flat or nested (row-major); flatten it."""
    if not isinstance(data, list):
        raise ProtocolError("tensor data must be a JSON list")
    out: list[Any] = []
    stack = [iter(data)]
    while stack:
        for item in stack[-1]:
            if isinstance(item, list):
                stack.append(iter(item))
                break
            out.append(item)
        else:
            stack.pop()
    return out


def _numeric(values: list[Any], datatype: str, name: str) -> np.ndarray:
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        raise ProtocolError(f"input {name!r}: {datatype} data must be numbers")
    arr = np.asarray(values, dtype=np.float64)
    if datatype == "UINT8":
        if arr.size and (arr.min() < 0 or arr.max() > 255 or not np.all(arr == np.round(arr))):
            raise ProtocolError(f"input {name!r}: UINT8 data must be integers 0..255")
        return arr.astype(np.uint8)
    return arr.astype(np.float32)


def _tensor(raw: Any, binary: bytes, offset: int) -> tuple[Tensor, int]:
    if not isinstance(raw, dict):
        raise ProtocolError("each input must be a JSON object")
    name = raw.get("name")
    if not isinstance(name, str) or not name:
        raise ProtocolError("each input needs a string 'name'")
    datatype = raw.get("datatype")
    if datatype not in KNOWN_DTYPES:
        raise ProtocolError(f"input {name!r}: unknown datatype {datatype!r}")
    if datatype not in DTYPES and datatype != "BYTES":
        raise ProtocolError(f"input {name!r}: datatype {datatype} is not accepted; use UINT8, FP32 or BYTES (images)")
    shape = _shape(raw.get("shape"), name)
    params = raw.get("parameters", {})
    if not isinstance(params, dict):
        raise ProtocolError(f"input {name!r}: parameters must be an object")
    size = params.get("binary_data_size")
    if size is not None:
        if not isinstance(size, int) or size < 0 or offset + size > len(binary):
            raise ProtocolError(f"input {name!r}: binary_data_size {size!r} does not fit the {len(binary)} binary bytes")
        chunk = binary[offset:offset + size]
        offset += size
        if datatype == "BYTES":
            data: Any = _split_bytes(chunk, name)
        else:
            if size % DTYPES[datatype].itemsize:
                raise ProtocolError(f"input {name!r}: {size} bytes is not a whole number of {datatype} values")
            data = np.frombuffer(chunk, dtype=DTYPES[datatype])
    else:
        if "data" not in raw:
            raise ProtocolError(f"input {name!r} has neither 'data' nor parameters.binary_data_size")
        values = _flat(raw["data"])
        if datatype == "BYTES":
            data = [_b64(v, name, i) for i, v in enumerate(values)]
        else:
            data = _numeric(values, datatype, name)
    count = math.prod(shape)
    if len(data) != count:
        raise ProtocolError(f"input {name!r}: shape {shape} holds {count} elements but the data has {len(data)}")
    return Tensor(name, datatype, shape, data), offset


def _b64(value: Any, name: str, i: int) -> bytes:
    if not isinstance(value, str):
        raise ProtocolError(f"input {name!r}: BYTES element {i} must be a base64 string in JSON")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise ProtocolError(f"input {name!r}: BYTES element {i} is not valid base64") from None


def parse_infer_request(body: bytes, header_length: int | None = None) -> InferRequest:
    obj, binary = _json_header(body, header_length)
    raw_inputs = obj.get("inputs")
    if not isinstance(raw_inputs, list) or not raw_inputs:
        raise ProtocolError("'inputs' must be a non-empty list")
    inputs, offset = [], 0
    for raw in raw_inputs:
        tensor, offset = _tensor(raw, binary, offset)
        inputs.append(tensor)
    if offset != len(binary):
        raise ProtocolError(f"{len(binary) - offset} bytes of binary data are not claimed by any input")
    params = obj.get("parameters", {})
    if not isinstance(params, dict):
        raise ProtocolError("'parameters' must be an object")
    outputs: dict[str, bool] = {}
    requested = obj.get("outputs", [])
    if not isinstance(requested, list):
        raise ProtocolError("'outputs' must be a list")
    for out in requested:
        if not isinstance(out, dict) or not isinstance(out.get("name"), str):
            raise ProtocolError("each requested output must be an object with a 'name'")
        if out["name"] not in OUTPUTS:
            raise ProtocolError(f"unknown output {out['name']!r}; outputs: {', '.join(OUTPUTS)}")
        out_params = out.get("parameters", {})
        if not isinstance(out_params, dict):
            raise ProtocolError(f"output {out['name']!r}: parameters must be an object")
        outputs[out["name"]] = bool(out_params.get("binary_data", False))
    request_id = obj.get("id")
    if "id" in obj and not isinstance(request_id, str):
        raise ProtocolError("'id' must be a string")
    return InferRequest(request_id, inputs, outputs,
                        bool(params.get("binary_data_output", False)))


def images_from_tensor(t: Tensor, channels: int, size: int) -> list[np.ndarray] | list[bytes]:
    """A request tensor -> per-image model inputs (C, S, S) for numeric types, encoded images for BYTES."""
    if t.datatype == "BYTES":
        if len(t.shape) > 2 or (len(t.shape) == 2 and t.shape[1] != 1):
            raise ProtocolError(f"input {t.name!r}: BYTES images must have shape [N] or [N, 1], got {t.shape}")
        return list(t.data)
    want = [channels, size, size]
    if t.shape[1:] == want:
        arr = np.asarray(t.data).reshape(t.shape)
    elif channels == 1 and t.shape[1:] == [size, size]:
        arr = np.asarray(t.data).reshape(t.shape[0], 1, size, size)
    else:
        raise ProtocolError(f"input {t.name!r}: shape {t.shape} does not match the model's input [-1, {channels}, {size}, {size}]")
    if t.datatype == "FP32":
        if not np.isfinite(arr).all() or arr.min(initial=0) < 0 or arr.max(initial=0) > 1:
            raise ProtocolError(f"input {t.name!r}: FP32 pixels must be finite and within 0..1")
        return [np.ascontiguousarray(a, dtype=np.float32) for a in arr]
    return [np.ascontiguousarray(a, dtype=np.uint8) for a in arr]


def _bytes_blob(items: list[bytes]) -> bytes:
    return b"".join(struct.pack("<I", len(b)) + b for b in items)


def encode_infer_response(model: str, version: int, request: InferRequest, probs: np.ndarray,
                          labels: list[str]) -> tuple[bytes, dict[str, str]]:
    """(body, extra headers): JSON, or a JSON header + binary tensors when any output asks for binary."""
    wanted = request.outputs or {name: request.binary_default for name in OUTPUTS}
    tensors = {"probabilities": ("FP32", list(probs.shape), probs.astype("<f4")),
               "label": ("BYTES", [len(labels)], [s.encode() for s in labels])}
    outputs, blobs = [], []
    for name, binary in wanted.items():
        datatype, shape, data = tensors[name]
        entry: dict[str, Any] = {"name": name, "datatype": datatype, "shape": shape}
        if binary:
            blob = _bytes_blob(data) if datatype == "BYTES" else data.tobytes()
            entry["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            entry["data"] = [s.decode() for s in data] if datatype == "BYTES" else data.ravel().tolist()
        outputs.append(entry)
    head: dict[str, Any] = {"model_name": model, "model_version": str(version), "outputs": outputs}
    if request.id is not None:
        head["id"] = request.id
    header = json.dumps(head).encode()
    if not blobs:
        return header, {"content-type": "application/json"}
    return header + b"".join(blobs), {"content-type": "application/octet-stream",
                                      "inference-header-content-length": str(len(header))}


def model_metadata(name: str, versions: list[int], platform: str, channels: int, size: int, classes: int) -> dict[str, Any]:
    return {
        "name": name, "versions": [str(v) for v in versions], "platform": platform,
        "inputs": [{"name": "input", "datatype": "UINT8", "shape": [-1, channels, size, size]}],
        "outputs": [{"name": "probabilities", "datatype": "FP32", "shape": [-1, classes]},
                    {"name": "label", "datatype": "BYTES", "shape": [-1]}],
    }


def server_metadata(version: str) -> dict[str, Any]:
    return {"name": "cnnkit", "version": version, "extensions": ["binary_tensor_data"]}
