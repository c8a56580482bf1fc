"""``cnnkit report``: one self-contained HTML page that says how good a run is, in a minute.

The page opens with the verdict (accuracy with its interval, macro F1, calibration, the weakest
class, the worst corruption, the training diagnosis) and then shows the evidence: curves,
metrics, confusion matrix, per-class table, robustness, misclassified images, Grad-CAM,
filters and feature maps, the dataset doctor's findings, the config and the environment.
Every image is a base64 PNG inside the file, and there is no script: it opens anywhere.
"""
from __future__ import annotations

import base64
import html
import string
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cnnkit import plots
from cnnkit.errors import CnnkitError
from cnnkit.explain import attribution as explain
from cnnkit.explain import figures
from cnnkit.runs import LoadedRun

esc = html.escape


@dataclass
class Context:
    """Everything the sections draw on, computed once."""

    loaded: LoadedRun
    ds: Any
    ev: Any  # evaluate.EvalResult
    diagnosis: dict[str, Any]
    history: list[dict[str, Any]]
    examples: int


def img(png: bytes, alt: str) -> str:
    return f'<img alt="{esc(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode()}">'


def pct(x: float) -> str:
    return f"{100 * x:.2f}%"


def table(head: Sequence[str], rows: Sequence[Sequence[Any]], classes: Sequence[str] = (), left: int = 1) -> str:
    """An HTML table, numbers right-aligned, the first ``left`` (text) columns left-aligned;
    ``classes`` gives an optional CSS class per row."""
    def cell(tag: str, j: int, value: Any) -> str:
        return f'<{tag} style="text-align:left">{value}</{tag}>' if j < left else f"<{tag}>{value}</{tag}>"

    th = "".join(cell("th", j, esc(str(h))) for j, h in enumerate(head))
    body = "".join(f'<tr class="{classes[i] if i < len(classes) else ""}">' + "".join(cell("td", j, c) for j, c in enumerate(r))
                   + "</tr>" for i, r in enumerate(rows))
    return f"<table><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>"


def card(key: str, value: str, note: str = "") -> str:
    return f'<div class="card"><div class="k">{esc(key)}</div><div class="v">{value}</div><div class="n">{note}</div></div>'


def _clean(ctx: Context) -> dict[str, Any]:
    return ctx.ev.summary["results"]["clean"]


def _robustness_rows(ctx: Context) -> list[tuple[str, dict[str, Any]]]:
    return [(k, m) for k, m in ctx.ev.summary["results"].items() if k != "clean"]


def summary_section(ctx: Context) -> str:
    """The one-minute view: headline cards and a few plain sentences."""
    m, s = _clean(ctx), ctx.ev.summary
    lo, hi = m["accuracy_ci"]
    flo, fhi = m["macro_f1_ci"]
    weakest = min(m["per_class"], key=lambda r: r["f1"])
    pairs = explain.confused_pairs(np.asarray(m["confusion"]), 1)
    rob = _robustness_rows(ctx)
    verdict = ctx.diagnosis.get("verdict", "n/a")
    cards = [card("test accuracy", pct(m["accuracy"]), f"95% CI {pct(lo)} - {pct(hi)}"),
             card("macro F1", f"{m['macro_f1']:.4f}", f"95% CI {flo:.4f} - {fhi:.4f}"),
             card("test loss", f"{m['loss']:.4f}", f"ECE {m['ece']:.4f} (calibration error)"),
             card("training", f'<span class="verdict-{verdict.replace(" ", "-")}">{esc(verdict)}</span>',
                  f"{len(ctx.history)} epochs")]
    points = [f"On <b>{s['images']:,}</b> {esc(s['data'])} {esc(s['split'])} images the model is right "
              f"<b>{pct(m['accuracy'])}</b> of the time (95% interval {pct(lo)} to {pct(hi)}).",
              f"Weakest class: <b>{esc(weakest['class'])}</b> (F1 {weakest['f1']:.3f}, recall {weakest['recall']:.3f})"
              + (f"; most frequent mistake: <b>{esc(ctx.loaded.classes[pairs[0][0]])} taken for "
                 f"{esc(ctx.loaded.classes[pairs[0][1]])}</b> ({pairs[0][2]} times)." if pairs else ".")]
    if rob:
        worst_key, worst = min(rob, key=lambda kv: kv[1]["accuracy"])
        drop = 100 * (m["accuracy"] - worst["accuracy"])
        cards.append(card("worst corruption", pct(worst["accuracy"]), f"{esc(worst_key)}: -{drop:.1f} points"))
        points.append(f"Most damaging corruption: <b>{esc(worst_key)}</b>, accuracy falls by {drop:.1f} points to "
                      f"{pct(worst['accuracy'])}.")
    points.append(f"Training: {esc(ctx.diagnosis.get('sentence', 'no history recorded'))}")
    items = "".join(f"<li>{p}</li>" for p in points)
    return f'<div class="cards">{"".join(cards)}</div><div class="summary"><ul>{items}</ul></div>'


