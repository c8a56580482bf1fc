"""``cnnkit monitor LOGDIR --run RUN``: a served model's prediction logs read back as one HTML page.

The log lines are replayed in time order through the server's own ``DriftWindow`` (same PSI,
same window, same hysteresis), so the drift over time on the page is what ``/metrics`` showed
while it served; beside it the predicted-class mix against the training prior, the share of
low-confidence answers over time, and the least confident inputs (thumbnails when the server ran
with ``--log-inputs``). One self-contained page: images embedded, no scripts, nothing fetched.
"""
from __future__ import annotations

import html
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from string import Template
from typing import Any

import numpy as np

from cnnkit.errors import CnnkitError
from cnnkit.evaluation.reference import INPUT_STATISTICS, REFERENCE_FILE, class_mix
from cnnkit.serve.drift import DriftOptions, DriftWindow, options_for
from cnnkit.serve.predlog import read_lines
from cnnkit.serve.settings import Monitoring

esc = html.escape
LEAST_CONFIDENT = 24


@dataclass
class Replay:
    """The log of one model version, replayed: one point per scored window."""

    label: str
    lines: list[dict[str, Any]]
    times: list[float]  # time of the line that completed each scored window
    scores: list[dict[str, float]]
    alerts: list[bool]


def select_lines(lines: list[dict[str, Any]], name: str, version: int) -> list[dict[str, Any]]:
    """The run's lines (by name and version; else the only version in the log), in time order."""
    mine = [x for x in lines if x.get("model") == name and x.get("version") == version]
    versions = sorted({(str(x.get("model")), x.get("version")) for x in lines})
    if not mine and len(versions) == 1:  # served under an alias (ALIAS=RUN)
        mine = lines
    if not mine:
        found = ", ".join(f"{m}:v{v}" for m, v in versions) or "none"
        raise CnnkitError(f"the log has no lines of {name}:v{version}; it holds {found}")
    return sorted(mine, key=lambda x: float(x.get("time", 0)))


def replay(lines: list[dict[str, Any]], reference: dict[str, Any], options: DriftOptions, label: str) -> Replay:
    window = DriftWindow(reference, options)
    out = Replay(label, lines, [], [], [])
    for line in lines:
        stats = {"confidence": np.array([line["confidence"]]),
                 **{k: np.array([line["stats"][k]]) for k in INPUT_STATISTICS}}
        window.add(stats, np.array([line["top_k"][0]["index"]]))
        if window.scores and window._since == 0:  # a window was just scored
            out.times.append(float(line["time"]))
            out.scores.append(dict(window.scores))
            out.alerts.append(window.alert)
    return out


def summary(r: Replay, reference: dict[str, Any], classes: list[str]) -> dict[str, Any]:
    conf = np.array([x["confidence"] for x in r.lines])
    low = float(reference["low_confidence"]["threshold"])
    mix = class_mix(np.array([x["top_k"][0]["index"] for x in r.lines]), len(classes))
    worst = {k: max(s.get(k, 0.0) for s in r.scores) for k in r.scores[0]} if r.scores else {}
    return {"model": r.label, "images": len(r.lines), "windows_scored": len(r.scores),
            "windows_alerting": int(sum(r.alerts)), "alert_now": bool(r.alerts and r.alerts[-1]),
            "max_psi": {k: round(v, 4) for k, v in worst.items()},
            "low_confidence": {"threshold": low, "share": round(float((conf < low).mean()), 4),
                               "reference_share": reference["low_confidence"]["share"]},
            "class_mix": {c: round(float(m), 4) for c, m in zip(classes, mix)},
            "class_prior": dict(zip(classes, reference["class_prior"]))}


def _lines_png(xs: list[float], series: dict[str, list[float]], title: str, ylabel: str,
               threshold: float | None = None) -> bytes:
    from cnnkit import plots

    fig = plots._figure(7, 3)
    ax = fig.add_subplot()
    t0 = xs[0] if xs else 0.0
    for name, ys in series.items():
        ax.plot([(x - t0) / 60 for x in xs], ys, label=name, lw=1.4)
    if threshold is not None:
        ax.axhline(threshold, color="red", ls="--", lw=1, label=f"alert at {threshold:g}")
    ax.set(title=title, xlabel="minutes since the first logged answer", ylabel=ylabel)
    ax.legend(fontsize=7, loc="upper left")
    return plots._png(fig)


def _mix_png(summary_: dict[str, Any]) -> bytes:
    from cnnkit import plots

    classes = list(summary_["class_mix"])
    x = np.arange(len(classes))
    fig = plots._figure(7, 3)
    ax = fig.add_subplot()
    ax.bar(x - 0.2, [summary_["class_prior"][c] for c in classes], 0.4, label="training prior")
    ax.bar(x + 0.2, [summary_["class_mix"][c] for c in classes], 0.4, label="served (predicted)")
    ax.set_xticks(x, classes, rotation=45 if len(classes) > 12 else 0, fontsize=7)
    ax.set(title="Predicted-class mix against the training prior", ylabel="share")
    ax.legend(fontsize=7)
    return plots._png(fig)


