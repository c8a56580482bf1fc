"""``cnnkit explain RUN``: filters, feature maps, Grad-CAM / integrated gradients, and errors, as PNGs."""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from cnnkit.cli import add_runs_dir


def register(verbs: argparse._SubParsersAction) -> None:
    p = verbs.add_parser("explain", help="filters, feature maps, Grad-CAM and the worst errors of a run, as PNG files")
    p.add_argument("run", metavar="RUN", help="NAME, NAME:vN or a path to a run version")
    p.add_argument("--filters", nargs="?", const="", metavar="LAYER", help="kernels of a conv layer (default: the first)")
    p.add_argument("--feature-maps", nargs="+", metavar=("IMAGE", "LAYER"),
                   help="activations of LAYER (default: the first conv block) for IMAGE (a file or test:N)")
    p.add_argument("--gradcam", nargs="+", metavar="IMAGE", help="Grad-CAM and integrated gradients for images (files or test:N)")
    p.add_argument("--target", metavar="CLASS", help="class to explain (name or index; default: each image's prediction)")
    p.add_argument("--layer", help="layer for Grad-CAM (default: the last conv block)")
    p.add_argument("--errors", action="store_true", help="the top-loss test images and the most-confused class pairs")
    p.add_argument("--top", type=int, default=16, metavar="K", help="how many top losses (default: 16)")
    p.add_argument("--out", metavar="DIR", help="where to write the PNGs (default: the run's explain/ folder)")
    p.add_argument("--data-dir", help="root of the built-in datasets")
    add_runs_dir(p)
    p.add_argument("--json", action="store_true", help="print JSON (files written and the arrays' summaries)")
    p.set_defaults(handler=run)


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in name)[:60]


def _needs_data(args: argparse.Namespace) -> bool:
    refs = [*(args.gradcam or []), *(args.feature_maps[:1] if args.feature_maps else [])]
    return args.errors or any(r.split(":")[0] in ("train", "val", "test") and not Path(r).exists() for r in refs)


def _explain(args: argparse.Namespace, loaded: Any, write: Any) -> dict[str, Any]:
    import numpy as np

    from cnnkit.evaluation.evaluate import evaluate_loaded, run_dataset
    from cnnkit.explain import figures

    ds = run_dataset(loaded, None, args.data_dir) if _needs_data(args) else None
    result: dict[str, Any] = {}
    if args.filters is not None:
        png, result["filters"] = figures.filters_figure(loaded, args.filters or None)
        write(f"filters-{_safe(result['filters']['layer'])}.png", png)
    if args.feature_maps:
        images, names, _ = figures.load_images(loaded, args.feature_maps[:1], ds)
        layer = args.feature_maps[1] if len(args.feature_maps) > 1 else None
        png, result["feature_maps"] = figures.feature_maps_figure(loaded, images[0], names[0], layer)
        write(f"feature-maps-{_safe(names[0])}-{_safe(result['feature_maps']['layer'])}.png", png)
    if args.gradcam:
        images, names, labels = figures.load_images(loaded, args.gradcam, ds)
        target = figures.parse_target(loaded, args.target)
        png, result["gradcam"] = figures.attribution_figure(loaded, images, names, labels, target, args.layer)
        write("gradcam.png", png)
    if args.errors:
        ev = evaluate_loaded(loaded, ds)
        m, pred = ev.summary["results"]["clean"], ev.predictions["clean"]
        top, pairs, result["errors"] = figures.errors_figures(loaded, ev.subset.images, pred.log_probs, pred.labels,
                                                              np.asarray(m["confusion"]), args.top)
        write("errors-top-losses.png", top)
        write("errors-confused-pairs.png", pairs)
    return result


def run(args: argparse.Namespace) -> int:
    from cnnkit.cli import emit
    from cnnkit.errors import CnnkitError
    from cnnkit.io import write_atomic
    from cnnkit.runs import load

    if args.filters is None and not (args.feature_maps or args.gradcam or args.errors):
        raise CnnkitError("nothing to explain: pass --filters, --feature-maps IMAGE, --gradcam IMAGE... or --errors")
    if args.feature_maps and len(args.feature_maps) > 2:
        raise CnnkitError("--feature-maps takes one IMAGE and an optional LAYER")
    if args.top < 1:
        raise CnnkitError("--top must be >= 1")
    loaded = load(args.run, args.runs_dir)
    out = Path(args.out) if args.out else loaded.run.file("explain")
    files: list[str] = []

    def write(name: str, png: bytes) -> None:
        write_atomic(out / name, lambda p: p.write_bytes(png))
        files.append(str(out / name))

    result = {"run": loaded.ref, **_explain(args, loaded, write), "files": files}
    emit(args, result, "\n".join([f"{loaded.ref}: wrote {len(files)} file(s)", *(f"  {f}" for f in files)]))
    return 0
