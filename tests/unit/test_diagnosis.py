"""The curve rules: each verdict on a history made to show it, and the edges between them."""
from __future__ import annotations

import pytest

from cnnkit.evaluation.diagnosis import diagnose_history, save_training_diagnosis


def history(train_loss, val_loss, train_acc, val_acc):
    return [{"epoch": i + 1, "train_loss": tl, "val_loss": vl, "train_accuracy": ta, "val_accuracy": va}
            for i, (tl, vl, ta, va) in enumerate(zip(train_loss, val_loss, train_acc, val_acc))]


def test_overfitting_names_the_epoch_after_the_best():
    h = history([1.0, 0.5, 0.3, 0.15, 0.08, 0.04], [0.9, 0.6, 0.5, 0.55, 0.62, 0.7],
                [0.7, 0.85, 0.92, 0.96, 0.98, 0.99], [0.72, 0.83, 0.86, 0.86, 0.85, 0.85])
    d = diagnose_history(h)
    assert d["verdict"] == "overfitting" and d["details"]["best_epoch"] == 3
    assert d["sentence"].startswith("Overfitting from epoch 4") and "40%" in d["sentence"]


def test_a_late_blip_is_not_overfitting():
    """The minimum one epoch before the end is noise, not a trend (rule 3 needs 2 epochs)."""
    h = history([1.0, 0.6, 0.4, 0.3, 0.25], [0.8, 0.5, 0.4, 0.3, 0.36],
                [0.7, 0.85, 0.92, 0.95, 0.96], [0.75, 0.85, 0.9, 0.93, 0.92])
    assert diagnose_history(h)["verdict"] != "overfitting"


def test_rising_val_loss_with_rising_train_loss_is_not_overfitting():
    h = history([0.3, 0.3, 0.35, 0.4, 0.5], [0.3, 0.31, 0.35, 0.4, 0.5],
                [0.95, 0.95, 0.94, 0.93, 0.92], [0.95, 0.95, 0.94, 0.93, 0.92])
    assert diagnose_history(h)["verdict"] != "overfitting"


def test_still_improving():
    h = history([1.0, 0.6, 0.4, 0.3], [0.8, 0.5, 0.35, 0.28], [0.7, 0.85, 0.92, 0.95], [0.75, 0.86, 0.91, 0.93])
    d = diagnose_history(h)
    assert d["verdict"] == "still improving" and "more epochs" in d["sentence"] and "underfitting" not in d["sentence"]


def test_still_improving_and_underfitting_says_both():
    h = history([2.0, 1.8, 1.6, 1.45], [1.9, 1.7, 1.55, 1.4], [0.3, 0.35, 0.42, 0.48], [0.31, 0.36, 0.43, 0.49])
    d = diagnose_history(h)
    assert d["verdict"] == "still improving" and "underfitting" in d["sentence"]


def test_underfitting_plateau():
    h = history([1.5, 1.3, 1.29, 1.29, 1.29], [1.4, 1.3, 1.3, 1.3, 1.3], [0.5, 0.55, 0.56, 0.56, 0.56],
                [0.52, 0.55, 0.56, 0.56, 0.56])
    assert diagnose_history(h)["verdict"] == "underfitting"


def test_well_fitted():
    h = history([0.5, 0.2, 0.1, 0.09, 0.088], [0.3, 0.12, 0.08, 0.079, 0.0795],
                [0.85, 0.94, 0.97, 0.975, 0.976], [0.9, 0.96, 0.975, 0.976, 0.976])
    d = diagnose_history(h)
    assert d["verdict"] == "well fitted" and "epoch 4" in d["sentence"]


@pytest.mark.parametrize("h, verdict", [
    ([], "no validation data"),
    ([{"epoch": 1, "train_loss": 1.0, "train_accuracy": 0.5}], "no validation data"),
    (history([1.0, 0.5], [0.9, 0.6], [0.6, 0.8], [0.6, 0.8]), "too short to judge"),
])
def test_too_little_to_judge(h, verdict):
    d = diagnose_history(h)
    assert d["verdict"] == verdict and d["sentence"] and d["rules"]


def test_save_writes_the_plot_and_the_sentence(tmp_path):
    from cnnkit.runs import RunStore

    run = RunStore(tmp_path).create("r")
    h = history([1.0, 0.6, 0.4, 0.3], [0.8, 0.5, 0.35, 0.28], [0.7, 0.85, 0.92, 0.95], [0.75, 0.86, 0.91, 0.93])
    d = save_training_diagnosis(run, h)
    assert run.read("diagnosis.json")["verdict"] == d["verdict"] == "still improving"
    assert run.file("curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
