"""``cnnkit eval RUN``: every metric of a finished run on a split of its data (or other data),
optionally on corrupted variants of it and with test-time augmentation; results are stored
with the run under ``eval/`` and reused."""
from __future__ import annotations

import argparse
from typing import Any

from cnnkit.cli import add_runs_dir


def register(verbs: argparse._SubParsersAction) -> None:
    p = verbs.add_parser("eval", help="evaluate a run on its test set (or --data/--split), with robustness variants")
    p.add_argument("run", metavar="RUN", help="NAME, NAME:vN or a path to a run version")
    p.add_argument("--data", help="another dataset or folder with the same classes (default: the run's)")
    p.add_argument("--data-dir", help="root of the built-in datasets")
    p.add_argument("--split", default="test", choices=("test", "val", "train"), help="which split (default: test)")
    p.add_argument("--variants", default="clean", metavar="V[,V...]",
                   help="clean, augmented, noise[:std], blur[:sigma], rotate[:deg], shift[:px], contrast[:f], "
                        "occlude[:area]; 'all' = every one (default: clean)")
    p.add_argument("--tta", action="store_true", help="also report test-time augmentation (shifts, and flips for photos)")
    p.add_argument("--bootstrap", type=int, default=1000, metavar="N", help="bootstrap resamples for the 95%% intervals")
    p.add_argument("--limit", type=int, metavar="N", help="only the first N images of the split (a quick look)")
    p.add_argument("--no-cache", action="store_true", help="recompute even if a stored result matches")
    add_runs_dir(p)
    p.add_argument("--batch-size", type=int, default=1024, help="evaluation batch size")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--target-recall", metavar="CLASS=R", help="choose on the val split the rule reaching recall R for "
                   "CLASS (answer CLASS when P(CLASS) >= t); report test precision and recall under it")
    p.add_argument("--save-rule", action="store_true", help="with --target-recall: store the rule in the run; predict "
                   "and serve then apply it")
    p.set_defaults(handler=run)


def _pct(x: float) -> str:
    return f"{100 * x:.2f}%"


def _num(x: float | None) -> str:
    return "-" if x is None else f"{x:.4f}"


def variant_table(key: str, m: dict[str, Any]) -> list[str]:
    """One variant: headline metrics with intervals, then per-class precision/recall/F1/support."""
    lo, hi = m["accuracy_ci"]
    flo, fhi = m["macro_f1_ci"]
    topk = "  ".join(f"{k.replace('_', '-')} {_pct(v)}" for k, v in m["top_k"].items())
    lines = [f"[{key}]  accuracy {_pct(m['accuracy'])} (95% CI {_pct(lo)}-{_pct(hi)})  macro F1 {m['macro_f1']:.4f} "
             f"({flo:.4f}-{fhi:.4f})  loss {m['loss']:.4f}  ECE {m['ece']:.4f}  {topk}",
             f"  {'class':<16} {'precision':>9} {'recall':>9} {'f1':>9} {'support':>8} {'ROC AUC':>8} {'AP':>7}"]
    for row in m["per_class"]:
        lines.append(f"  {row['class'][:16]:<16} {row['precision']:>9.4f} {row['recall']:>9.4f} {row['f1']:>9.4f} {row['support']:>8}"
                     f" {_num(row.get('roc_auc')):>8} {_num(row.get('average_precision')):>7}")
    for name in ("macro", "weighted"):
        a = m[name]
        lines.append(f"  {name + ' avg':<16} {a['precision']:>9.4f} {a['recall']:>9.4f} {a['f1']:>9.4f} {m['images']:>8}")
    return lines


def format_eval(result: dict[str, Any]) -> str:
    lines = [f"{result['run']} on {result['data']} {result['split']} ({result['images']} images): "
             f"accuracy {result['accuracy']:.4f}, loss {result['loss']:.4f}"]
    for key, m in result["results"].items():
        lines += ["", *variant_table(key, m)]
    if len(result["results"]) > 1:
        base = result["accuracy"]
        lines += ["", f"{'variant':<22} {'accuracy':>9} {'vs clean':>9} {'macro F1':>9} {'ECE':>7}"]
        lines += [f"{key:<22} {_pct(m['accuracy']):>9} {100 * (m['accuracy'] - base):>+8.2f}p {m['macro_f1']:>9.4f} {m['ece']:>7.4f}"
                  for key, m in result["results"].items()]
    lines.append(f"stored in {result['stored_in']}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from cnnkit.cli import emit
    from cnnkit.errors import CnnkitError
    from cnnkit.evaluation.evaluate import evaluate_full
    from cnnkit.evaluation.robustness import parse_variants

    if args.bootstrap < 10 or args.batch_size < 1:
        raise CnnkitError("--bootstrap must be >= 10 and --batch-size >= 1")
    if args.save_rule and not args.target_recall:
        raise CnnkitError("--save-rule needs --target-recall CLASS=R")
    if args.target_recall:
        from cnnkit.evaluation.operating_point import evaluate_target_recall, format_report

        report = evaluate_target_recall(args.run, args.target_recall, args.runs_dir, save=args.save_rule)
        emit(args, report, format_report(report))
        return 0
    variants = parse_variants(args.variants)
    result = evaluate_full(args.run, args.runs_dir, args.data, args.data_dir, args.split, args.batch_size, variants,
                           args.tta, args.bootstrap, cache=not args.no_cache, limit=args.limit)
    emit(args, result, format_eval(result))
    return 0
