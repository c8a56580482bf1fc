"""The names and defaults of ``cnnkit tune``'s choices, in one place.

Optuna-free, so the CLI can offer the choices without importing the tuning code; ``study``
builds its sampler and pruner tables on these names (a unit test keeps the two in step).
"""
from __future__ import annotations

# What trials are compared on, and which way is better.
METRIC_DIRECTIONS = {"val_accuracy": "maximize", "val_loss": "minimize"}
METRICS = tuple(METRIC_DIRECTIONS)
SAMPLERS = ("tpe", "random", "cmaes")
PRUNERS = ("hyperband", "median", "none")

DEFAULT_METRIC = "val_accuracy"
DEFAULT_SAMPLER = "tpe"
DEFAULT_PRUNER = "hyperband"
DEFAULT_TRIALS = 20
DEFAULT_HEARTBEAT_S = 20