def curves_section(ctx: Context) -> str:
    if not ctx.history:
        return "<h2 id='curves'>Training curves</h2><p>No history recorded for this run.</p>"
    stored = ctx.loaded.run.file("curves.png")
    png = stored.read_bytes() if stored.is_file() else plots.curves_png(ctx.history, ctx.diagnosis.get("sentence", ""))
    rules = "".join(f"<li>{esc(r)}</li>" for r in ctx.diagnosis.get("rules", []))
    return (f"<h2 id='curves'>Training curves</h2>{img(png, 'training curves')}"
            f"<p><b>Diagnosis:</b> {esc(ctx.diagnosis.get('sentence', ''))}</p>"
            f"<details><summary>the rules behind the diagnosis</summary><ol>{rules}</ol>"
            "<p class='note'>Train accuracy is measured on augmented batches with dropout on, so it may sit below "
            "val accuracy.</p></details>")


def metrics_section(ctx: Context) -> str:
    m = _clean(ctx)
    rows = [["accuracy", pct(m["accuracy"]), f"{pct(m['accuracy_ci'][0])} - {pct(m['accuracy_ci'][1])}"],
            ["macro F1", f"{m['macro_f1']:.4f}", f"{m['macro_f1_ci'][0]:.4f} - {m['macro_f1_ci'][1]:.4f}"],
            ["loss (cross-entropy)", f"{m['loss']:.4f}", ""],
            ["expected calibration error", f"{m['ece']:.4f}", "15 equal-width bins"]]
    rows += [[k.replace("_", "-") + " accuracy", pct(v), ""] for k, v in m["top_k"].items()]
    for avg in ("macro", "weighted"):
        a = m[avg]
        rows.append([f"{avg} precision / recall", f"{a['precision']:.4f} / {a['recall']:.4f}", ""])
    b = m["bootstrap"]
    note = f"95% intervals: {b['method']} bootstrap over the images, {b['resamples']} resamples, seed {b['seed']}."
    return (f"<h2 id='metrics'>Metrics</h2><div class='row'><div>{table(['metric', 'value', '95% interval'], rows)}"
            f"<p class='note'>{note}</p></div><div>{img(plots.reliability_png(m['reliability'], m['ece']), 'calibration')}"
            "</div></div>")


def classes_section(ctx: Context) -> str:
    m = _clean(ctx)
    worst = sorted(range(len(m["per_class"])), key=lambda i: m["per_class"][i]["f1"])[:3]
    def num(x: Any) -> str:
        return "-" if x is None else f"{x:.4f}"

    rows = [[esc(r["class"]), f"{r['precision']:.4f}", f"{r['recall']:.4f}", f"{r['f1']:.4f}", r["support"],
             num(r.get("roc_auc")), num(r.get("average_precision"))] for r in m["per_class"]]
    marks = ["weak" if i in worst else "" for i in range(len(rows))]
    per_class = table(["class", "precision", "recall", "F1", "support", "ROC AUC", "AP"], rows, marks)
    return (f"<h2 id='classes'>Confusion matrix and per-class metrics</h2><div class='row'>"
            f"<div>{img(plots.confusion_png(m['confusion'], ctx.loaded.classes), 'confusion matrix')}</div>"
            f"<div>{per_class}<p class='note'>Shaded: the three classes with the lowest F1.</p></div></div>")


