"""The JSON shapes of the API, for the OpenAPI document (/openapi.json, /docs).

Handlers build plain dicts for speed; these models describe them, with examples, and the
request bodies that FastAPI cannot infer from a handler that reads the raw request.
"""
from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

# A 28x28 MNIST "7" as PNG, base64: a real, decodable example for the docs and for schemathesis.
EXAMPLE_PNG = (
    "iVBORw0KGgoAAAANSUhEUgAAABwAAAAcCAAAAABXZoBIAAAAwUlEQVR42mNgGDaAEUKFpD77sfTFHeyS9xQYGBg+X4UKPuk6w8DA"
    "wMDAAuGm6l/TMnSweCzLwPDntSTDozPIOhkYGBgYBA3PmDIw/Lh1XShnGi5nBP+9KIRLTuzl/2AokwlDMlv0/U1cGq1//rPD6fHW"
    "f7tZcclxnv1hhVNj3b9tOOW8f3+wxCUnfPffMlxyzKf/3VbGJan2758vLjn5B/+KGXF78Z8JLjnbT+iSSGFrw8Nw9wuKJAsy56Lz"
    "O+ITGABpETyQcCy90wAAAABJRU5ErkJggg=="
)


class Prediction(BaseModel):
    index: int = Field(description="class index", examples=[7])
    label: str = Field(description="class name", examples=["7"])
    probability: float = Field(ge=0, le=1, examples=[0.998])


class Decision(Prediction):
    rule: str = Field(description="what decided: 'argmax', or the run's saved rule (cnnkit eval --target-recall --save-rule)",
                      examples=["argmax"])


class ImageResult(BaseModel):
    predictions: list[Prediction] = Field(description="top classes, most probable first")
    decision: Decision | None = Field(None, description="the answer under the run's decision rule, and the rule")
    preprocessing: list[str] = Field(description="preprocessing steps that ran on this image",
                                     examples=[["grayscale", "invert", "crop", "fit-20x20", "center-of-mass"]])
    input: str | None = Field(None, description="the image the model saw, as a PNG data URL (include_input=true)")


class PredictResponse(BaseModel):
    model: str = Field(examples=["mnist-cnn"])
    version: int = Field(examples=[1])
    results: list[ImageResult] = Field(description="one result per image, in request order")

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "model": "mnist-cnn", "version": 1, "results": [{
            "predictions": [{"index": 7, "label": "7", "probability": 0.998},
                            {"index": 2, "label": "2", "probability": 0.001}],
            "preprocessing": ["crop", "fit-20x20", "center-of-mass"]}]}]})


class ExplainResult(ImageResult):
    target: int = Field(description="class the map explains")
    layer: str = Field(description="layer whose activations were used", examples=["features.6"])
    heatmap: list[list[float]] = Field(description="Grad-CAM map in [0, 1], rows of the model's input (at most 64x64)")
    overlay: str = Field(description="the map blended over the input, as a PNG data URL")


class ExplainResponse(BaseModel):
    model: str
    version: int
    method: str = Field(examples=["gradcam"])
    results: list[ExplainResult]


class ErrorResponse(BaseModel):
    error: str = Field(description="what is wrong, in one line", examples=["image 0: not a PNG, JPEG, BMP, WebP, GIF or TIFF image"])
    kind: str = Field(description="machine-readable category", examples=["bad_image"])


class ModelInfo(BaseModel):
    name: str
    version: int
    run: str
    backend: str
    classes: list[str]
    kind: str | None
    input: dict[str, int]
    digit_preprocessing: bool
    current: bool


class ModelsResponse(BaseModel):
    default: str | None
    models: list[ModelInfo]


class LoadRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    run: str = Field(description="run to load: NAME, NAME:vN or a path", examples=["mnist-cnn:v2"])
    name: str | None = Field(None, description="serve it under this name (default: the run's name)")
    make_current: bool = Field(True, description="answer unversioned requests for the name with it")


IMAGE_BODY: dict[str, Any] = {
    "required": True,
    "content": {
        "multipart/form-data": {
            "schema": {"type": "object", "required": ["file"], "properties": {
                "file": {"type": "array", "items": {"type": "string", "format": "binary"}, "minItems": 1, "maxItems": 64,
                         "description": "one or more images (PNG, JPEG, BMP, WebP, GIF, TIFF); repeat the field"}}},
            "encoding": {"file": {"contentType": "image/png, image/jpeg, image/bmp, image/webp, image/gif, image/tiff"}},
        },
        "application/json": {
            "schema": {"type": "object", "required": ["images"], "additionalProperties": False, "properties": {
                "images": {"type": "array", "minItems": 1, "maxItems": 64,
                           "items": {"type": "string", "format": "byte", "description": "base64 image (or a data URL)"}}}},
            "example": {"images": [EXAMPLE_PNG]},
        },
        "image/png": {"schema": {"type": "string", "format": "binary"}},
        "image/jpeg": {"schema": {"type": "string", "format": "binary"}},
    },
}

INFER_BODY: dict[str, Any] = {
    "required": True,
    "content": {"application/json": {
        "schema": {"type": "object", "required": ["inputs"], "properties": {
            "id": {"type": "string"},
            "inputs": {"type": "array", "minItems": 1, "maxItems": 1, "items": {
                "type": "object", "required": ["name", "datatype", "shape", "data"], "properties": {
                    "name": {"type": "string", "minLength": 1},
                    "datatype": {"type": "string", "enum": ["UINT8", "FP32", "BYTES"]},
                    "shape": {"type": "array", "minItems": 1, "items": {"type": "integer", "minimum": 0}},
                    "data": {"type": "array", "minItems": 1},
                    "parameters": {"type": "object"}}}},
            "outputs": {"type": "array", "items": {"type": "object", "required": ["name"], "properties": {
                "name": {"type": "string", "enum": ["probabilities", "label"]}, "parameters": {"type": "object"}}}},
            "parameters": {"type": "object"}}},
        "example": {"inputs": [{"name": "input", "datatype": "BYTES", "shape": [1], "data": [EXAMPLE_PNG]}]},
    }},
}


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    return {code: {"model": ErrorResponse} for code in codes}
