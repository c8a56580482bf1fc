"""Creating or joining a study, and refusing to join one that measures something else.

A cnnkit study carries its definition in a study user attribute (``cnnkit``): the metric, the
search space, the shared configuration, the sampler and pruner it was started with and the
epochs budget. A command that names an existing study joins it; if it asks for a different
direction, space or shared option, it is refused before anything is written.
"""
from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from cnnkit.errors import CnnkitError
from cnnkit.tuning.base import conflicts
from cnnkit.tuning.names import METRIC_DIRECTIONS

META_KEY = "cnnkit"
# The metric each trial reports (every epoch, and at the end) and the way it should go.
METRICS = METRIC_DIRECTIONS  # metric -> Optuna direction


@dataclass
class StudyMeta:
    metric: str
    space: dict[str, Any]
    shared: dict[str, Any]
    sampler: str
    pruner: str
    max_epochs: int

    @property
    def direction(self) -> str:
        return METRICS[self.metric]

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> StudyMeta:
        return cls(**{k: raw[k] for k in ("metric", "space", "shared", "sampler", "pruner", "max_epochs")})


@dataclass
class Request:
    """What this command asks of the study; None where the command did not say."""

    name: str
    meta: StudyMeta  # the definition a new study gets
    metric_given: bool
    space_given: bool
    explicit: dict[str, Any]  # the config options given on the command line
    sampler: str | None = None
    pruner: str | None = None


def _tpe(seed: int | None) -> Any:
    import optuna

    # Multivariate TPE with groups models parameters jointly and handles conditional ones
    # (lr_sgd / lr_adamw); constant_liar keeps parallel workers from sampling the same point.
    return optuna.samplers.TPESampler(seed=seed, multivariate=True, group=True, constant_liar=True)


def _random(seed: int | None) -> Any:
    import optuna

    return optuna.samplers.RandomSampler(seed=seed)


def _cmaes(seed: int | None) -> Any:
    import optuna

    # CMA-ES covers the numeric parameters; the categorical ones go to TPE.
    return optuna.samplers.CmaEsSampler(seed=seed, independent_sampler=_tpe(seed), warn_independent_sampling=False)


# Keyed by the names in cnnkit.tuning.names (tests/unit/test_tune_study.py keeps them in step).
SAMPLERS: dict[str, Callable[[int | None], Any]] = {"tpe": _tpe, "random": _random, "cmaes": _cmaes}


# Hyperband's reduction factor. cnnkit's trials are short (8 epochs by default): at 9 epochs,
# factor 3 makes floor(log3(9)) + 1 = 3 brackets, one of which never prunes, and trains 1.9-2.1x
# fewer epochs per trial than no pruning. Factor 4 (ASHA's and Ray Tune's choice) makes two
# brackets up to 15 epochs, one with rungs at 1 and 4 epochs and one at 4, and trains 2.4-2.9x fewer
# (tests/unit/test_tune_study.py measures both).
HYPERBAND_REDUCTION = 4


def _hyperband(max_epochs: int) -> Any:
    import optuna

    return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=max_epochs,
                                          reduction_factor=HYPERBAND_REDUCTION)


def _median(max_epochs: int) -> Any:
    import optuna

    return optuna.pruners.MedianPruner(n_startup_trials=4, n_warmup_steps=0)


def _no_pruning(max_epochs: int) -> Any:
    import optuna

    return optuna.pruners.NopPruner()


PRUNERS: dict[str, Callable[[int], Any]] = {"hyperband": _hyperband, "median": _median, "none": _no_pruning}


def make_sampler(name: str, seed: int | None) -> Any:
    from optuna.exceptions import ExperimentalWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)
        return SAMPLERS[name](seed)


def check_sampler(name: str, numeric_params: int) -> None:
    if name not in SAMPLERS:
        raise CnnkitError(f"unknown sampler {name!r}; choose {', '.join(SAMPLERS)}")
    if name == "cmaes" and numeric_params < 2:
        raise CnnkitError(f"the cmaes sampler needs at least 2 numeric parameters in the space; it has {numeric_params}")


