"""``cnnkit serve RUN [RUN ...]``: the runs behind an HTTP API, KServe v2 and a web page."""
from __future__ import annotations

import argparse

from cnnkit.cli import add_runs_dir
from cnnkit.commands.monitoring_flags import add_monitoring_flags, monitoring_from_args


def register(verbs: argparse._SubParsersAction) -> None:
    p = verbs.add_parser("serve", help="serve runs over HTTP (JSON API, KServe v2, web page, metrics)",
                         description="Serve one or more runs: POST /predict, /explain, KServe v2 under /v2, "
                                     "Prometheus /metrics, OpenAPI /docs and a drawing page at /. "
                                     "Admin loads need CNNKIT_ADMIN_TOKEN.")
    p.add_argument("runs", metavar="RUN", nargs="+",
                   help="NAME (latest version), NAME:vN, a path, or ALIAS=RUN to serve it under another name; "
                        "the first is the default model")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1; 0.0.0.0 for all)")
    p.add_argument("--port", type=int, default=8000, help="port (default: 8000)")
    p.add_argument("--workers", default="auto",
                   help="worker processes, or auto: one per core this process may use (affinity and cgroup "
                        "quota; default)")
    p.add_argument("--threads", default="auto",
                   help="torch threads per forward pass in each worker, or auto (1 per worker; default)")
    p.add_argument("--backend", choices=("torch", "onnx", "onnx-int8"), default="torch",
                   help="torch: eager PyTorch; onnx: export (checked against PyTorch) and run with ONNX Runtime; "
                        "onnx-int8: the INT8 export (cnnkit export --quantize int8), refused if it loses more than "
                        "0.5 points of test accuracy")
    p.add_argument("--max-batch", type=int, default=32, help="images per forward pass at most (default: 32)")
    p.add_argument("--max-wait-ms", type=float, default=2.0,
                   help="how long the first image of a batch may wait for others (default: 2)")
    p.add_argument("--max-queue", type=int, default=64,
                   help="images waiting per model in each worker before 503 + Retry-After (default: 64)")
    p.add_argument("--digits", choices=("auto", "on", "off"), default="auto",
                   help="digit photo preprocessing: auto = for runs trained on digits (default)")
    p.add_argument("--max-images", type=int, default=64, help="images per request at most (default: 64)")
    p.add_argument("--max-request-mb", type=float, default=20.0, help="request body limit in MB (default: 20)")
    p.add_argument("--max-pixels", type=int, default=40_000_000, help="pixels per image at most (default: 40M)")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds per request at most (default: 30)")
    add_runs_dir(p)
    p.add_argument("--data-dir", help="data root, to check ONNX exports on the runs' test images")
    p.add_argument("--log-level", default="warning", choices=("debug", "info", "warning", "error"))
    p.add_argument("--ui", choices=("page", "gradio"), default="page",
                   help="page: cnnkit's drawing page at / (default); gradio: also a Gradio app at /gradio "
                        "(needs cnnkit[gradio]; one worker process)")
    add_monitoring_flags(p)
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    import os

    from cnnkit.errors import CnnkitError
    from cnnkit.serve.server import banner, export_models, main_log, resolve_models, serve
    from cnnkit.serve.settings import ADMIN_ENV, Limits, ServeSettings

    if args.max_request_mb <= 0 or args.max_images < 1 or args.max_pixels < 1 or args.timeout <= 0:
        raise CnnkitError("--max-request-mb, --max-images, --max-pixels and --timeout must be positive")
    gradio_path = None
    if args.ui == "gradio":
        from cnnkit.serve.gradio_app import MOUNT_PATH, require_gradio

        require_gradio("cnnkit serve --ui gradio")
        gradio_path, args.workers = MOUNT_PATH, "1" if args.workers == "auto" else args.workers
    workers, threads, how = _workers(args.workers, args.threads)
    limits = Limits(max_request_bytes=int(args.max_request_mb * 1024 * 1024), max_pixels=args.max_pixels,
                    max_images=args.max_images, timeout_s=args.timeout)
    settings = ServeSettings(
        models=resolve_models(args.runs, args.runs_dir), backend=args.backend, host=args.host, port=args.port,
        workers=workers, threads=threads, max_batch=args.max_batch, max_wait_ms=args.max_wait_ms,
        max_queue=args.max_queue, digits=args.digits, limits=limits, data_dir=args.data_dir, runs_dir=args.runs_dir,
        admin_token=os.environ.get(ADMIN_ENV) or None, monitoring=monitoring_from_args(args), gradio_path=gradio_path)
    settings = export_models(settings, main_log)
    main_log(banner(settings))
    if gradio_path:
        main_log(f"  Gradio app http://{settings.host}:{settings.port}{gradio_path}/")
    main_log(f"  workers {workers} x {threads} torch thread(s): {how}")
    return serve(settings, args.log_level)


def _workers(workers: str, threads: str) -> tuple[int, int, str]:
    """``--workers``/``--threads`` (a number or auto) -> (workers, threads, how they were chosen)."""
    from cnnkit.errors import CnnkitError
    from cnnkit.serve.cores import auto_workers

    auto_w, auto_t, how = auto_workers()
    try:
        chosen_w = auto_w if workers == "auto" else int(workers)
        chosen_t = auto_t if threads == "auto" else int(threads)
    except ValueError:
        raise CnnkitError(f"--workers and --threads take a number or auto, got {workers!r} and {threads!r}") from None
    if workers != "auto" or threads != "auto":
        how = f"as given ({how})"
    return chosen_w, chosen_t, how
