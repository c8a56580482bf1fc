"""compare_evaluations: refuses different images, pairs every run, and its numbers add up."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import binomtest

from cnnkit.errors import CnnkitError
from cnnkit.evaluation.compare import compare_evaluations
from cnnkit.evaluation.evaluate import EvalResult, PredictionSet
from cnnkit.evaluation.metrics import classification_metrics, log_softmax


def _eval(run: str, labels: np.ndarray, skill: float, seed: int, key: str = "test-abc") -> EvalResult:
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(len(labels), 3))
    logits[np.arange(len(labels)), labels] += skill
    lp = log_softmax(logits)
    m = classification_metrics(lp, labels, ["a", "b", "c"], resamples=20)
    summary = {"run": run, "model": "m", "data": "d", "split": "test", "images": len(labels), "split_key": key,
               "results": {"clean": m}}
    return EvalResult(summary, {"clean": PredictionSet(lp, labels)}, None)


def test_three_runs_give_three_pairs_with_exact_p_values():
    labels = np.random.default_rng(0).integers(0, 3, 600)
    evals = [_eval("r:v1", labels, 0.5, 1), _eval("r:v2", labels, 1.5, 2), _eval("r:v3", labels, 3.0, 3)]
    out = compare_evaluations(evals)
    assert [(p["a"], p["b"]) for p in out["pairs"]] == [("r:v1", "r:v2"), ("r:v1", "r:v3"), ("r:v2", "r:v3")]
    for p in out["pairs"]:
        b, c = p["a_only_right"], p["b_only_right"]
        assert p["p_value"] == pytest.approx(binomtest(min(b, c), b + c, 0.5).pvalue, rel=1e-9)
        assert p["difference"] == pytest.approx(p["accuracy_b"] - p["accuracy_a"])
    strongest = out["pairs"][1]
    assert strongest["significant"] and strongest["verdict"].startswith("r:v3 beats r:v1")
    row = out["per_class"]["clean"][0]
    assert row["f1_delta"][0] == 0 and row["f1_delta"][2] == pytest.approx(row["f1"][2] - row["f1"][0])
    assert [m["run"] for m in out["metrics"]["clean"]] == ["r:v1", "r:v2", "r:v3"]


def test_different_images_are_refused():
    labels = np.zeros(10, dtype=np.int64)
    with pytest.raises(CnnkitError, match="different images"):
        compare_evaluations([_eval("a:v1", labels, 1, 0, "test-aaa"), _eval("b:v1", labels, 1, 0, "test-bbb")])