def robustness_section(ctx: Context) -> str:
    rob = _robustness_rows(ctx)
    if not rob:
        return ""
    base = _clean(ctx)
    rows = []
    for key, m in [("clean", base), *rob]:
        delta = 100 * (m["accuracy"] - base["accuracy"])
        cls = "neg" if delta < -1 else ""
        rows.append([esc(key), esc(m.get("description", "")), pct(m["accuracy"]),
                     f"<span class='{cls}'>{delta:+.2f}</span>", f"{m['macro_f1']:.4f}", f"{m['loss']:.4f}", f"{m['ece']:.4f}"])
    keys = ["clean", *(k for k, _ in rob)]
    chart = plots.bars_png(keys, {ctx.loaded.ref: [ctx.ev.summary["results"][k]["accuracy"] for k in keys]}, "accuracy")
    head = ["variant", "what was done", "accuracy", "change (points)", "macro F1", "loss", "ECE"]
    return (f"<h2 id='robustness'>Robustness: the same test images, corrupted</h2>{table(head, rows, left=2)}"
            f"{img(chart, 'robustness')}<p class='note'>Each corruption is seeded, so every run sees the same "
            "pixels; compare runs on them with <code>cnnkit runs compare A B --variants ...</code>.</p>")


def errors_section(ctx: Context) -> str:
    m, pred = _clean(ctx), ctx.ev.predictions["clean"]
    top, pairs, _ = figures.errors_figures(ctx.loaded, ctx.ev.subset.images, pred.log_probs, pred.labels,
                                           np.asarray(m["confusion"]), 16)
    return (f"<h2 id='errors'>Misclassified examples</h2><p>The test images with the highest loss (the model was "
            f"confidently wrong), then examples of the most frequent confusions.</p>{img(top, 'top losses')}"
            f"{img(pairs, 'confused pairs')}")


