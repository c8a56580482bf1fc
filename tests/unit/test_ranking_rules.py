"""ROC AUC / average precision against scikit-learn, and target-recall decision rules."""
from __future__ import annotations

import numpy as np
import pytest

from cnnkit.errors import CnnkitError
from cnnkit.evaluation import operating_point as op
from cnnkit.evaluation.metrics import classification_metrics
from cnnkit.evaluation.ranking import average_precision, pr_curve, roc_auc, roc_curve


@pytest.mark.parametrize("decimals", [1, 6])
def test_auc_and_ap_match_sklearn(decimals: int) -> None:
    metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(decimals)
    y = rng.random(300) < 0.3
    scores = np.round(np.clip(rng.normal(0.4 + 0.3 * y, 0.25), 0, 1), decimals)  # ties at 1 decimal
    assert roc_auc(scores, y) == pytest.approx(metrics.roc_auc_score(y, scores), abs=1e-12)
    assert average_precision(scores, y) == pytest.approx(metrics.average_precision_score(y, scores), abs=1e-12)
    fpr, tpr, _ = metrics.roc_curve(y, scores, drop_intermediate=False)
    ours = roc_curve(scores, y)
    assert np.allclose(ours["fpr"], fpr) and np.allclose(ours["tpr"], tpr)
    assert pr_curve(scores, y)["recall"][-1] == 1.0


def test_undefined_cases_are_none() -> None:
    assert roc_auc(np.array([0.2, 0.4]), np.array([True, True])) is None
    assert average_precision(np.array([0.2, 0.4]), np.array([False, False])) is None


def test_eval_metrics_carry_per_class_auc_and_ap() -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 200)
    logits = rng.normal(size=(200, 3)) + 2.0 * np.eye(3)[labels]
    log_probs = logits - np.log(np.exp(logits).sum(1, keepdims=True))
    m = classification_metrics(log_probs, labels, ["a", "b", "c"], resamples=20)
    assert all(0.5 < row["roc_auc"] <= 1 and 0 < row["average_precision"] <= 1 for row in m["per_class"])
    assert m["macro_roc_auc"] == pytest.approx(np.mean([r["roc_auc"] for r in m["per_class"]]))


def _probs(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, n)
    logits = rng.normal(size=(n, 3)) + 1.2 * np.eye(3)[labels]
    p = np.exp(logits)
    return p / p.sum(1, keepdims=True), labels


def test_target_recall_is_reached_on_val_and_reported_on_test() -> None:
    val, test = _probs(400, 1), _probs(400, 2)
    report = op.target_recall_rule(val, test, ["a", "b", "c"], "b=0.95")
    rule = report["rule"]
    assert rule["chosen_on"] == "val" and rule["val"]["recall"] >= 0.95
    # the largest such threshold: one step stricter misses the target
    stricter = {**rule, "threshold": np.nextafter(rule["threshold"], 1)}
    assert op.precision_recall(op.apply_rule(val[0], stricter), val[1], 1)["recall"] < 0.95
    assert report["test"]["recall"] > report["test_argmax"]["recall"]
    assert report["test"]["precision"] < report["test_argmax"]["precision"]  # recall is bought with precision


def test_rule_answers_others_by_their_argmax() -> None:
    rule = {"index": 0, "threshold": 0.3, "class": "a", "target_recall": 0.9}
    probs = np.array([[0.35, 0.6, 0.05], [0.2, 0.7, 0.1], [0.5, 0.2, 0.3], [0.1, 0.2, 0.7]])
    assert op.apply_rule(probs, rule).tolist() == [0, 1, 0, 2]
    assert op.apply_rule(probs, None).tolist() == [1, 1, 0, 2]
    assert op.describe(None) == "argmax" and "a>=0.9" in op.describe(rule)


@pytest.mark.parametrize("text", ["b", "zz=0.9", "b=1.5", "b=high", "=0.9"])
def test_bad_targets_are_one_line(text: str) -> None:
    with pytest.raises(CnnkitError, match="--target-recall") as err:
        op.parse_target(text, ["a", "b"])
    assert "\n" not in str(err.value)
