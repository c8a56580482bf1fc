"""The prediction log writer (rotation, the total bound, shutdown) and the drift window's PSI."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from cnnkit.errors import CnnkitError
from cnnkit.evaluation.reference import bin_edges, psi, shares
from cnnkit.serve.drift import DriftOptions, DriftWindow
from cnnkit.serve.predlog import PredictionLog, check_writable, read_lines


def test_every_line_is_written_by_close_and_files_rotate_within_the_bound(tmp_path: Path):
    log = PredictionLog(tmp_path, max_file_bytes=2000, max_total_bytes=10_000)
    for i in range(1000):
        log.put({"i": i, "pad": "x" * 40})
    log.close()
    files = sorted(tmp_path.glob("predictions-*.jsonl"))
    assert len(files) > 1 and all(f.stat().st_size <= 2000 for f in files)
    assert sum(f.stat().st_size for f in files) <= 10_000
    kept = [line["i"] for line in read_lines(tmp_path)]
    # The oldest files went; what is left is the most recent lines, in order, none lost after them.
    assert kept == list(range(kept[0], 1000)) and kept[0] > 0


def test_no_line_lost_without_rotation(tmp_path: Path):
    log = PredictionLog(tmp_path)
    for i in range(5000):
        log.put({"i": i})
    log.close()
    assert [line["i"] for line in read_lines(tmp_path)] == list(range(5000))


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes anywhere")
def test_unwritable_folder_is_one_clear_error(tmp_path: Path):
    tmp_path.chmod(0o500)
    try:
        with pytest.raises(CnnkitError, match="not writable"):
            check_writable(tmp_path / "sub")
    finally:
        tmp_path.chmod(0o700)


def test_a_file_in_the_way_is_one_clear_error(tmp_path: Path):
    (tmp_path / "f").write_text("")
    with pytest.raises(CnnkitError, match="--log-predictions .*not writable"):
        check_writable(tmp_path / "f" / "logs")


def test_psi_is_small_for_the_same_distribution_and_large_for_a_shift():
    rng = np.random.default_rng(0)
    ref = rng.normal(0, 1, 5000)
    edges = bin_edges(ref)
    q = shares(ref, edges)
    assert psi(q, shares(rng.normal(0, 1, 500), edges)) < 0.1
    assert psi(q, shares(rng.normal(1, 1, 500), edges)) > 0.25


def _reference(rng) -> dict:
    stats = {}
    for name in ("confidence", "brightness", "contrast", "edges"):
        values = rng.normal(0, 1, 5000)
        edges = bin_edges(values)
        stats[name] = {"edges": edges, "shares": shares(values, edges).tolist()}
    return {"statistics": stats, "predicted_mix": [0.5, 0.5]}


def test_drift_window_flips_on_and_off_with_hysteresis():
    rng = np.random.default_rng(1)
    window = DriftWindow(_reference(rng), DriftOptions(window=200, min_count=100, every=20))

    def batch(shift: float) -> dict:
        return {k: rng.normal(shift, 1, 20) for k in ("confidence", "brightness", "contrast", "edges")}

    changes = [window.add(batch(0), rng.integers(0, 2, 20)) for _ in range(20)]
    assert not any(changes) and not window.alert
    changes = [window.add(batch(2), rng.integers(0, 2, 20)) for _ in range(10)]
    assert [c.on for c in changes if c] == [True] and window.alert
    changes = [window.add(batch(0), rng.integers(0, 2, 20)) for _ in range(20)]
    assert [c.on for c in changes if c] == [False] and not window.alert
    json.dumps(window.scores)  # plain floats, as the gauges and the log need
