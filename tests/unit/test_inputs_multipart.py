"""The quick multipart split (cnnkit.serve.inputs.simple_parts) gives python-multipart's parts, or None."""
from __future__ import annotations

import httpx
import pytest
from urllib3 import encode_multipart_formdata

from cnnkit.serve.inputs import _Parts, simple_parts

B = b"b0undary"
PNG = b"\x89PNG\r\n\x1a\n\x00\r\n--b0und\r\n\r\nend"  # CRLFs, a near-delimiter and a blank line inside


def reference(body: bytes, boundary: bytes) -> list[tuple[dict[bytes, bytes], bytes]]:
    from python_multipart.multipart import MultipartParser

    collected = _Parts(100)
    parser = MultipartParser(boundary, collected.callbacks())
    parser.write(body)
    parser.finalize()
    return [({k: v.strip() for k, v in h.items()}, bytes(d)) for h, d in collected.parts]


def _client_bodies() -> list[tuple[bytes, bytes]]:
    fields = [("file", ("a.png", PNG, "image/png")), ("file", ("b.png", b"", "image/png")), ("note", "text")]
    body, content_type = encode_multipart_formdata(fields, boundary=B.decode())
    request = httpx.Request("POST", "http://x/predict", files=[f for f in fields if f[0] == "file"])
    httpx_boundary = request.headers["content-type"].split("boundary=")[1].encode()
    return [(body, B), (request.read(), httpx_boundary)]


@pytest.mark.parametrize("index", [0, 1])
def test_what_clients_send_takes_the_quick_way_with_the_same_parts(index):
    body, boundary = _client_bodies()[index]
    quick = simple_parts(body, boundary)
    assert quick is not None
    assert quick == reference(body, boundary)
    assert quick[0][1] == PNG


PART = b'Content-Disposition: form-data; name="file"; filename="a.png"\r\nContent-Type: image/png\r\n\r\n' + PNG


@pytest.mark.parametrize("body", [
    b"preamble\r\n--" + B + b"\r\n" + PART + b"\r\n--" + B + b"--\r\n",  # a preamble
    b"--" + B + b"  \r\n" + PART + b"\r\n--" + B + b"--\r\n",  # transport padding
    b"--" + B + b"\r\n" + PART + b"\r\n--" + B + b"--\r\nepilogue",  # an epilogue
    b"--" + B + b"\r\n" + PART + b"\r\n--" + B + b"x\r\n" + PART + b"\r\n--" + B + b"--",  # a longer boundary inside
    b"--" + B + b"\r\n" + b" folded: x\r\n" + PART + b"\r\n--" + B + b"--",  # a folded header line
    b"--" + B + b"\r\n" + PART + b"\r\n--" + B,  # no close delimiter
])
def test_anything_else_is_left_to_python_multipart(body):
    assert simple_parts(body, B) is None


def test_several_parts_and_a_trailing_crlf_or_none():
    for tail in (b"", b"\r\n"):
        body = b"--" + B + b"\r\n" + PART + b"\r\n--" + B + b"\r\n" + PART + b"\r\n--" + B + b"--" + tail
        quick = simple_parts(body, B)
        assert quick is not None and len(quick) == 2 and quick == reference(body, B)
