"""``cnnkit export RUN --format onnx|pt2|hf``: a checked export of a run, with its report."""
from __future__ import annotations

import argparse
import textwrap
from typing import Any

from cnnkit.cli import add_runs_dir


def _formats_help() -> str:
    from cnnkit.export.names import FORMATS

    blocks = ["formats (each checked before it is kept; report in RUN/export/<format>.json, reused while the "
              "weights are unchanged):"]
    for name, text in FORMATS.items():
        blocks.append(textwrap.fill(text, 100, initial_indent=f"  {name:<5} ", subsequent_indent=" " * 8))
    blocks.append("examples:\n  cnnkit export mnist-cnn --format onnx --quantize int8 --out deploy/\n"
                  "  cnnkit export mnist-cnn --format hf --out mnist-cnn-hub && cnnkit push mnist-cnn me/mnist-cnn")
    return "\n\n".join(blocks)


def register(verbs: argparse._SubParsersAction) -> None:
    p = verbs.add_parser("export", help="export a run: ONNX (optionally INT8), torch.export pt2, or a Hugging Face Hub folder",
                         description="Export a finished run in a format other tools deploy.", epilog=_formats_help(),
                         formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run", metavar="RUN", help="NAME, NAME:vN, a path to a run version, or a Hub folder / hf://OWNER/REPO")
    p.add_argument("--format", required=True, metavar="{onnx,pt2,hf}", help="what to export (see below)")
    p.add_argument("--quantize", metavar="{int8}", help="with --format onnx: static INT8 quantization (ONNX Runtime)")
    p.add_argument("--max-drop", type=float, metavar="POINTS",
                   help="--quantize: refuse an INT8 model losing more test-accuracy points than this (default: 0.5)")
    p.add_argument("--force", action="store_true", help="--quantize: keep the INT8 model even beyond --max-drop")
    p.add_argument("--include-onnx", action="store_true", help="--format hf: add the checked model.onnx to the folder")
    p.add_argument("--out", metavar="DIR", help="copy the export there (for hf: DIR becomes the Hub folder)")
    p.add_argument("--data-dir", help="root of the built-in datasets (the checks use the run's test images)")
    add_runs_dir(p)
    p.add_argument("--json", action="store_true", help="print the export report as JSON")
    p.set_defaults(handler=run)


def _mb(n: int) -> str:
    return f"{n / 1e6:.2f} MB"


def format_report(r: dict[str, Any]) -> str:
    state = "reused (weights unchanged)" if r.get("cached") else "exported and checked"
    lines = [f"{r['run']} -> {r['format']}: {r['path']} ({_mb(r['bytes'])}), {state}"]
    if r["format"] in ("onnx", "pt2"):
        version = f"opset {r['opset']}" if "opset" in r else f"torch {r.get('torch')}"
        lines.append(f"  {version}; vs eager PyTorch on {r['images']} test images: max |diff| {r['max_abs_diff']:.1e}, "
                     f"argmax agreement {r['argmax_agreement']:.2%}")
    if r["format"] == "onnx-int8":
        f, i = r["fp32"], r["int8"]
        lines += [f"  test accuracy ({r['test_images']} images): FP32 {f['accuracy']:.4f}, INT8 {i['accuracy']:.4f} "
                  f"({r['accuracy_drop_points']:+.2f} points lost; limit {r['max_drop']}{', forced' if r['forced'] else ''})",
                  f"  size: FP32 {_mb(f['bytes'])}, INT8 {_mb(i['bytes'])}; batch-{r['throughput_batch']} throughput "
                  f"({r['threads']} threads): FP32 {f['images_per_s']:,.0f}/s, INT8 {i['images_per_s']:,.0f}/s "
                  f"({r['speedup']:.2f}x)"]
    if r["format"] == "hf":
        lines.append(f"  files: {', '.join(r['files'])}")
        lines += [f"  card: {e['metric']} {e['value']:.4f} on {e['dataset']} {e['split']}" for e in r["eval_results"]]
    if "out" in r:
        lines.append(f"  copied to {r['out']}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from cnnkit.cli import emit
    from cnnkit.export.formats import export_run

    report = export_run(args.run, args.format, args.quantize, args.out, runs_dir=args.runs_dir, data_dir=args.data_dir,
                        max_drop=args.max_drop, force=args.force, include_onnx=args.include_onnx)
    emit(args, report, format_report(report))
    return 0
