"""``cnnkit runs list|show``: the versioned runs and what each one holds."""
from __future__ import annotations

import argparse


def register(verbs: argparse._SubParsersAction) -> None:
    p = verbs.add_parser("runs", help="list and inspect versioned runs")
    sub = p.add_subparsers(dest="runs_verb", metavar="{list,show}", parser_class=type(p))
    ls = sub.add_parser("list", help="every run version with its model, data and metrics")
    ls.add_argument("name", nargs="?", help="only versions of this run")
    show = sub.add_parser("show", help="config, model, data, metrics and history of one version")
    show.add_argument("run", metavar="NAME[:vN]")
    for q in (ls, show):
        q.add_argument("--runs-dir", help="where runs live (default: $CNNKIT_RUNS, else ./runs)")
        q.add_argument("--json", action="store_true", help="print JSON")
    ls.set_defaults(handler=list_runs)
    show.set_defaults(handler=show_run)
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
             f"  data: {info['data']}  checksum {str(info['data_record'].get('checksum'))[:16]}  counts {info['data_record'].get('counts')}"]
    lines += [f"  {k}: {_fmt(v)}" for k, v in info["metrics"].items()]
    lines += [f"  epoch {h['epoch']}: train loss {h['train_loss']:.4f} acc {h['train_accuracy']:.4f}"
              + (f" | val loss {h['val_loss']:.4f} acc {h['val_accuracy']:.4f}" if "val_loss" in h else "")
              for h in info["history"]]
    emit(args, info, "\n".join(lines))
    return 0
