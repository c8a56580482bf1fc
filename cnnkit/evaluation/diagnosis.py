"""A sentence about a run's training curves, derived from its history by stated rules.

The rules, applied in this order to the per-epoch history (val = the validation split):

1. no validation loss recorded -> "no validation data": nothing can be said about fit.
2. fewer than ``MIN_EPOCHS`` epochs -> "too short to judge".
3. **overfitting from epoch b+1**: the val loss ended at least ``RISE`` (10%) above its minimum
   at epoch b, that minimum is at least ``PATIENCE`` (2) epochs before the end, and the train
   loss kept falling after b (the model kept fitting the training set while val got worse).
4. **still improving**: the last epoch is within ``FLAT`` (1%) of the best val loss, and the val
   loss fell more than ``GAIN`` (2%) over the last ``PATIENCE`` epochs: more epochs would help.
5. **underfitting**: final train accuracy below ``UNDERFIT_ACC`` (90%) and within ``GAP`` (3 points)
   of val accuracy: the model fits neither split well (more capacity, epochs or learning rate).
6. otherwise **well fitted**: val loss flat near its minimum, with the train/val gap reported.

Rules 4 and 5 may both hold: the sentence then says both. Training accuracy is measured on
augmented batches with dropout on, so a train accuracy below val accuracy is normal.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

MIN_EPOCHS = 3
RISE = 0.10
PATIENCE = 2
FLAT = 0.01
GAIN = 0.02
UNDERFIT_ACC = 0.90
GAP = 0.03

RULES = [
    f"overfitting from epoch b+1: val loss ends >= {RISE:.0%} above its minimum at epoch b, "
    f"b >= {PATIENCE} epochs before the end, and train loss kept falling after b",
    f"still improving: last val loss within {FLAT:.0%} of the best and down > {GAIN:.0%} over the last {PATIENCE} epochs",
    f"underfitting: final train accuracy < {UNDERFIT_ACC:.0%} and within {GAP * 100:.0f} points of val accuracy",
    "well fitted: none of the above",
    f"fewer than {MIN_EPOCHS} epochs or no validation split: too little to judge",
]


def _details(h: Sequence[dict[str, Any]]) -> dict[str, Any]:
    val = [e["val_loss"] for e in h]
    b = min(range(len(val)), key=val.__getitem__)
    last = h[-1]
    return {
        "epochs": len(h), "best_epoch": h[b]["epoch"], "best_val_loss": val[b], "final_val_loss": val[-1],
        "val_rise": val[-1] / val[b] - 1 if val[b] > 0 else 0.0,
        "final_train_loss": last["train_loss"], "final_train_accuracy": last["train_accuracy"],
        "final_val_accuracy": last.get("val_accuracy"),
        "gap": last["train_accuracy"] - last["val_accuracy"] if last.get("val_accuracy") is not None else None,
    }


def _overfitting(h: Sequence[dict[str, Any]], d: dict[str, Any]) -> bool:
    b = next(i for i, e in enumerate(h) if e["epoch"] == d["best_epoch"])
    after_b = len(h) - 1 - b
    return d["val_rise"] >= RISE and after_b >= PATIENCE and h[-1]["train_loss"] < h[b]["train_loss"]


def _improving(h: Sequence[dict[str, Any]], d: dict[str, Any]) -> float | None:
    """The relative val-loss drop over the last PATIENCE epochs when rule 4 holds, else None."""
    val = [e["val_loss"] for e in h]
    earlier = val[max(0, len(val) - 1 - PATIENCE)]
    drop = 1 - val[-1] / earlier if earlier > 0 else 0.0
    near_best = val[-1] <= d["best_val_loss"] * (1 + FLAT)
    return drop if near_best and drop > GAIN else None


def diagnose_history(history: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """{"verdict": overfitting|still improving|underfitting|well fitted|too short|no validation,
    "sentence": one line for people, "details": the numbers behind it, "rules": the rules}."""
    h = [e for e in history if e.get("val_loss") is not None]
    out: dict[str, Any] = {"rules": RULES}
    if not h:
        return {**out, "verdict": "no validation data", "details": {"epochs": len(history)},
                "sentence": "No validation split was recorded, so over- or underfitting cannot be judged."}
    d = _details(h)
    pts = f"train accuracy {d['final_train_accuracy']:.1%}, val accuracy {d['final_val_accuracy']:.1%}"
    if len(h) < MIN_EPOCHS:
        return {**out, "verdict": "too short to judge", "details": d,
                "sentence": f"Only {len(h)} epoch(s): too few to read a trend ({pts}, val loss {d['final_val_loss']:.4f})."}
    underfit = d["final_train_accuracy"] < UNDERFIT_ACC and d["gap"] is not None and abs(d["gap"]) < GAP
    if _overfitting(h, d):
        verdict = "overfitting"
        sentence = (f"Overfitting from epoch {d['best_epoch'] + 1}: val loss rose {d['val_rise']:.0%} above its minimum "
                    f"at epoch {d['best_epoch']} while train loss kept falling ({pts}).")
    elif (drop := _improving(h, d)) is not None:
        verdict = "still improving"
        sentence = (f"Still improving: val loss fell {drop:.1%} over the last {PATIENCE} epochs and is at its best "
                    f"({pts}); more epochs would likely help" + ("; and underfitting so far." if underfit else "."))
    elif underfit:
        verdict = "underfitting"
        sentence = (f"Underfitting: the model fits neither split well ({pts}); try more capacity, epochs or a "
                    "different learning rate.")
    else:
        verdict = "well fitted"
        sentence = (f"Well fitted: val loss has levelled off near its minimum at epoch {d['best_epoch']} "
                    f"(within {max(d['val_rise'], 0):.1%}), {pts}.")
    return {**out, "verdict": verdict, "sentence": sentence, "details": d}


def save_training_diagnosis(run: Any, history: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Write ``diagnosis.json`` and ``curves.png`` into a run folder (``RunDir``); returns the diagnosis.

    The diagnosis needs only the history; the plot needs matplotlib (the ``report`` extra), so a
    missing matplotlib raises ImportError after the diagnosis is already written.
    """
    from cnnkit.io import write_atomic

    diag = diagnose_history(history)
    run.write("diagnosis.json", diag)
    from cnnkit.plots import curves_png

    png = curves_png(history, diag.get("sentence", ""))
    write_atomic(run.file("curves.png"), lambda p: p.write_bytes(png))
    return diag