def _example_indices(pred: Any, k: int) -> list[int]:
    """Half confident correct predictions spread over classes, half the worst errors."""
    correct = np.flatnonzero(pred.correct)
    wrong = np.flatnonzero(~pred.correct)
    losses = -pred.log_probs[np.arange(len(pred.labels)), pred.labels]
    picks: list[int] = [int(i) for i in wrong[np.argsort(-losses[wrong])][: k // 2]]
    seen: set[int] = set()
    for i in correct:
        if len(picks) >= k:
            break
        if int(pred.labels[i]) not in seen:
            seen.add(int(pred.labels[i]))
            picks.append(int(i))
    return picks[:k]


def gradcam_section(ctx: Context) -> str:
    if ctx.examples == 0:
        return ""
    pred = ctx.ev.predictions["clean"]
    idx = _example_indices(pred, ctx.examples)
    images = ctx.ev.subset.images[torch.tensor(idx, dtype=torch.long)]
    png, info = figures.attribution_figure(ctx.loaded, images, [f"test:{i}" for i in idx], [int(pred.labels[i]) for i in idx])
    errors = int((~pred.correct[idx]).sum())
    which = (f"The first {errors} columns are errors, the rest correct predictions." if errors
             else "All examples shown are correct predictions.")
    return (f"<h2 id='gradcam'>What the model looks at</h2><p>Grad-CAM (layer <code>{esc(info[0]['layer'])}</code>) and "
            "integrated gradients (against a black image) for the predicted class: a trustworthy prediction "
            f"lights up the object, not the background. {which}</p>{img(png, 'Grad-CAM examples')}")


def filters_section(ctx: Context) -> str:
    fpng, _ = figures.filters_figure(ctx.loaded)
    mpng, _ = figures.feature_maps_figure(ctx.loaded, ctx.ev.subset.images[0], "test:0")
    return (f"<h2 id='filters'>First convolution: filters and feature maps</h2><div class='row'>"
            f"<div>{img(fpng, 'filters')}</div><div>{img(mpng, 'feature maps')}</div></div>")


def data_section(ctx: Context) -> str:
    from cnnkit.data.check_text import format_report
    from cnnkit.data.checks import diagnose

    report = diagnose(ctx.ds)
    flags = "".join(f"<li class='neg'>{esc(p)}</li>" for p in report.problems)
    flags += "".join(f"<li>{esc(w)}</li>" for w in report.warnings)
    return (f"<h2 id='data'>Data (the dataset doctor)</h2>"
            f"{'<ul>' + flags + '</ul>' if flags else '<p class=pos>No problems found.</p>'}"
            f"<pre>{esc(format_report(report))}</pre>")


def setup_section(ctx: Context) -> str:
    import yaml

    env = ctx.loaded.run.read("env.json", {})
    rows = [[esc(str(k)), esc(str(v))] for k, v in env.items()]
    return (f"<h2 id='config'>Config and environment</h2><div class='row'><div><pre>"
            f"{esc(yaml.safe_dump(ctx.loaded.config, sort_keys=False))}</pre></div>"
            f"<div>{table(['environment', ''], rows)}</div></div>")


def ranking_section(ctx: Context) -> str:
    """One-vs-rest ROC and precision-recall curves of the test predictions (clean)."""
    from cnnkit.evaluation.ranking import per_class_ranking, pr_curve, roc_curve

    pred = ctx.ev.predictions.get("clean") or next(iter(ctx.ev.predictions.values()))
    probs = np.exp(pred.log_probs)
    curves = [{**roc_curve(probs[:, k], pred.labels == k), **pr_curve(probs[:, k], pred.labels == k), **r}
              for k, r in enumerate(per_class_ranking(probs, pred.labels))]
    return (f"<h2 id='ranking'>ROC and precision-recall curves</h2>"
            f"{img(plots.roc_pr_png(curves, ctx.loaded.classes), 'ROC and precision-recall curves')}"
            f"<p class='note'>One class against the rest, over every threshold of its predicted probability; "
            f"in brackets the ROC AUC and the average precision (shown for up to 12 classes, the lowest AP first).</p>")


SECTIONS = (curves_section, metrics_section, classes_section, ranking_section, robustness_section, errors_section,
            gradcam_section, filters_section, data_section, setup_section)
NAV = (("curves", "curves"), ("metrics", "metrics"), ("classes", "classes"), ("ranking", "ROC/PR"), ("robustness", "robustness"),
       ("errors", "errors"), ("gradcam", "Grad-CAM"), ("filters", "filters"), ("data", "data"), ("config", "config"))


def render(ctx: Context) -> str:
    s = ctx.ev.summary
    spec = ctx.loaded.spec
    nav = "<nav>" + "".join(f"<a href='#{a}'>{esc(t)}</a>" for a, t in NAV) + "</nav>"
    head = (f"<h1>{esc(ctx.loaded.ref)}</h1><p class='sub'>model <b>{esc(str(spec.get('name')))}</b> "
            f"{esc(str(spec.get('kwargs') or ''))} &middot; {spec.get('in_channels')}x{spec.get('image_size')}px input "
            f"&middot; {len(ctx.loaded.classes)} classes &middot; data <b>{esc(s['data'])}</b> ({esc(s['split'])}, "
            f"{s['images']:,} images) &middot; created {esc(str(ctx.loaded.run.status().get('created', '')))}</p>")
    body = head + nav + summary_section(ctx) + "".join(section(ctx) for section in SECTIONS)
    template = string.Template((resources.files("cnnkit.report") / "templates" / "report.html").read_text())
    return template.substitute(title=esc(f"cnnkit report: {ctx.loaded.ref}"), body=body)


def build_context(ref: str, runs_dir: Any = None, data: str | None = None, data_dir: str | None = None,
                  variants: Sequence[Any] = (), limit: int | None = None, examples: int = 8) -> Context:
    from cnnkit.engine import make_engine
    from cnnkit.evaluation.diagnosis import diagnose_history
    from cnnkit.evaluation.evaluate import evaluate_loaded, run_dataset
    from cnnkit.evaluation.robustness import Variant
    from cnnkit.runs import load

    engine = make_engine()
    loaded = load(ref, runs_dir, engine.device)
    ds = run_dataset(loaded, data, data_dir)
    wanted = [Variant("clean"), *(v for v in variants if v.name != "clean")]
    ev = evaluate_loaded(loaded, ds, "test", wanted, engine=engine, limit=limit)
    history = loaded.run.read("history.json", []) or []
    diagnosis = loaded.run.read("diagnosis.json") or diagnose_history(history)
    return Context(loaded, ds, ev, diagnosis, history, examples)


def write_report(ref: str, out: str | None = None, runs_dir: Any = None, data: str | None = None, data_dir: str | None = None,
                 variants: Sequence[Any] = (), limit: int | None = None, examples: int = 8) -> dict[str, Any]:
    """Build the report and write it atomically; returns where, how big, and what it holds."""
    from cnnkit.io import write_text

    ctx = build_context(ref, runs_dir, data, data_dir, variants, limit, examples)
    page = render(ctx)
    path = Path(out) if out else ctx.loaded.run.file("report.html")
    if path.is_dir():
        raise CnnkitError(f"--out {path} is a directory; give a file name ending in .html")
    write_text(path, page)
    return {"run": ctx.loaded.ref, "path": str(path), "bytes": len(page.encode()), "images": page.count("<img "),
            "accuracy": _clean(ctx)["accuracy"], "verdict": ctx.diagnosis.get("verdict"),
            "variants": list(ctx.ev.summary["results"])}
