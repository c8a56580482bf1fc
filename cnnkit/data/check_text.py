"""The dataset doctor's report as plain text (``cnnkit data check``, and the HTML report's section)."""
from __future__ import annotations

from cnnkit.data.checks import CheckReport


def _table(report: CheckReport) -> list[str]:
    splits = list(report.counts)
    head = ["class", *splits, "total"] if len(splits) > 1 else ["class", *splits]
    rows = [[c, *(str(report.counts[s][i]) for s in splits)] for i, c in enumerate(report.classes)]
    rows.append(["total", *(str(report.totals[s]) for s in splits)])
    if len(splits) > 1:
        for row in rows:
            row.append(str(sum(int(v) for v in row[1:])))
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]

    def line(cells: list[str]) -> str:
        return "  ".join([cells[0].ljust(widths[0]), *(v.rjust(w) for v, w in zip(cells[1:], widths[1:]))]).rstrip()

    return [line(head), *(line(r) for r in rows)]


def _summary_lines(report: CheckReport) -> list[str]:
    s = report.sizes
    median = "n/a" if s["median_side"] is None else f"{s['median_side']:g}"
    modes = ", ".join(f"{m} {n}" for m, n in report.modes.items())
    common = ", ".join(f"{k} ({n})" for k, n in s["common"])
    ratio = "n/a (a class is empty)" if report.imbalance_ratio is None else f"{report.imbalance_ratio:.2f}"
    dups = ", ".join(f"{k} {d.redundant}" for k, d in report.duplicates.items())
    leaks = ", ".join(f"{k} {leak.count}" for k, leak in report.leakage.items()) or "n/a (one split)"
    return [
        f"source images:  modes {modes}; shorter side {s['min_side']}..{s['max_side']} px "
        f"(median {median}); most common {common}",
        f"imbalance:      {ratio} (largest / smallest class in train)",
        f"duplicates:     {dups} (redundant pixel-identical copies per split)",
        f"leakage:        {leaks} (images identical to one in the earlier split)",
        f"bad files:      {len(report.bad_files)}",
    ]


def format_report(report: CheckReport) -> str:
    """Plain text: header, classes x splits table, summary, findings, suggested class weights."""
    lines = [
        f"{report.name}  ({report.source})" if report.source else report.name,
        f"{len(report.classes)} classes, kind {report.kind}, loaded as {report.channels} x {report.image_size} x "
        f"{report.image_size}; checksum {report.checksum[:16] or 'n/a'}",
        "",
        *_table(report),
        "",
        *_summary_lines(report),
        "",
    ]
    if report.problems:
        lines += ["PROBLEMS (training would fail or be meaningless):", *(f"  - {p}" for p in report.problems)]
    if report.warnings:
        lines += ["warnings:", *(f"  - {w}" for w in report.warnings)]
    if not report.problems and not report.warnings:
        lines.append("no problems found")
    if report.bad_files:
        lines += ["unreadable files:", *(f"  {f}: {r}" for f, r in report.bad_files[:20])]
        lines += [f"  ... and {len(report.bad_files) - 20} more"] if len(report.bad_files) > 20 else []
    width = max(len(c) for c in report.classes) if report.classes else 1
    lines += ["", "suggested class weights (inverse train frequency, mean 1; --class-weights auto):"]
    lines += [f"  {c.ljust(width)}  {w:.3f}" for c, w in zip(report.classes, report.class_weights)]
    return "\n".join(lines)
