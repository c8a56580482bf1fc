"""The Gradio app (issue 16): draw or upload an image, see the top classes, the model's input and Grad-CAM.

It is a face on the same server, not a second predictor: every answer is one call of
``cnnkit.serve.service.explain``, the function behind ``POST /explain``, on the served models of
the ``ModelRegistry``. So an image goes through the same decoding, limits (``max_pixels``, the
body size), preprocessing and monitoring hook (``Observer``, via the service) as in the JSON API,
and a refused image gets the JSON API's message as a ``gr.Error``. Uploads come in as a
``gr.File`` of raw bytes, not a ``gr.Image``, because Gradio would decode an image upload itself
(its own limits, its own errors) before cnnkit saw it.

Offline by construction: analytics off, a theme of system fonts (no web-font stylesheet), no
run history, no SSR (no Node server). ``gradio`` is imported only here, inside functions.
"""
from __future__ import annotations

import base64
import io
import os
from typing import Any

from cnnkit.errors import CnnkitError
from cnnkit.serve import service
from cnnkit.serve.limits import ApiError
from cnnkit.serve.settings import ServeSettings

EXTRA = 'needs gradio: pip install "cnnkit[gradio]"'
MOUNT_PATH = "/gradio"  # where cnnkit serve --ui gradio puts it; cnnkit gradio serves it at /
TOP_K = 5
# System fonts only: the default theme's are served by Gradio itself, but nothing here should
# depend on a font file, and a GoogleFont would be a request to the internet.
FONT = ["ui-sans-serif", "system-ui", "-apple-system", "Segoe UI", "Roboto", "sans-serif"]
FONT_MONO = ["ui-monospace", "SFMono-Regular", "Menlo", "Consolas", "monospace"]
# The model's input is tiny (28x28 for MNIST): show its pixels, not a blur of them.
CSS = "#seen img { image-rendering: pixelated; }"


def require_gradio(what: str = "the Gradio app") -> Any:
    """The gradio module, or the one-line error naming the extra (exit 2 at the CLI)."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # before import: gradio reads it at import time too
    try:
        import gradio
    except ImportError:
        raise CnnkitError(f"{what} {EXTRA}") from None
    return gradio


def _choice(model: Any) -> str:
    return f"{model.name}:v{model.version}"


def choices(registry: Any) -> tuple[list[str], str | None]:
    """Every served version as 'NAME:vN', and the default model's current version."""
    names = [_choice(m) for m in registry.models()]
    if registry.default is None or registry.current(registry.default) is None:
        return names, names[0] if names else None
    return names, f"{registry.default}:v{registry.current(registry.default)}"


def pick(registry: Any, choice: str | None) -> Any:
    """'NAME:vN' (or '' / None: the default model) -> the ServedModel; unknown -> gr.Error."""
    name, sep, version = (choice or "").rpartition(":v")
    try:
        if not sep or not version.isdigit():
            return registry.get(choice or None)
        return registry.get(name, int(version))
    except ApiError as exc:
        raise _error(exc) from None


def _error(exc: ApiError) -> Exception:
    import gradio as gr

    return gr.Error(exc.message, print_exception=False)


def _png(image: Any) -> bytes:
    buf = io.BytesIO()
    image.save(buf, "PNG")
    return buf.getvalue()


def _picture(data_url: str) -> Any:
    """One of the service's PNG data URLs (the model's input, the overlay) -> a PIL image."""
    from PIL import Image

    image = Image.open(io.BytesIO(base64.b64decode(data_url.partition(",")[2])))
    image.load()
    return image


async def _given(blobs: list[bytes]) -> list[bytes]:
    return blobs


async def answer(registry: Any, settings: ServeSettings, choice: str | None, blob: bytes) -> tuple[Any, ...]:
    """One encoded image -> (label, model input, Grad-CAM overlay, preprocessing steps), via /explain's code."""
    model = pick(registry, choice)
    limits = settings.limits
    try:
        out = await service.timed(service.explain(model, _given([blob]), TOP_K, None, "auto", limits), limits.timeout_s)
    except ApiError as exc:
        raise _error(exc) from None
    result = out["results"][0]
    label = {p["label"]: p["probability"] for p in result["predictions"]}
    steps = f"{out['model']}:v{out['version']} · " + " → ".join(result["preprocessing"])
    return label, _picture(result["input"]), _picture(result["overlay"]), steps


