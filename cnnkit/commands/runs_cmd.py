"""``cnnkit runs list|show``: the versioned runs and what each one holds."""
from __future__ import annotations

import argparse

from cnnkit.cli import add_runs_dir


def register(verbs: argparse._SubParsersAction) -> None:
    p = verbs.add_parser("runs", help="list and inspect versioned runs")
    sub = p.add_subparsers(dest="runs_verb", metavar="{list,show,compare}", parser_class=type(p))
    ls = sub.add_parser("list", help="every run version with its model, data and metrics")
    ls.add_argument("name", nargs="?", help="only versions of this run")
    show = sub.add_parser("show", help="config, model, data, metrics and history of one version")
    show.add_argument("run", metavar="NAME[:vN]")
    cmp = _compare_parser(sub)
    for q in (ls, show, cmp):
        add_runs_dir(q)
        q.add_argument("--json", action="store_true", help="print JSON")
    ls.set_defaults(handler=list_runs)
    show.set_defaults(handler=show_run)
    cmp.set_defaults(handler=compare)
    p.set_defaults(handler=lambda a: p.print_help() or 2)


def _fmt(value: object) -> str:
    return f"{value:.4f}" if isinstance(value, float) else ("-" if value is None else str(value))


def list_runs(args: argparse.Namespace) -> int:
    from cnnkit.cli import emit
    from cnnkit.runs import RunStore

    store = RunStore(args.runs_dir)
    runs = [r.summary() for r in store.all() if args.name in (None, r.name)]
    header = f"{'RUN':<28} {'STATE':<12} {'MODEL':<14} {'DATA':<16} {'TEST ACC':>8}  CREATED"
    rows = [f"{r['ref']:<28} {_fmt(r['state']):<12} {_fmt(r['model']):<14} {_fmt(r['data']):<16} "
            f"{_fmt(r['metrics'].get('test_accuracy')):>8}  {_fmt(r['created'])}" for r in runs]
    emit(args, runs, "\n".join([header, *rows]) if runs else f"no runs in {store.root}")
    return 0


def show_run(args: argparse.Namespace) -> int:
    from cnnkit.cli import emit
    from cnnkit.runs import RunStore

    run = RunStore(args.runs_dir).get(args.run)
    info = {**run.summary(), "status": run.status(), "config": run.load_config(), "spec": run.read("model.json", {}),
            "data_record": run.read("data.json", {}), "env": run.read("env.json", {}), "history": run.read("history.json", [])}
    lines = [f"{run.ref}  ({info['status'].get('state')})  {run.path}",
             f"  model: {info['model']} {info['spec'].get('kwargs') or ''}  input {info['spec'].get('in_channels')}x"
             f"{info['spec'].get('image_size')}  classes {len(info['spec'].get('classes', []))}",
             f"  data: {info['data']}  checksum {str(info['data_record'].get('checksum'))[:16]}  "
             f"counts {info['data_record'].get('counts')}"]
    from cnnkit.training.finetune import INIT_FILE, lineage

    info["init"], info["lineage"] = run.read(INIT_FILE), lineage(run, args.runs_dir)
    if info["lineage"]:
        lines.append(f"  lineage: {run.ref} <- " + " <- ".join(info["lineage"]))
        lines.append(f"  init: {info['init']['copied']}/{info['init']['total']} tensors copied, "
                     f"{len(info['init']['not_copied'])} not copied")
    lines += [f"  {k}: {_fmt(v)}" for k, v in info["metrics"].items()]
    lines += [f"  epoch {h['epoch']}: train loss {h['train_loss']:.4f} acc {h['train_accuracy']:.4f}"
              + (f" | val loss {h['val_loss']:.4f} acc {h['val_accuracy']:.4f}" if "val_loss" in h else "")
              for h in info["history"]]
    emit(args, info, "\n".join(lines))
    return 0


def _compare_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    q = sub.add_parser("compare", help="runs side by side on the same test images, with exact McNemar tests")
    q.add_argument("runs", nargs="+", metavar="RUN", help="two or more NAME, NAME:vN or paths")
    q.add_argument("--data", help="evaluate all on this dataset or folder (default: the first run's)")
    q.add_argument("--data-dir", help="root of the built-in datasets")
    q.add_argument("--split", default="test", choices=("test", "val", "train"), help="which split (default: test)")
    q.add_argument("--variants", default="clean", metavar="V[,V...]", help="as for 'cnnkit eval' (default: clean)")
    q.add_argument("--limit", type=int, metavar="N", help="only the first N images of the split")
    q.add_argument("--bootstrap", type=int, default=1000, metavar="N", help="bootstrap resamples for the 95%% intervals")
    q.add_argument("--alpha", type=float, default=0.05, help="significance level of the paired tests (default: 0.05)")
    q.add_argument("--batch-size", type=int, default=1024, help="evaluation batch size")
    return q


def format_compare(c: dict) -> str:
    refs = [r["run"] for r in c["runs"]]
    w = max(12, *(len(r) for r in refs)) + 1
    lines = [f"{len(refs)} runs on {c['data']} {c['split']} ({c['images']} images, {c['split_key']})"]
    for v, rows in c["metrics"].items():
        lines += ["", f"[{v}] {'run':<{w}} {'accuracy (95% CI)':<26} {'macro F1 (95% CI)':<24} {'loss':>7} {'ECE':>7}"]
        for r in rows:
            (lo, hi), (flo, fhi) = r["accuracy_ci"], r["macro_f1_ci"]
            lines.append(f"{'':<{len(v) + 2}} {r['run']:<{w}} {r['accuracy']:.4f} ({lo:.4f}-{hi:.4f})    "
                         f"{r['macro_f1']:.4f} ({flo:.4f}-{fhi:.4f})  {r['loss']:>7.4f} {r['ece']:>7.4f}")
    per = c["per_class"][c["variants"][0]]
    lines += ["", f"per-class F1 on {c['variants'][0]} (delta vs {refs[0]}):"]
    lines += [f"  {row['class'][:14]:<14} " + "  ".join(f"{f:.4f}" + (f" ({d:+.4f})" if i else "")
                                                      for i, (f, d) in enumerate(zip(row["f1"], row["f1_delta"])))
              for row in per]
    lines += ["", "paired tests:"] + [f"  [{p['variant']}] {p['verdict']}" for p in c["pairs"]]
    return "\n".join(lines)


def compare(args: argparse.Namespace) -> int:
    from cnnkit.cli import emit
    from cnnkit.errors import CnnkitError
    from cnnkit.evaluation.compare import compare_runs
    from cnnkit.evaluation.robustness import parse_variants

    if not 0 < args.alpha < 1:
        raise CnnkitError(f"--alpha must be between 0 and 1, got {args.alpha}")
    if args.bootstrap < 10 or args.batch_size < 1:
        raise CnnkitError("--bootstrap must be >= 10 and --batch-size >= 1")
    result = compare_runs(args.runs, args.runs_dir, args.data, args.data_dir, args.split, parse_variants(args.variants),
                          args.batch_size, args.bootstrap, args.limit, args.alpha)
    emit(args, result, format_compare(result))
    return 0
