"""``cnnkit train``: a new versioned run from flags and/or a YAML config (or ``--resume``)."""
from __future__ import annotations

import argparse

from cnnkit.cli import add_config_flags, config_from_args, emit
from cnnkit.config import overrides
from cnnkit.errors import CnnkitError


def register(verbs: argparse._SubParsersAction) -> None:
    p = verbs.add_parser("train", help="train a model; every run becomes a new version under runs/",
                         description="Train a model on a built-in dataset or an image folder. Defaults: MNIST; with no "
                         "--model, MNIST's recipe (the speed-run 'airbench' at widths 32/64/128 and its options, "
                         "cnnkit/training/recipes.py), else the improved 'cnn'. Options come from flags and "
                         "--config FILE.yaml (flags win).")
    p.add_argument("--config", metavar="FILE.yaml", help="options file with sections data, model, train, run")
    p.add_argument("--resume", metavar="NAME[:vN]", help="continue a killed run from its last checkpoint")
    p.add_argument("--json", action="store_true", help="print the final metrics as JSON")
    p.add_argument("--from-study", metavar="STUDY", help="train the best trial of a tuning study (cnnkit tune) as a "
                   "new run that records the study and trial; flags override its options")
    p.add_argument("--storage", metavar="URL", help="with --from-study: the study's storage (default: SQLite under the runs dir)")
    add_config_flags(p)
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from cnnkit.training.run import train_run

    if args.from_study or args.storage:
        from cnnkit.tuning.tune import train_from_study

        if not args.from_study:
            raise CnnkitError("--storage goes with --from-study")
        if args.resume:
            raise CnnkitError("--from-study starts a new run; it cannot be combined with --resume")
        outcome = train_from_study(args.from_study, args.storage, overrides(vars(args), args.config))
    else:
        cfg = config_from_args(args)
        if cfg.model.init and not hasattr(args, "model.name") and not args.resume:
            from cnnkit.training.finetune import inherit_model

            inherit_model(cfg)  # --init without --model: the parent's architecture
        outcome = train_run(cfg, resume=args.resume)
    if outcome.run is None:  # a non-main torchrun process: rank 0 reports
        return 0
    m = outcome.metrics
    text = f"run {outcome.run.ref} finished in {m['train_seconds']:.0f}s ({m['epochs']} epochs)"
    if "test_accuracy" in m:
        text += f": test accuracy {m['test_accuracy']:.4f}, loss {m['test_loss']:.4f}"
    init = outcome.run.read("init.json")
    if init:
        from cnnkit.training.finetune import summary_line

        text += f"\n  {summary_line(init)}"
    text += f"\n  saved in {outcome.run.path}"
    if m.get("mlflow"):
        from cnnkit.training.tracking import summary_line

        text += f"\n  {summary_line(m['mlflow'])}"
    emit(args, {"run": outcome.run.ref, "path": str(outcome.run.path), **m}, text)
    return 0
