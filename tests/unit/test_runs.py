import multiprocessing as mp
from pathlib import Path

import pytest
import torch

from cnnkit.errors import CnnkitError
from cnnkit.io import write_text
from cnnkit.runs import RunStore


def _create(root: str, q) -> None:
    q.put(RunStore(root).create("race").version)


def test_versions_increase_and_are_never_reused(tmp_path: Path):
    store = RunStore(tmp_path)
    assert [store.create("a").version for _ in range(3)] == [1, 2, 3]
    (tmp_path / "a" / "v3").rename(tmp_path / "a" / "v9")
    assert store.create("a").version == 10
    assert store.versions("a") == [1, 2, 9, 10]


def test_concurrent_processes_get_distinct_versions(tmp_path: Path):
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    procs = [ctx.Process(target=_create, args=(str(tmp_path), q)) for _ in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert sorted(q.get() for _ in procs) == [1, 2, 3, 4]


def test_refs_resolve_by_name_version_or_path(tmp_path: Path):
    store = RunStore(tmp_path)
    for _ in range(2):
        store.create("m")
    assert store.get("m").version == 2
    assert store.get("m:v1").version == 1 and store.get("m:1").version == 1
    assert store.get(str(tmp_path / "m" / "v1")).ref == "m:v1"
    with pytest.raises(CnnkitError, match="no run named 'x'.*runs: m"):
        store.get("x")
    with pytest.raises(CnnkitError, match="has no version 'v7'.*v1, v2"):
        store.get("m:v7")


@pytest.mark.parametrize("bad", ["../up", "a/b", "-x", ""])
def test_bad_names_are_refused(tmp_path: Path, bad: str):
    with pytest.raises(CnnkitError):
        RunStore(tmp_path).create(bad)


def test_checkpoint_round_trip_is_weights_only(tmp_path: Path):
    run = RunStore(tmp_path).create("c")
    state = {"epoch": 2, "model": {"w": torch.randn(3)}, "history": [{"epoch": 1, "loss": 0.5}], "rng": torch.get_rng_state()}
    run.save_checkpoint(state)
    back = run.load_checkpoint()
    assert torch.equal(back["model"]["w"], state["model"]["w"]) and back["history"] == state["history"]
    assert run.status()["state"] == "running" and run.status()["epoch"] == 3


def test_a_pickled_object_in_a_checkpoint_is_refused(tmp_path: Path):
    run = RunStore(tmp_path).create("evil")
    (run.path / "checkpoints").mkdir()
    torch.save({"x": Path("/etc/passwd")}, run.path / "checkpoints" / "last.pt")  # arbitrary class
    with pytest.raises(Exception, match="(?i)weights_only|unsupported global"):
        run.load_checkpoint()


def test_atomic_writes_leave_no_temporary_files(tmp_path: Path):
    target = tmp_path / "f.txt"
    write_text(target, "one")
    write_text(target, "two")
    assert target.read_text() == "two" and [p.name for p in tmp_path.iterdir()] == ["f.txt"]
    with pytest.raises(ZeroDivisionError):
        from cnnkit.io import write_atomic

        write_atomic(target, lambda p: (p.write_text("half"), 1 / 0))
    assert target.read_text() == "two" and [p.name for p in tmp_path.iterdir()] == ["f.txt"]


def test_loading_an_unfinished_run_says_so(tmp_path: Path):
    run = RunStore(tmp_path).create("u")
    with pytest.raises(CnnkitError, match="has no weights"):
        run.load_weights()
