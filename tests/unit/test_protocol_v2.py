"""KServe v2 encode/decode, including bodies made and read by the official tritonclient."""
from __future__ import annotations

import base64
import json
import struct

import numpy as np
import pytest
import tritonclient.http as tritonclient  # noqa: E402

from cnnkit.serve import protocol_v2 as v2


def triton_body(inputs, outputs=None):
    body, json_size = tritonclient.InferenceServerClient.generate_request_body(inputs, outputs=outputs)
    return body, json_size


def test_json_uint8_nested_data():
    pixels = (np.arange(2 * 28 * 28) % 256).astype(np.uint8).reshape(2, 1, 28, 28)
    body = json.dumps({"id": "r1", "inputs": [{"name": "input", "datatype": "UINT8", "shape": [2, 1, 28, 28],
                                               "data": pixels.tolist()}]}).encode()
    req = v2.parse_infer_request(body)
    assert req.id == "r1" and req.outputs == {} and not req.binary_default
    images = v2.images_from_tensor(req.inputs[0], 1, 28)
    assert len(images) == 2 and images[0].dtype == np.uint8 and np.array_equal(np.stack(images), pixels)


def test_tritonclient_binary_uint8_fp32_and_bytes():
    pixels = np.random.default_rng(0).integers(0, 256, (3, 1, 28, 28), dtype=np.uint8)
    inp = tritonclient.InferInput("input", list(pixels.shape), "UINT8")
    inp.set_data_from_numpy(pixels, binary_data=True)
    body, size = triton_body([inp])
    req = v2.parse_infer_request(body, size)
    assert req.binary_default  # no outputs named: tritonclient asks for all, in binary
    assert np.array_equal(np.stack(v2.images_from_tensor(req.inputs[0], 1, 28)), pixels)

    floats = (pixels / 255.0).astype(np.float32)
    inp = tritonclient.InferInput("input", list(floats.shape), "FP32")
    inp.set_data_from_numpy(floats, binary_data=True)
    req = v2.parse_infer_request(*triton_body([inp]))
    assert np.allclose(np.stack(v2.images_from_tensor(req.inputs[0], 1, 28)), floats)

    blobs = np.array([b"\x89PNG first", b"second image"], dtype=np.object_)
    inp = tritonclient.InferInput("image", [2], "BYTES")
    inp.set_data_from_numpy(blobs, binary_data=True)
    req = v2.parse_infer_request(*triton_body([inp]))
    assert v2.images_from_tensor(req.inputs[0], 1, 28) == [b"\x89PNG first", b"second image"]


def test_json_bytes_are_base64():
    data = [base64.b64encode(b"abc").decode()]
    req = v2.parse_infer_request(json.dumps({"inputs": [{"name": "x", "datatype": "BYTES", "shape": [1, 1], "data": data}]}).encode())
    assert v2.images_from_tensor(req.inputs[0], 1, 28) == [b"abc"]


def test_requested_outputs():
    inp = tritonclient.InferInput("input", [1, 1, 28, 28], "UINT8")
    inp.set_data_from_numpy(np.zeros((1, 1, 28, 28), np.uint8), binary_data=False)
    out = [tritonclient.InferRequestedOutput("label", binary_data=False),
           tritonclient.InferRequestedOutput("probabilities", binary_data=True)]
    req = v2.parse_infer_request(*triton_body([inp], out))
    assert req.outputs == {"label": False, "probabilities": True}


@pytest.mark.parametrize("binary", [False, True])
def test_responses_read_back_by_tritonclient(binary):
    req = v2.InferRequest("abc", [], {}, binary_default=binary)
    probs = np.array([[0.1, 0.9], [0.7, 0.3]], dtype=np.float32)
    body, headers = v2.encode_infer_response("m", 3, req, probs, ["b", "a"])
    length = headers.get("inference-header-content-length")
    assert (length is not None) == binary
    result = tritonclient.InferResult.from_response_body(body, header_length=int(length) if length else None)
    assert np.allclose(result.as_numpy("probabilities"), probs)
    assert [s.decode() if isinstance(s, bytes) else s for s in result.as_numpy("label")] == ["b", "a"]
    head = result.get_response()
    assert head["model_name"] == "m" and head["model_version"] == "3" and head["id"] == "abc"


def test_only_requested_outputs_are_sent():
    req = v2.InferRequest(None, [], {"label": False})
    body, _ = v2.encode_infer_response("m", 1, req, np.ones((1, 2), np.float32) / 2, ["x"])
    assert [o["name"] for o in json.loads(body)["outputs"]] == ["label"]


def _one(tensor: dict) -> bytes:
    return json.dumps({"inputs": [tensor]}).encode()


