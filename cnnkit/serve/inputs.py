"""Request bodies -> encoded images: multipart ``file`` fields, JSON base64, or a raw image body.

Only reads and checks the envelope (content type, field names, count, base64); decoding the
image itself is ``cnnkit.data.imageio``'s job, which refuses corrupt, truncated, empty,
non-image and oversized images with a reason.
"""
from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from starlette.requests import Request

from cnnkit.serve.limits import FORM_TYPES, IMAGE_TYPES, JSON_TYPES, ApiError, media_type
from cnnkit.serve.settings import Limits

ACCEPTED = ", ".join((*FORM_TYPES, *JSON_TYPES, "image/* (a raw image body)"))


def _b64(text: Any, index: int) -> bytes:
    if not isinstance(text, str):
        raise ApiError(422, "bad_json", f"images[{index}] must be a base64 string, got {type(text).__name__}")
    if text.startswith("data:"):  # a data URL, as a browser's canvas.toDataURL() makes
        text = text.partition(",")[2]
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ApiError(422, "bad_base64", f"images[{index}] is not valid base64") from None


def _count(n: int, limits: Limits) -> None:
    if n == 0:
        raise ApiError(422, "no_images", "the request holds no image: send form fields named 'file', "
                       "JSON {\"images\": [base64, ...]} or an image body")
    if n > limits.max_images:
        raise ApiError(422, "too_many_images", f"{n} images in one request; the limit is {limits.max_images}")


def from_json(body: bytes, limits: Limits) -> list[bytes]:
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, "bad_json", f"body is not valid JSON ({exc})") from None
    if not isinstance(payload, dict) or "images" not in payload:
        raise ApiError(422, "bad_json", 'JSON body must be an object with "images": [base64 strings]')
    extra = sorted(set(payload) - {"images"})
    if extra:
        raise ApiError(422, "bad_json", f"unexpected JSON key(s) {', '.join(map(repr, extra))}; only \"images\" is read")
    images = payload["images"]
    if not isinstance(images, list):
        raise ApiError(422, "bad_json", '"images" must be a list of base64 strings')
    _count(len(images), limits)
    return [_b64(text, i) for i, text in enumerate(images)]


class _Parts:
    """Collects multipart parts (headers and data) from python-multipart's callbacks."""

    def __init__(self, max_parts: int) -> None:
        self.parts: list[tuple[dict[bytes, bytes], bytearray]] = []
        self.max_parts = max_parts
        self._field = self._value = b""

    def callbacks(self) -> dict[str, Any]:
        def part_begin() -> None:
            if len(self.parts) >= self.max_parts:
                raise ApiError(422, "too_many_images", f"more than {self.max_parts - 1} form parts in one request")
            self.parts.append(({}, bytearray()))

        def header_field(data: bytes, start: int, end: int) -> None:
            self._field += data[start:end]

        def header_value(data: bytes, start: int, end: int) -> None:
            self._value += data[start:end]

        def header_end() -> None:
            self.parts[-1][0][self._field.lower()] = self._value
            self._field = self._value = b""

        def part_data(data: bytes, start: int, end: int) -> None:
            self.parts[-1][1].extend(data[start:end])

        return {"on_part_begin": part_begin, "on_header_field": header_field, "on_header_value": header_value,
                "on_header_end": header_end, "on_part_data": part_data}


