"""``cnnkit report RUN``: one self-contained HTML page (images embedded) about a run's quality."""
from __future__ import annotations

import argparse

from cnnkit.cli import add_runs_dir


def register(verbs: argparse._SubParsersAction) -> None:
    p = verbs.add_parser("report", help="one self-contained HTML report of a run: curves, metrics, robustness, Grad-CAM")
    p.add_argument("run", metavar="RUN", help="NAME, NAME:vN or a path to a run version")
    p.add_argument("--out", metavar="FILE.html", help="where to write it (default: the run's report.html)")
    p.add_argument("--data", help="evaluate on another dataset or folder with the same classes (default: the run's)")
    p.add_argument("--data-dir", help="root of the built-in datasets")
    p.add_argument("--variants", default=None, metavar="V[,V...]",
                   help="robustness variants, as for 'cnnkit eval' (default: clean,augmented,noise,blur,rotate,shift)")
    p.add_argument("--limit", type=int, metavar="N", help="evaluate on the first N test images only (a quick look)")
    p.add_argument("--examples", type=int, default=8, metavar="K", help="Grad-CAM examples (default: 8)")
    add_runs_dir(p)
    p.add_argument("--json", action="store_true", help="print JSON (the file written and what it holds)")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from cnnkit.cli import emit
    from cnnkit.errors import CnnkitError
    from cnnkit.evaluation.robustness import REPORT_VARIANTS, parse_variants
    from cnnkit.report.html import write_report

    if args.examples < 0:
        raise CnnkitError("--examples must be >= 0")
    variants = parse_variants(args.variants or ",".join(REPORT_VARIANTS))
    info = write_report(args.run, args.out, args.runs_dir, args.data, args.data_dir, variants, args.limit, args.examples)
    emit(args, info, f"{info['run']}: report written to {info['path']} ({info['bytes'] / 1e6:.1f} MB, {info['images']} images)")
    return 0
