"""Training: a config in, a versioned run out.

``run.train_run`` is the run-level entry point (data -> model -> fit -> run folder);
``loop.fit`` is the epoch loop (optimizer, schedule, EMA, early stopping, checkpoints);
``recipes`` holds each built-in dataset's default recipe (used when no model is named).
"""