@pytest.mark.parametrize("body, header, message", [
    (b"{not json", None, "not valid JSON"),
    (b"[1, 2]", None, "JSON object"),
    (b'{"inputs": []}', None, "non-empty list"),
    (_one({"datatype": "UINT8", "shape": [1], "data": [1]}), None, "string 'name'"),
    (_one({"name": "x", "datatype": "INT4", "shape": [1], "data": [1]}), None, "unknown datatype"),
    (_one({"name": "x", "datatype": "INT64", "shape": [1], "data": [1]}), None, "not accepted"),
    (_one({"name": "x", "datatype": "UINT8", "shape": [2, 2], "data": [1, 2, 3]}), None, "holds 4 elements"),
    (_one({"name": "x", "datatype": "UINT8", "shape": [-1], "data": [1]}), None, "non-negative"),
    (_one({"name": "x", "datatype": "UINT8", "shape": [1], "data": [300]}), None, "0..255"),
    (_one({"name": "x", "datatype": "UINT8", "shape": [1], "data": [1.5]}), None, "0..255"),
    (_one({"name": "x", "datatype": "FP32", "shape": [1], "data": ["a"]}), None, "must be numbers"),
    (_one({"name": "x", "datatype": "BYTES", "shape": [1], "data": ["!!"]}), None, "base64"),
    (_one({"name": "x", "datatype": "UINT8", "shape": [1]}), None, "neither 'data'"),
    (_one({"name": "x", "datatype": "UINT8", "shape": [4], "parameters": {"binary_data_size": 4}}), None, "does not fit"),
    (_one({"name": "x", "datatype": "UINT8", "shape": [1], "data": [1]}) + b"xx", 55, "not claimed"),
    (_one({"name": "x", "datatype": "UINT8", "shape": [1], "data": [1]}), 10_000, "outside the body"),
    (b'{"inputs": [{"name": "x", "datatype": "UINT8", "shape": [1], "data": [1]}], "outputs": [{"name": "logits"}]}',
     None, "unknown output"),
    (b'{"inputs": [{"name": "x", "datatype": "UINT8", "shape": [1], "data": [1]}], "id": 5}', None, "'id'"),
    (b'{"inputs": [{"name": "x", "datatype": "UINT8", "shape": [1], "data": [1]}], "parameters": null}', None, "'parameters'"),
])
def test_malformed_requests_say_what_is_wrong(body, header, message):
    if header == 55:
        header = len(body) - 2
    with pytest.raises(v2.ProtocolError, match=message):
        v2.parse_infer_request(body, header)


def test_truncated_binary_bytes_elements():
    head = _one({"name": "x", "datatype": "BYTES", "shape": [1], "parameters": {"binary_data_size": 6}})
    with pytest.raises(v2.ProtocolError, match="runs past"):
        v2.parse_infer_request(head + struct.pack("<I", 100) + b"ab", len(head))


@pytest.mark.parametrize("datatype, shape, message", [
    ("UINT8", [1, 3, 28, 28], "does not match"),
    ("UINT8", [1, 1, 32, 32], "does not match"),
    ("BYTES", [1, 2], "BYTES images"),
])
def test_wrong_shapes_for_the_model(datatype, shape, message):
    n = int(np.prod(shape))
    data = [base64.b64encode(b"x").decode()] * n if datatype == "BYTES" else [0] * n
    req = v2.parse_infer_request(_one({"name": "x", "datatype": datatype, "shape": shape, "data": data}))
    with pytest.raises(v2.ProtocolError, match=message):
        v2.images_from_tensor(req.inputs[0], 1, 28)


def test_fp32_outside_unit_range_is_refused():
    req = v2.parse_infer_request(_one({"name": "x", "datatype": "FP32", "shape": [1, 28, 28], "data": [2.0] * 784}))
    with pytest.raises(v2.ProtocolError, match="within 0..1"):
        v2.images_from_tensor(req.inputs[0], 1, 28)
    ok = v2.images_from_tensor(v2.parse_infer_request(
        _one({"name": "x", "datatype": "FP32", "shape": [1, 28, 28], "data": [0.5] * 784})).inputs[0], 1, 28)
    assert ok[0].shape == (1, 28, 28) and ok[0].dtype == np.float32


def test_metadata_shapes():
    meta = v2.model_metadata("m", [1, 2], "onnxruntime_onnx", 1, 28, 10)
    assert meta["versions"] == ["1", "2"] and meta["inputs"][0]["shape"] == [-1, 1, 28, 28]
    assert {o["name"] for o in meta["outputs"]} == {"probabilities", "label"}
    assert "binary_tensor_data" in v2.server_metadata("0.1")["extensions"]
