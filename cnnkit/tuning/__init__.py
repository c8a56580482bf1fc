"""Hyperparameter tuning with Optuna, split by job (the public entry points are in ``cnnkit.tuning.tune``).

- ``space``: the search space (defaults per model family, the YAML format, validation, sampling)
- ``base``: the configuration a trial trains (study-wide part, machine-local part, overrides)
- ``storage``: opening Optuna's storage (SQLite under the runs dir, or any SQLAlchemy URL)
- ``study``: creating or joining a study, checking it matches; sampler and pruner tables
- ``objective``: one trial = one real run of the spine, with pruning and run bookkeeping
- ``workers``: K worker processes sharing a study and a trial budget
- ``summary``: what ``cnnkit tune show`` prints and the plots it saves

Optuna is imported by these modules, so only import them when tuning (the CLI does it lazily).
"""
