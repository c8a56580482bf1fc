"""Every metric against an independent implementation on the same predictions (to 1e-6):
scikit-learn for the classification metrics, torchmetrics for calibration, scipy for McNemar
and the bootstrap."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats
from sklearn import metrics as skm

from cnnkit.evaluation import metrics as M
from cnnkit.evaluation.compare import mcnemar_exact, paired_test

TOL = 1e-6


def _predictions(n: int, k: int, seed: int, skill: float = 2.0) -> tuple[np.ndarray, np.ndarray]:
    """Logits that are right more often than chance, with uneven classes, as a real model's are."""
    rng = np.random.default_rng(seed)
    labels = rng.choice(k, size=n, p=np.linspace(1, 3, k) / np.linspace(1, 3, k).sum())
    logits = rng.normal(size=(n, k)) * 1.5
    logits[np.arange(n), labels] += skill * rng.random(n)
    return M.log_softmax(logits), labels


CASES = [(2000, 10, 0), (500, 3, 1), (300, 7, 2), (50, 5, 3)]


@pytest.mark.parametrize("n, k, seed", CASES)
def test_classification_metrics_match_sklearn(n: int, k: int, seed: int):
    log_probs, labels = _predictions(n, k, seed)
    out = M.classification_metrics(log_probs, labels, [f"c{i}" for i in range(k)], top_k=(2, 3), resamples=50)
    preds = log_probs.argmax(1)
    probs = np.exp(log_probs)
    present = sorted(set(labels) | set(preds))  # sklearn's own default label set
    assert out["accuracy"] == pytest.approx(skm.accuracy_score(labels, preds), abs=TOL)
    assert out["loss"] == pytest.approx(skm.log_loss(labels, probs, labels=range(k)), abs=TOL)
    for t in (2, 3):
        if t < k:
            assert out["top_k"][f"top_{t}"] == pytest.approx(skm.top_k_accuracy_score(labels, probs, k=t, labels=range(k)), abs=TOL)
    np.testing.assert_array_equal(np.asarray(out["confusion"]), skm.confusion_matrix(labels, preds, labels=range(k)))
    p, r, f, s = skm.precision_recall_fscore_support(labels, preds, labels=range(k), zero_division=0)
    for i, row in enumerate(out["per_class"]):
        assert (row["precision"], row["recall"], row["f1"], row["support"]) == pytest.approx((p[i], r[i], f[i], s[i]), abs=TOL)
    for avg in ("macro", "weighted"):
        ref = skm.precision_recall_fscore_support(labels, preds, labels=present if avg == "macro" else range(k),
                                                  average=avg, zero_division=0)
        got = out[avg]
        assert (got["precision"], got["recall"], got["f1"]) == pytest.approx(ref[:3], abs=TOL)
    assert out["macro_f1"] == pytest.approx(skm.f1_score(labels, preds, average="macro", zero_division=0), abs=TOL)


def test_absent_classes_follow_sklearn_conventions():
    """A class never predicted (precision 0) and a class with no images (recall 0): sklearn's zero_division=0."""
    labels = np.array([0, 0, 1, 1, 1, 2])
    preds = np.array([0, 1, 1, 1, 0, 0])  # class 2 is never predicted; class 3 exists in neither
    conf = M.confusion_matrix(labels, preds, 4)
    s = M.per_class(conf)
    p, r, f, _ = skm.precision_recall_fscore_support(labels, preds, labels=range(4), zero_division=0)
    np.testing.assert_allclose(s["precision"], p, atol=TOL)
    np.testing.assert_allclose(s["recall"], r, atol=TOL)
    np.testing.assert_allclose(s["f1"], f, atol=TOL)
    assert M.averages(s)["macro"]["f1"] == pytest.approx(skm.f1_score(labels, preds, average="macro", zero_division=0), abs=TOL)


@pytest.mark.parametrize("n, k, seed", CASES)
def test_ece_matches_torchmetrics(n: int, k: int, seed: int):
    from torchmetrics.functional.classification import multiclass_calibration_error

    log_probs, labels = _predictions(n, k, seed)
    probs = np.exp(log_probs)
    ref = multiclass_calibration_error(torch.tensor(probs), torch.tensor(labels), num_classes=k, n_bins=15, norm="l1")
    assert M.expected_calibration_error(probs, labels, bins=15) == pytest.approx(float(ref), abs=TOL)


def test_bootstrap_resamples_compute_the_metrics_sklearn_does():
    """The vectorized resampling (one bincount per chunk) must give, per resample, exactly the
    accuracy and macro F1 of that resample; the interval must match scipy's percentile bootstrap."""
    log_probs, labels = _predictions(400, 6, 7)
    preds = log_probs.argmax(1)
    rng = np.random.default_rng(0)
    idx = rng.integers(0, len(labels), size=(5, len(labels)))
    codes = labels * 6 + preds
    conf = np.stack([np.bincount(codes[i], minlength=36).reshape(6, 6) for i in idx])
    for b, i in enumerate(idx):
        assert M.macro_f1(conf)[b] == pytest.approx(skm.f1_score(labels[i], preds[i], average="macro", zero_division=0), abs=TOL)
    ci = M.bootstrap_intervals(labels, preds, 6, resamples=2000, seed=3)
    ref = stats.bootstrap(((preds == labels).astype(float),), np.mean, n_resamples=2000, method="percentile",
                          confidence_level=0.95, random_state=3).confidence_interval
    assert ci["accuracy"] == pytest.approx([ref.low, ref.high], abs=0.01)  # different random draws, same distribution
    acc = (preds == labels).mean()
    assert ci["accuracy"][0] < acc < ci["accuracy"][1] and ci["macro_f1"][0] < ci["macro_f1"][1]
    assert M.bootstrap_intervals(labels, preds, 6, resamples=200, seed=3) == M.bootstrap_intervals(labels, preds, 6, resamples=200, seed=3)


@pytest.mark.parametrize("b, c", [(0, 0), (0, 1), (1, 0), (5, 5), (3, 12), (40, 61), (130, 90), (7, 0), (1000, 1100)])
def test_mcnemar_exact_matches_scipy_binomtest(b: int, c: int):
    ref = 1.0 if b + c == 0 else stats.binomtest(min(b, c), b + c, 0.5, alternative="two-sided").pvalue
    assert mcnemar_exact(b, c) == pytest.approx(ref, rel=1e-9, abs=1e-15)


def test_paired_test_counts_discordant_images():
    a = np.array([1, 1, 1, 0, 0, 1, 0, 1], bool)
    b = np.array([1, 0, 1, 1, 0, 1, 1, 1], bool)
    t = paired_test(a, b)
    assert (t["both_right"], t["a_only_right"], t["b_only_right"], t["both_wrong"]) == (4, 1, 2, 1)
    assert t["p_value"] == pytest.approx(stats.binomtest(1, 3, 0.5).pvalue)
    assert t["difference"] == pytest.approx(b.mean() - a.mean()) and not t["significant"]
