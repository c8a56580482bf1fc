"""Hyperparameter tuning with Optuna, split by job (the entry points are in ``tune``).

- ``space``: the search space (the YAML format, validation, sampling); ``defaults``: each model family's default space
- ``names``: the sampler, pruner and metric names and the defaults (Optuna-free, for the CLI)
- ``tune``: the entry points (``tune``, ``show``, ``best_config``, ``train_from_study``)
- ``base``: the configuration a trial trains (study-wide part, machine-local part, overrides)
- ``storage``: opening Optuna's storage (SQLite under the runs dir, or any SQLAlchemy URL)
- ``study``: creating or joining a study, checking it matches; sampler and pruner tables
- ``objective``: one trial = one real run of the spine, with pruning and run bookkeeping
- ``workers``: K worker processes sharing a study and a trial budget
- ``summary``: what ``cnnkit tune show`` prints and the plots it saves

Optuna is imported by these modules, so only import them when tuning (the CLI does it lazily).
"""
