"""Mirror a training run to MLflow (``--track mlflow``): params, metrics, tags, artifacts, registry.

cnnkit's run store stays the source of truth; MLflow is a copy users can browse. So nothing
here may fail a training: every MLflow call goes through ``Tracker._call``, which on the first
error warns once on stderr and stops mirroring (a dead server is not asked again each epoch);
the run's ``status.json`` and the end-of-training summary then say the mirror is incomplete.
An extra's library: mlflow is imported only here, lazily (``cnnkit[mlflow]``).
"""
from __future__ import annotations

import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TextIO

from cnnkit.errors import CnnkitError

EXTRA = 'MLflow tracking needs mlflow: pip install "cnnkit[mlflow]"'
DEFAULT_EXPERIMENT = "cnnkit"
ARTIFACT_PATH = "run"  # the run folder's files, under this path in the MLflow run
PARENT_TAG = "mlflow.parentRunId"  # how MLflow nests a run under another (the UI's tree)
GIT_TAG = "mlflow.source.git.commit"  # the tag MLflow's UI shows as the source version
# MLflow's HTTP client retries 7 times with exponential backoff and waits 120 s per request by
# default: minutes per call against a dead server. A mirror must not stall training that long,
# so unless the user set them these are lowered (MLflow reads them from the environment). MLflow
# also prints a "View run" link on stdout when a run ends, which would corrupt ``--json`` output:
# the summary line carries that link instead.
ENV_DEFAULTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_TIMEOUT": "15",
                "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true"}
PROBE_TIMEOUT_S = 5.0
LOCAL_DB = "mlflow.db"
BATCH = 100  # MLflow's log_batch takes at most 100 params / 1000 metrics per call

TrainFn = Callable[[Sequence[Any], Callable[[Any], None]], Any]


def tracking_uri(explicit: str | None) -> str:
    """``--tracking-uri``, else ``$MLFLOW_TRACKING_URI``, else a local ``./mlruns`` folder.

    A plain folder becomes a SQLite store in it (``FOLDER/mlflow.db``, artifacts in ``FOLDER/artifacts``):
    MLflow 3 refuses its old file store unless told otherwise."""
    uri = explicit or os.environ.get("MLFLOW_TRACKING_URI") or "mlruns"
    if ":" in uri.split("/")[0] or uri.startswith("databricks"):
        return uri
    return f"sqlite:///{Path(uri).resolve() / LOCAL_DB}"


def _local_folder(uri: str) -> Path | None:
    """The folder of a store made by ``tracking_uri`` from a plain path (None for any other URI)."""
    if uri.startswith("sqlite:///") and uri.endswith("/" + LOCAL_DB):
        return Path(uri[len("sqlite:///"):]).parent
    return None


