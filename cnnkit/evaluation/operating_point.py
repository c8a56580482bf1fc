"""Recall-first decision rules: ``cnnkit eval RUN --target-recall CLASS=0.95 [--save-rule]``.

The rule: "answer CLASS when its probability is at least t, else the most probable other class".
t is chosen on the validation split, never on the test split it is then judged on: the largest
t whose validation recall for CLASS reaches the target (the largest keeps the most precision).
A saved rule lives in the run (``decision_rule.json``); ``predict`` and ``serve`` apply it and say
in every answer which rule decided.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from cnnkit.decision import RULE_FILE, apply_rule, describe
from cnnkit.errors import CnnkitError


def parse_target(text: str, classes: list[str]) -> tuple[int, float]:
    """``CLASS=0.95`` -> (class index, target recall)."""
    name, sep, value = str(text).rpartition("=")
    if not sep or not name:
        raise CnnkitError(f"--target-recall takes CLASS=RECALL, e.g. pneumonia=0.95; got {text!r}")
    if name not in classes:
        raise CnnkitError(f"--target-recall: no class {name!r}; classes: {', '.join(classes)}")
    try:
        target = float(value)
    except ValueError:
        raise CnnkitError(f"--target-recall: recall must be a number in (0, 1], got {value!r}") from None
    if not 0 < target <= 1:
        raise CnnkitError(f"--target-recall: recall must be in (0, 1], got {target}")
    return classes.index(name), target


def choose_threshold(probs: np.ndarray, labels: np.ndarray, index: int, target: float) -> float:
    """The largest threshold on P(class) whose recall on these images is at least ``target``."""
    scores = np.sort(probs[labels == index, index])[::-1]
    if len(scores) == 0:
        raise CnnkitError("--target-recall: the validation split has no image of that class to choose a rule on")
    needed = int(np.ceil(target * len(scores) - 1e-9))  # positives that must score >= t
    return float(scores[max(needed, 1) - 1])


def precision_recall(preds: np.ndarray, labels: np.ndarray, index: int) -> dict[str, float]:
    tp = int(((preds == index) & (labels == index)).sum())
    predicted, actual = int((preds == index).sum()), int((labels == index).sum())
    return {"precision": tp / predicted if predicted else 0.0, "recall": tp / actual if actual else 0.0,
            "accuracy": float((preds == labels).mean()) if len(labels) else 0.0}


def target_recall_rule(val: tuple[np.ndarray, np.ndarray], test: tuple[np.ndarray, np.ndarray], classes: list[str],
                       target_text: str) -> dict[str, Any]:
    """Choose the rule on ``val`` (probs, labels), judge it on ``test``; argmax figures beside it."""
    index, target = parse_target(target_text, classes)
    threshold = choose_threshold(val[0], val[1], index, target)
    rule = {"kind": "target-recall", "class": classes[index], "index": index, "target_recall": target,
            "threshold": threshold, "chosen_on": "val", "val_images": int(len(val[1]))}
    rule["val"] = precision_recall(apply_rule(val[0], rule), val[1], index)
    report = {"rule": rule, "test_images": int(len(test[1])),
              "test": precision_recall(apply_rule(test[0], rule), test[1], index),
              "test_argmax": precision_recall(apply_rule(test[0], None), test[1], index)}
    return report


def evaluate_target_recall(ref: str, target_text: str, runs_dir: Any = None, save: bool = False) -> dict[str, Any]:
    """``cnnkit eval RUN --target-recall CLASS=R [--save-rule]`` on the run's own val and test splits."""
    from cnnkit.data.transforms import pipelines_for
    from cnnkit.engine import make_engine
    from cnnkit.evaluation.evaluate import predict_log_probs, run_dataset
    from cnnkit.runs import load

    engine = make_engine()
    loaded = load(ref, runs_dir, engine.device)
    parse_target(target_text, loaded.classes)  # refuse a bad class before loading the data
    ds = run_dataset(loaded)
    if ds.val is None or not len(ds.val) or ds.test is None or not len(ds.test):
        raise CnnkitError(f"--target-recall needs validation and test splits; {ds.name} lacks one")
    pipe = pipelines_for(loaded.spec["preprocess"], "none")[1]

    def probs(split: Any) -> tuple[np.ndarray, np.ndarray]:
        return np.exp(predict_log_probs(loaded.model, split.images, pipe, 256, engine)), split.labels.numpy()

    report = target_recall_rule(probs(ds.val), probs(ds.test), loaded.classes, target_text)
    report["run"] = loaded.ref
    if save:
        loaded.run.write(RULE_FILE, report["rule"])
        report["saved"] = str(loaded.run.file(RULE_FILE))
    return report


def format_report(r: dict[str, Any]) -> str:
    rule, t, a = r["rule"], r["test"], r["test_argmax"]
    lines = [f"{r['run']}: rule chosen on val ({rule['val_images']} images): {describe(rule)}",
             f"  val   recall {rule['val']['recall']:.4f}  precision {rule['val']['precision']:.4f}",
             f"  test  recall {t['recall']:.4f}  precision {t['precision']:.4f}  accuracy {t['accuracy']:.4f} "
             f"({r['test_images']} images)",
             f"  test under argmax: recall {a['recall']:.4f}  precision {a['precision']:.4f}  accuracy {a['accuracy']:.4f}"]
    if "saved" in r:
        lines.append(f"  saved: {r['saved']} (predict and serve now apply it)")
    return "\n".join(lines)
