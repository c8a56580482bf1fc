"""``cnnkit gradio RUN [RUN ...]``: the Gradio app alone, on its own server (cnnkit.serve.gradio_app)."""
from __future__ import annotations

import argparse

from cnnkit.cli import add_runs_dir
from cnnkit.commands.monitoring_flags import add_monitoring_flags, monitoring_from_args


def register(verbs: argparse._SubParsersAction) -> None:
    p = verbs.add_parser("gradio", help="a Gradio app to draw or upload an image and see the answer and Grad-CAM",
                         description="Serve runs as a Gradio app at /: a sketchpad (digit runs) and an upload, the top "
                                     "classes, the image the model saw and Grad-CAM, a model picker for several runs. "
                                     "The JSON API and /metrics answer on the same port. Needs cnnkit[gradio].")
    p.add_argument("runs", metavar="RUN", nargs="+",
                   help="NAME (latest version), NAME:vN, a path, or ALIAS=RUN; the first is the default model")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1; 0.0.0.0 for all)")
    p.add_argument("--port", type=int, default=7860, help="port (default: 7860, Gradio's)")
    p.add_argument("--threads", type=int, default=1, help="torch threads per forward pass (default: 1)")
    p.add_argument("--digits", choices=("auto", "on", "off"), default="auto",
                   help="digit photo preprocessing: auto = for runs trained on digits (default)")
    p.add_argument("--max-request-mb", type=float, default=20.0, help="upload size limit in MB (default: 20)")
    p.add_argument("--max-pixels", type=int, default=40_000_000, help="pixels per image at most (default: 40M)")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds per request at most (default: 30)")
    add_runs_dir(p)
    p.add_argument("--log-level", default="warning", choices=("debug", "info", "warning", "error"))
    add_monitoring_flags(p)
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from cnnkit.errors import CnnkitError
    from cnnkit.serve.gradio_app import require_gradio
    from cnnkit.serve.server import main_log, resolve_models, serve
    from cnnkit.serve.settings import Limits, ServeSettings

    require_gradio("cnnkit gradio")
    if args.max_request_mb <= 0 or args.max_pixels < 1 or args.timeout <= 0:
        raise CnnkitError("--max-request-mb, --max-pixels and --timeout must be positive")
    limits = Limits(max_request_bytes=int(args.max_request_mb * 1024 * 1024), max_pixels=args.max_pixels,
                    timeout_s=args.timeout)
    settings = ServeSettings(models=resolve_models(args.runs, args.runs_dir), host=args.host, port=args.port,
                             threads=args.threads, digits=args.digits, limits=limits, runs_dir=args.runs_dir,
                             monitoring=monitoring_from_args(args), gradio_path="/")
    models = ", ".join(f"{m.name}:v{m.version}" for m in settings.models)
    main_log(f"cnnkit gradio: {models} on http://{settings.host}:{settings.port}/")
    return serve(settings, args.log_level)