def redact(uri: str) -> str:
    """The URI without a password, for messages and the run's records."""
    parts = urllib.parse.urlsplit(uri)
    if parts.password is None:
        return uri
    host = parts.hostname or ""
    netloc = f"{parts.username}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """``{"train": {"lr": 0.1}}`` -> ``{"train.lr": "0.1"}``: the config as MLflow params."""
    out: dict[str, str] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(flatten(value, name + "."))
        else:
            out[name] = str(value)[:6000]  # MLflow's limit on a param's value
    return out


def _import_client() -> Any:
    try:
        from mlflow import MlflowClient
    except ImportError:
        raise CnnkitError(EXTRA) from None
    return MlflowClient


def probe(uri: str) -> str | None:
    """Why a tracking server cannot be reached (None when it answers, or when the URI is local)."""
    if not uri.startswith(("http://", "https://")):
        return None
    try:
        with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=PROBE_TIMEOUT_S) as response:
            response.read(64)
    except urllib.error.HTTPError as exc:  # it answers, if oddly (e.g. a proxy without /health)
        return None if exc.code < 500 else f"HTTP {exc.code}"
    except (OSError, ValueError) as exc:
        return str(getattr(exc, "reason", exc))
    return None


def _numeric(metrics: dict[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


class Tracker:
    """The training callback that mirrors one cnnkit run into one MLflow run."""

    def __init__(self, client: Any, uri: str, config: dict[str, Any], parent: str | None = None,
                 register: str | None = None, err: TextIO | None = None) -> None:
        self.client, self.uri, self.config, self.parent, self.register = client, uri, config, parent, register
        self.err = err or sys.stderr
        self.run_id: str | None = None
        self.experiment_id: str | None = None
        self.error: str | None = None  # the first failure; mirroring stops there
        self.registered: dict[str, Any] | None = None

    @classmethod
    def start(cls, cfg: Any, parent: str | None = None, err: TextIO | None = None) -> Tracker:
        """Check the extra and the server before training starts; an unreachable server is one warning."""
        client_cls = _import_client()
        for key, value in ENV_DEFAULTS.items():
            os.environ.setdefault(key, value)
        uri = tracking_uri(cfg.run.tracking_uri)
        tracker = cls(None, uri, cfg.to_dict(), parent, cfg.run.register, err)
        why = probe(uri)
        if why is not None:
            tracker._fail("cannot reach the tracking server", why, at_start=True)
        elif (folder := _local_folder(uri)) is not None:
            tracker._call("creating the local store", folder.mkdir, parents=True, exist_ok=True)
        tracker.client = tracker._call("opening the tracking store", client_cls, tracking_uri=uri)
        return tracker

    # -- the one door to MLflow ---------------------------------------------------------------
    def _call(self, what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        if self.error is not None:
            return None
        try:
            return fn(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - any MLflow or network error: the mirror must never fail training
            self._fail(what, f"{type(exc).__name__}: {(str(exc).splitlines() or [''])[0][:300]}")
            return None

    def _fail(self, what: str, why: str, at_start: bool = False) -> None:
        self.error = f"{what}: {why}"
        then = "training without it" if at_start else "training goes on; the MLflow copy of this run is incomplete"
        print(f"cnnkit: warning: MLflow at {redact(self.uri)}: {self.error}; {then} "
              "(cnnkit's run store has everything)", file=self.err, flush=True)

    @property
    def active(self) -> bool:
        return self.error is None and self.run_id is not None

    # -- the hooks ----------------------------------------------------------------------------
    def created(self, run: Any) -> None:
        """The cnnkit run exists: open its MLflow run with the config as params and the lineage as tags."""
        exp = self._call("finding the experiment", self._experiment)
        if exp is None:
            return
        data, env = run.read("data.json", {}) or {}, run.read("env.json", {}) or {}
        tags = {"cnnkit.run": run.ref, "cnnkit.run_path": str(Path(run.path).resolve()),
                "cnnkit.data": str(data.get("name")), "cnnkit.data_checksum": str(data.get("checksum")),
                GIT_TAG: str(env.get("git_commit") or ""), "mlflow.source.name": "cnnkit train"}
        if self.parent:
            tags[PARENT_TAG] = self.parent
        made = self._call("creating the run", self.client.create_run, exp, run_name=run.ref, tags=tags)
        if made is None:
            return
        self.run_id, self.experiment_id = made.info.run_id, exp
        self._log_params(flatten(self.config))

    def _experiment(self) -> str:
        if self.parent:  # a nested run lives in its parent's experiment
            return self.client.get_run(self.parent).info.experiment_id
        name = os.environ.get("MLFLOW_EXPERIMENT_NAME") or DEFAULT_EXPERIMENT
        exp = self.client.get_experiment_by_name(name)
        if exp is not None:
            return exp.experiment_id
        folder = _local_folder(self.uri)  # our local store keeps its artifacts beside its database
        return self.client.create_experiment(name, (folder / "artifacts").as_uri() if folder else None)

    def _log_params(self, params: dict[str, str]) -> None:
        from mlflow.entities import Param

        items = [Param(k, v) for k, v in sorted(params.items())]
        for i in range(0, len(items), BATCH):
            if self._call("logging the params", self.client.log_batch, self.run_id, params=items[i:i + BATCH]) is None \
                    and self.error:
                return

    def log_metrics(self, values: dict[str, Any], step: int) -> None:
        if not self.active:
            return
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        batch = [Metric(k, v, now, step) for k, v in _numeric(values).items()]
        self._call("logging metrics", self.client.log_batch, self.run_id, metrics=batch)

    def __call__(self, epoch: int, metrics: dict[str, float]) -> None:
        """Each finished epoch: its metrics at step = the epoch number (1-based, as in history.json)."""
        self.log_metrics({k: v for k, v in metrics.items() if k != "epoch"}, epoch + 1)

    def finish(self, outcome: Any) -> dict[str, Any]:
        """Final metrics, the run folder as artifacts, the registry version; returns the record."""
        run = outcome.run
        self.log_metrics({f"final.{k}": v for k, v in outcome.metrics.items()}, int(outcome.metrics.get("epochs") or 0))
        if self.active:
            self._call("uploading the run folder", self.client.log_artifacts, self.run_id, str(run.path), ARTIFACT_PATH)
        if self.active and self.register:
            self._call("registering the model", self._register, run.ref)
        if self.active:
            self._call("closing the run", self.client.set_terminated, self.run_id, "FINISHED")
        record = self.record()
        outcome.metrics["mlflow"] = record
        run.set_status(run.status().get("state", "finished"), mlflow=record)
        return record

    def _register(self, ref: str) -> None:
        from mlflow.exceptions import MlflowException

        try:
            self.client.create_registered_model(self.register, description="trained by cnnkit")
        except MlflowException as exc:
            if "RESOURCE_ALREADY_EXISTS" not in str(getattr(exc, "error_code", "")) and "already exists" not in str(exc):
                raise
        version = self.client.create_model_version(self.register, f"runs:/{self.run_id}/{ARTIFACT_PATH}", self.run_id,
                                                   tags={"cnnkit.run": ref}, description=f"cnnkit run {ref}")
        self.registered = {"name": self.register, "version": int(version.version)}

    def abort(self, exc: BaseException) -> None:
        """Training raised: close the MLflow run as failed (killed for Ctrl-C, pruned for a pruned trial)."""
        if not self.active:
            return
        pruned = type(exc).__name__ == "TrialPruned"  # Optuna's; tuning is above training, so matched by name
        state = "pruned" if pruned else "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed"
        self._call("tagging the run", self.client.set_tag, self.run_id, "cnnkit.state", state)
        self._call("closing the run", self.client.set_terminated, self.run_id,
                   "FAILED" if state == "failed" else "KILLED")

    def record(self) -> dict[str, Any]:
        """What the run's status and the summary say about the mirror."""
        rec: dict[str, Any] = {"tracking_uri": redact(self.uri), "run_id": self.run_id,
                               "state": "mirrored" if self.error is None and self.run_id else "incomplete"}
        if self.error is not None:
            rec["error"] = self.error
        if self.run_id and self.uri.startswith(("http://", "https://")):  # the run's page in MLflow's UI
            rec["url"] = f"{redact(self.uri).rstrip('/')}/#/experiments/{self.experiment_id}/runs/{self.run_id}"
        if self.registered:
            rec["registered"] = self.registered
        return rec


