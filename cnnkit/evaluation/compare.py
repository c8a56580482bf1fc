"""``runs compare``: several runs side by side on the very same images, with paired tests.

Every run is evaluated (or its stored evaluation reused) on one split of one dataset; the split's
checksum must match across runs, so "the same test set" is checked, not assumed. For each pair,
the exact McNemar test asks whether the images one run gets right and the other wrong are too
lopsided to be chance: under "equally good", each discordant image is a fair coin flip.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np

from cnnkit.errors import CnnkitError

ALPHA = 0.05


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value for b and c discordant pairs: 2 P(X <= min(b, c)),
    X ~ Binomial(b + c, 1/2), capped at 1. Summed in log space, so n in the millions is fine."""
    n, k = int(b) + int(c), min(int(b), int(c))
    if n == 0:
        return 1.0
    log_terms = [math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1) - n * math.log(2) for i in range(k + 1)]
    top = max(log_terms)
    log_tail = top + math.log(sum(math.exp(t - top) for t in log_terms))
    return min(1.0, 2 * math.exp(log_tail))


def paired_test(correct_a: np.ndarray, correct_b: np.ndarray, alpha: float = ALPHA) -> dict[str, Any]:
    """The 2x2 table of right/wrong on the same images and McNemar's exact p-value."""
    a, b = np.asarray(correct_a, bool), np.asarray(correct_b, bool)
    if a.shape != b.shape:
        raise CnnkitError(f"paired test needs predictions on the same images ({a.shape} vs {b.shape})")
    only_a, only_b = int((a & ~b).sum()), int((~a & b).sum())
    p = mcnemar_exact(only_a, only_b)
    return {"both_right": int((a & b).sum()), "a_only_right": only_a, "b_only_right": only_b,
            "both_wrong": int((~a & ~b).sum()), "accuracy_a": float(a.mean()), "accuracy_b": float(b.mean()),
            "difference": float(b.mean() - a.mean()), "p_value": p, "significant": p < alpha, "alpha": alpha}


def verdict(a: str, b: str, t: dict[str, Any]) -> str:
    """One sentence: which run is better on these images, and whether chance explains it."""
    hi, lo = (b, a) if t["difference"] > 0 else (a, b)
    acc_hi, acc_lo = max(t["accuracy_a"], t["accuracy_b"]), min(t["accuracy_a"], t["accuracy_b"])
    if t["difference"] == 0:
        head = f"{a} and {b} have the same accuracy ({acc_hi:.2%})"
    else:
        head = f"{hi} beats {lo}: {acc_hi:.2%} vs {acc_lo:.2%} ({100 * abs(t['difference']):+.2f} points)"
    tail = ("significant" if t["significant"] else "not significant") + f" at {t['alpha']:g}"
    p = f"= {t['p_value']:.3g}" if t["p_value"] > 0 else "< 1e-300"  # below float range: underflows to 0
    return (f"{head}; exact McNemar p {p} on {t['a_only_right'] + t['b_only_right']} "
            f"images where they disagree: {tail}.")


def _per_class(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per class: each run's precision/recall/F1, and each minus the first run's (``f1_delta``...)."""
    rows = []
    for i, first in enumerate(results[0]["per_class"]):
        row: dict[str, Any] = {"class": first["class"], "support": first["support"]}
        for key in ("precision", "recall", "f1"):
            row[key] = [r["per_class"][i][key] for r in results]
            row[f"{key}_delta"] = [v - row[key][0] for v in row[key]]
        rows.append(row)
    return rows


_HEADLINE = ("accuracy", "accuracy_ci", "macro_f1", "macro_f1_ci", "loss", "ece", "top_k", "macro", "weighted")


def compare_evaluations(evals: Sequence[Any], alpha: float = ALPHA) -> dict[str, Any]:
    """``evals``: ``evaluate.EvalResult`` of each run on the same split -> the comparison dict."""
    keys = {e.summary["split_key"] for e in evals}
    if len(keys) != 1:
        named = ", ".join(f"{e.summary['run']}: {e.summary['split_key']}" for e in evals)
        raise CnnkitError(f"the runs were evaluated on different images ({named}); pass --data to use one dataset")
    refs = [e.summary["run"] for e in evals]
    variants = list(evals[0].summary["results"])
    out: dict[str, Any] = {
        "data": evals[0].summary["data"], "split": evals[0].summary["split"], "images": evals[0].summary["images"],
        "split_key": keys.pop(), "runs": [{"run": e.summary["run"], "model": e.summary["model"]} for e in evals],
        "variants": variants, "metrics": {}, "per_class": {}, "pairs": [],
    }
    for v in variants:
        results = [e.summary["results"][v] for e in evals]
        out["metrics"][v] = [{k: r[k] for k in _HEADLINE} | {"run": ref} for ref, r in zip(refs, results)]
        out["per_class"][v] = _per_class(results)
        for i, j in combinations(range(len(evals)), 2):
            t = paired_test(evals[i].predictions[v].correct, evals[j].predictions[v].correct, alpha)
            out["pairs"].append({"a": refs[i], "b": refs[j], "variant": v, **t, "verdict": verdict(refs[i], refs[j], t)})
    return out


def compare_runs(refs: Sequence[str], runs_dir: str | Path | None = None, data: str | None = None,
                 data_dir: str | None = None, split: str = "test", variants: Sequence[Any] | None = None,
                 batch_size: int = 1024, resamples: int = 1000, limit: int | None = None, alpha: float = ALPHA) -> dict[str, Any]:
    """Evaluate (or reuse) each run on the first run's dataset (or ``data``) and compare them."""
    from cnnkit.engine import make_engine
    from cnnkit.evaluation.evaluate import evaluate_loaded, run_dataset
    from cnnkit.evaluation.robustness import Variant
    from cnnkit.runs import load

    if len(refs) < 2:
        raise CnnkitError("runs compare needs at least two runs")
    engine = make_engine()
    loaded = [load(r, runs_dir, engine.device) for r in refs]
    if len({lr.ref for lr in loaded}) != len(loaded):
        raise CnnkitError("the same run version is named twice")
    first_data = loaded[0].config.get("data", {}).get("name")
    evals = []
    for lr in loaded:
        own = lr.config.get("data", {}).get("name")
        ds = run_dataset(lr, data if data is not None or own == first_data else first_data, data_dir)
        evals.append(evaluate_loaded(lr, ds, split, variants or [Variant("clean")], False, batch_size, engine,
                                     resamples, limit=limit))
    return compare_evaluations(evals, alpha)