def _blank(image: Any) -> bool:
    """A cleared or untouched canvas, transparent or one flat colour: nothing to predict (not an error)."""
    from PIL import Image

    flat = Image.alpha_composite(Image.new("RGBA", image.size, "white"), image.convert("RGBA"))
    lo, hi = flat.convert("L").getextrema()
    return lo == hi


async def on_upload(registry: Any, settings: ServeSettings, choice: str | None, blob: bytes | None) -> tuple[Any, ...]:
    if not blob:
        return None, None, None, ""
    return await answer(registry, settings, choice, blob)


async def on_sketch(registry: Any, settings: ServeSettings, choice: str | None, value: Any) -> tuple[Any, ...]:
    """The Sketchpad's composite (RGBA: black ink, transparent elsewhere) as a PNG, like the web page's canvas;
    cnnkit's decoder puts it on white, as for any upload with transparency."""
    composite = (value or {}).get("composite")
    if composite is None or _blank(composite):
        return None, None, None, ""
    return await answer(registry, settings, choice, _png(composite))


def _is_digits(settings: ServeSettings) -> bool:
    """Whether the first model would run the digit preprocessing (read from its run, no weights loaded)."""
    if settings.digits != "auto":
        return settings.digits == "on"
    if not settings.models:
        return False
    from cnnkit.runs import RunStore

    spec = RunStore(settings.runs_dir).get(settings.models[0].ref).read("model.json") or {}
    return spec.get("preprocess", {}).get("kind") == "digits"  # what Predictor reads (cnnkit.predict)


def build(registry: Any, settings: ServeSettings) -> Any:
    """The Blocks: model picker, Sketchpad (digit runs) and upload in, label / input / Grad-CAM out."""
    gr = require_gradio()
    names = [_choice(m) for m in settings.models]  # (refreshed from the registry on page load)
    with gr.Blocks(title="cnnkit", analytics_enabled=False) as demo:
        gr.Markdown("## cnnkit\nDraw a digit or upload an image: the top classes, the image the model saw, "
                    "and where it looked (Grad-CAM). The same code as `POST /explain`.")
        picker = gr.Dropdown(names, value=names[0] if names else None, label="model", visible=len(names) > 1)
        with gr.Row():
            with gr.Column():
                with gr.Tab("draw", visible=_is_digits(settings)):
                    sketch = gr.Sketchpad(label="draw a digit", type="pil", image_mode="RGBA", format="png",
                                          canvas_size=(280, 280), layers=False, transforms=(), elem_id="sketch",
                                          brush=gr.Brush(colors=["#000000"], color_mode="fixed", default_size=14))
                with gr.Tab("upload"):
                    upload = gr.File(label="an image file", type="binary", file_types=["image"], elem_id="upload")
            with gr.Column():
                label = gr.Label(num_top_classes=TOP_K, label="top classes", elem_id="label")
                with gr.Row():
                    seen = gr.Image(label="what the model saw", type="pil", format="png", elem_id="seen",
                                    interactive=False, height=168)
                    cam = gr.Image(label="Grad-CAM", type="pil", format="png", elem_id="cam", interactive=False, height=168)
                steps = gr.Textbox(label="preprocessing", interactive=False, elem_id="steps")
        outputs = [label, seen, cam, steps]

        async def explain_upload(choice: str | None, blob: bytes | None) -> tuple[Any, ...]:
            return await on_upload(registry, settings, choice, blob)

        async def explain_sketch(choice: str | None, value: Any) -> tuple[Any, ...]:
            return await on_sketch(registry, settings, choice, value)

        def refresh() -> Any:  # versions loaded through the admin API since start-up
            now, default = choices(registry)
            return gr.Dropdown(choices=now, value=default, visible=len(now) > 1)

        upload.upload(explain_upload, [picker, upload], outputs, api_name="explain")
        sketch.change(explain_sketch, [picker, sketch], outputs, api_name="sketch", trigger_mode="always_last")
        demo.load(refresh, None, picker, api_visibility="private")
    return demo


def mount(app: Any, registry: Any, settings: ServeSettings) -> Any:
    """Mount the Blocks on the FastAPI ``app`` at ``settings.gradio_path`` (its lifespan wraps the app's)."""
    gr = require_gradio()
    theme = gr.themes.Default(font=FONT, font_mono=FONT_MONO)
    return gr.mount_gradio_app(app, build(registry, settings), path=settings.gradio_path or MOUNT_PATH,
                               footer_links=["api", "settings"], run_history=False, ssr_mode=False, theme=theme,
                               css=CSS, max_file_size=settings.limits.max_request_bytes, mcp_server=False,
                               show_error=True, server_name=settings.host, server_port=settings.port)