def summary_line(record: dict[str, Any]) -> str:
    """The end-of-training line: where the MLflow copy is, or why it is incomplete."""
    where = f"MLflow {record['tracking_uri']}"
    if record.get("state") != "mirrored":
        return f"{where}: NOT fully mirrored ({record.get('error')}); the run store is complete"
    text = f"{where}: run {record.get('url') or record['run_id']}"
    if record.get("registered"):
        text += f", registered as {record['registered']['name']} version {record['registered']['version']}"
    return text


def tracked(cfg: Any, train: TrainFn, callbacks: Sequence[Any], on_created: Callable[[Any], None] | None,
            parent: str | None = None) -> Any:
    """Run ``train(callbacks, on_created)`` with a Tracker among its callbacks; on rank 0 only."""
    if os.environ.get("RANK", "0") != "0":  # torchrun: rank 0 writes the run and mirrors it
        return train(callbacks, on_created)
    tracker = Tracker.start(cfg, parent)

    def created(run: Any) -> None:
        tracker.created(run)
        if on_created is not None:
            on_created(run)

    try:
        outcome = train([tracker, *callbacks], created)  # first: a pruning callback may raise after it
    except BaseException as exc:
        tracker.abort(exc)
        raise
    if outcome.run is not None:
        tracker.finish(outcome)
    return outcome


def start_parent(cfg: Any, name: str, params: dict[str, Any]) -> tuple[str | None, Tracker]:
    """``cnnkit tune --track mlflow``: the study's own MLflow run, under which each trial's run nests."""
    tracker = Tracker.start(cfg)
    exp = tracker._call("finding the experiment", tracker._experiment)
    if exp is not None:
        made = tracker._call("creating the study's run", tracker.client.create_run, exp, run_name=name,
                             tags={"cnnkit.study": name, "mlflow.source.name": "cnnkit tune"})
        if made is not None:
            tracker.run_id, tracker.experiment_id = made.info.run_id, exp
            tracker._log_params(flatten(params))
    return tracker.run_id, tracker


def finish_parent(tracker: Tracker, summary: dict[str, Any]) -> None:
    """The study's best value on its MLflow run, which is then closed; the summary says where it is."""
    best = summary.get("best_value")
    if isinstance(best, (int, float)):
        tracker.log_metrics({"best_value": best}, 0)
    if tracker.active:
        tracker._call("closing the study's run", tracker.client.set_terminated, tracker.run_id, "FINISHED")
    summary["mlflow"] = tracker.record()