def simple_parts(body: bytes, boundary: bytes) -> list[tuple[dict[bytes, bytes], bytes]] | None:
    """The parts of a plain multipart body, as every HTTP client writes one; None for anything else.

    Plain: the first delimiter at the very start, the close delimiter at the end, no transport
    padding, each part's headers one ``Name: value`` per line. This covers requests, httpx, curl
    and browsers, at a tenth of the cost of python-multipart's byte-wise state machine (the
    hot path of every upload); whatever it does not cover returns None, and python-multipart
    parses it (tests/unit/test_inputs_multipart.py checks both give the same parts).
    """
    delimiter = b"--" + boundary
    close = b"\r\n" + delimiter + b"--"
    if not body.startswith(delimiter + b"\r\n"):
        return None
    end = body.rfind(close)
    if end < 0 or body[end + len(close):] not in (b"", b"\r\n"):
        return None
    inner = body[len(delimiter) + 2:end]
    chunks = inner.split(b"\r\n" + delimiter + b"\r\n")
    if inner.count(b"\r\n" + delimiter) != len(chunks) - 1:  # a delimiter with padding or other bytes after it
        return None
    parts = []
    for chunk in chunks:
        head, sep, data = chunk.partition(b"\r\n\r\n")
        if not sep:
            return None
        headers = {}
        for line in head.split(b"\r\n"):
            name, colon, value = line.partition(b":")
            if not colon or not name or name != name.strip():
                return None
            headers[name.lower()] = value.strip()
        parts.append((headers, data))
    return parts


def _parse_parts(body: bytes, boundary: bytes, max_parts: int) -> list[tuple[dict[bytes, bytes], bytes]]:
    from python_multipart.exceptions import MultipartParseError
    from python_multipart.multipart import MultipartParser

    parts = simple_parts(body, boundary)
    if parts is not None:
        if len(parts) > max_parts:
            raise ApiError(422, "too_many_images", f"more than {max_parts - 1} form parts in one request")
        return parts
    collected = _Parts(max_parts)
    try:
        parser = MultipartParser(boundary, collected.callbacks())
        parser.write(body)
        parser.finalize()
    except (MultipartParseError, ValueError) as exc:
        raise ApiError(400, "bad_form", f"malformed multipart body ({exc})") from None
    return [(headers, bytes(data)) for headers, data in collected.parts]


def from_form(body: bytes, content_type: str, limits: Limits) -> list[bytes]:
    """Images from a multipart body: every part must be a file field named ``file``.

    Parsed on the whole (size-limited) body, which skips Starlette's per-file temporary files.
    """
    from python_multipart.multipart import parse_options_header

    boundary = parse_options_header(content_type)[1].get(b"boundary")
    if not boundary:
        raise ApiError(400, "bad_form", "multipart/form-data without a boundary parameter")
    blobs = []
    for i, (headers, data) in enumerate(_parse_parts(body, boundary, limits.max_images + 1)):
        disposition = parse_options_header(headers.get(b"content-disposition", b""))[1]
        name = disposition.get(b"name", b"").decode("latin-1")
        if name != "file":
            raise ApiError(422, "bad_form", f"unexpected form field {name!r}; send images as fields named 'file'")
        if b"filename" not in disposition:
            raise ApiError(422, "bad_form", f"form field 'file' #{i} is text, not a file upload")
        blobs.append(data)
    _count(len(blobs), limits)
    return blobs


def check_type(content_type: str | None) -> str:
    """The media type of a body /predict and /explain accept; 415 for any other, so a caller can
    refuse before the body is read."""
    kind = media_type(content_type)
    if kind in FORM_TYPES or kind in JSON_TYPES or kind in IMAGE_TYPES or kind.startswith("image/"):
        return kind
    raise ApiError(415, "unsupported_type", f"Content-Type {kind or 'none'!r} is not accepted; use {ACCEPTED}")


def from_body(content_type: str | None, body: bytes, limits: Limits) -> list[bytes]:
    """The encoded images of a /predict or /explain request body, in order."""
    kind = check_type(content_type)
    if kind in FORM_TYPES:
        return from_form(body, content_type or "", limits)
    if kind in JSON_TYPES:
        return from_json(body, limits)
    if not body:  # a raw image body
        raise ApiError(422, "no_images", "empty request body")
    return [body]


async def read_images(request: Request, limits: Limits) -> list[bytes]:
    """The encoded images of a /predict or /explain request, in order."""
    content_type = request.headers.get("content-type")
    check_type(content_type)  # before the body is read
    return from_body(content_type, await request.body(), limits)