def _low_share(r: Replay, threshold: float, every: int) -> tuple[list[float], list[float]]:
    conf = np.array([x["confidence"] for x in r.lines])
    times = [float(x["time"]) for x in r.lines]
    ends = list(range(every, len(conf) + 1, every)) or [len(conf)]
    return [times[e - 1] for e in ends], [float((conf[max(0, e - every):e] < threshold).mean()) for e in ends]


def _least_confident(r: Replay) -> str:
    from cnnkit.report.html import table

    worst = sorted(r.lines, key=lambda x: x["confidence"])[:LEAST_CONFIDENT]
    cells = []
    for x in worst:
        pic = (f'<img alt="input" src="data:image/png;base64,{x["thumbnail"]}" style="width:56px;image-rendering:pixelated">'
               if x.get("thumbnail") else f"<code>{esc(str(x.get('sha256', ''))[:12])}</code>")
        cells.append((pic, esc(x["top_k"][0]["label"]), f"{x['confidence']:.3f}", esc(str(x.get("route", "")))))
    return table(["input", "answer", "confidence", "route"], cells)


def render(r: Replay, s: dict[str, Any], reference: dict[str, Any], options: DriftOptions) -> str:
    from cnnkit.report.html import card, img

    names = sorted({k for sc in r.scores for k in sc})
    drift = (img(_lines_png(r.times, {k: [sc.get(k, np.nan) for sc in r.scores] for k in names},
                            "Drift: PSI of each statistic against the run's reference", "PSI", options.threshold), "drift")
             if r.scores else f"<p>Fewer than {options.min_count} answers: no window was scored.</p>")
    low_t, low_y = _low_share(r, s["low_confidence"]["threshold"], options.every * 4)
    low = img(_lines_png(low_t, {"share under the threshold": low_y},
                         f"Answers with confidence under {s['low_confidence']['threshold']:g}", "share"), "low confidence")
    cards = "".join([card("images", f"{s['images']:,}"), card("windows scored", str(s["windows_scored"])),
                     card("windows alerting", str(s["windows_alerting"]), f"alert at PSI {options.threshold:g}"),
                     card("alert now", "ON" if s["alert_now"] else "off"),
                     card("low confidence", f"{100 * s['low_confidence']['share']:.1f}%",
                          f"validation: {100 * s['low_confidence']['reference_share']:.1f}%")])
    body = (f"<h1>{esc(r.label)}: served traffic</h1><p class='sub'>{s['images']:,} logged answers, windows of "
            f"{options.window} compared with the run's {REFERENCE_FILE} (population stability index; alert at "
            f"{options.threshold:g}, off below {options.clear:g})</p><div class='cards'>{cards}</div>"
            f"<h2>Drift over time</h2>{drift}<h2>Predicted classes</h2>{img(_mix_png(s), 'class mix')}"
            f"<h2>Low-confidence answers</h2>{low}<h2>Least confident inputs</h2>{_least_confident(r)}")
    template = Template((resources.files("cnnkit.report") / "templates" / "report.html").read_text())
    return template.substitute(title=esc(f"cnnkit monitor: {r.label}"), body=body)


def monitor(log_dir: str, ref: str, runs_dir: Any = None, out: str | None = None,
            window: int | None = None, threshold: float | None = None) -> tuple[dict[str, Any], Path]:
    """Read LOGDIR's lines of RUN, replay them, write the page; (summary, page path)."""
    from cnnkit.io import write_text
    from cnnkit.runs import RunStore

    folder = Path(log_dir)
    if not folder.is_dir():
        raise CnnkitError(f"{log_dir}: no such log folder (cnnkit serve --log-predictions DIR writes one)")
    lines = read_lines(folder)
    if not lines:
        raise CnnkitError(f"{log_dir}: no prediction log lines in it")
    run = RunStore(runs_dir).get(ref)
    reference = run.read(REFERENCE_FILE)
    if reference is None:
        raise CnnkitError(f"run {run.ref} has no {REFERENCE_FILE} (trained before drift monitoring): nothing to compare with")
    defaults = Monitoring()
    m = Monitoring(drift_window=window or defaults.drift_window, drift_threshold=threshold or defaults.drift_threshold)
    options = options_for(m)
    r = replay(select_lines(lines, run.name, run.version), reference, options, run.ref)
    classes = list((run.read("model.json") or {}).get("classes") or [str(i) for i in range(len(reference["class_prior"]))])
    s = summary(r, reference, classes)
    path = Path(out) if out else folder / "monitor.html"
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text(path, render(r, s, reference, options))
    s["report"] = str(path)
    return s, path