def _space_difference(old: dict[str, Any], new: dict[str, Any]) -> str:
    for name in sorted(set(old) | set(new)):
        if name not in new:
            return f"this command's space has no {name!r}"
        if name not in old:
            return f"this command's space adds {name!r}"
        if old[name] != new[name]:
            return f"{name!r} is {new[name]} here, {old[name]} in the study"
    return "same"


def _study_id(storage: Any, name: str) -> int | None:
    try:
        return storage.get_study_id_from_name(name)
    except KeyError:
        return None


def _stored_meta(storage: Any, study_id: int, wait_s: float) -> StudyMeta | None:
    """The study's definition. Creating a study and storing its definition are two writes, so
    a study another process is creating this instant (no trials yet) gets ``wait_s`` to have it."""
    deadline = time.monotonic() + wait_s
    while True:
        raw = storage.get_study_user_attrs(study_id).get(META_KEY)
        if raw is not None:
            return StudyMeta.from_dict(raw)
        if time.monotonic() > deadline or storage.get_all_trials(study_id, deepcopy=False):
            return None
        time.sleep(0.5)


def _check_join(storage: Any, study_id: int, req: Request, wait_s: float = 2.0) -> StudyMeta:
    name = req.name
    stored = _stored_meta(storage, study_id, wait_s)
    metric = req.meta.metric if req.metric_given or stored is None else stored.metric
    directions = [d.name.lower() for d in storage.get_study_directions(study_id)]
    if directions != [METRICS[metric]]:
        raise CnnkitError(f"study {name!r} exists and optimizes {'/'.join(directions)}; "
                          f"this command asks to {METRICS[metric]} {metric}")
    if stored is None:
        raise CnnkitError(f"study {name!r} exists but was not created by cnnkit tune; choose another --study name")
    if stored.metric != metric:
        raise CnnkitError(f"study {name!r} measures {stored.metric}; this command asks for {metric}")
    if req.space_given and stored.space != req.meta.space:
        raise CnnkitError(f"study {name!r} exists with a different search space: "
                          f"{_space_difference(stored.space, req.meta.space)}")
    diff = conflicts(stored.shared, req.explicit)
    if diff:
        raise CnnkitError(f"study {name!r} exists with different options: {diff[0]}")
    return stored


def find(storage: Any, req: Request) -> StudyMeta | None:
    """The existing study's definition if it may be joined as asked, None if there is no such study.

    Only reads: every refusal (direction, space, options) happens before anything is written.
    """
    study_id = _study_id(storage, req.name)
    return None if study_id is None else _check_join(storage, study_id, req)


def create(storage: Any, req: Request) -> StudyMeta:
    """Create the study with its definition; if another process just created it, join that one."""
    import optuna
    from optuna.study import StudyDirection

    direction = StudyDirection.MAXIMIZE if req.meta.direction == "maximize" else StudyDirection.MINIMIZE
    try:
        study_id = storage.create_new_study([direction], req.name)
    except optuna.exceptions.DuplicatedStudyError:  # lost a race with another process creating it
        return _check_join(storage, storage.get_study_id_from_name(req.name), req, wait_s=10.0)
    storage.set_study_user_attr(study_id, META_KEY, asdict(req.meta))
    return req.meta


def study_names(storage: Any) -> list[str]:
    return sorted(s.study_name for s in storage.get_all_studies())


def load(storage: Any, name: str, sampler: Any = None, pruner: Any = None) -> Any:
    """An ``optuna.Study`` by name; a missing one is an error listing the studies there."""
    import optuna

    if _study_id(storage, name) is None:
        known = ", ".join(study_names(storage)) or "none"
        raise CnnkitError(f"no study named {name!r} in this storage (studies: {known})")
    return optuna.load_study(study_name=name, storage=storage, sampler=sampler, pruner=pruner)


def meta_of(study: Any) -> StudyMeta:
    raw = study.user_attrs.get(META_KEY)
    if raw is None:
        raise CnnkitError(f"study {study.study_name!r} was not created by cnnkit tune")
    return StudyMeta.from_dict(raw)
