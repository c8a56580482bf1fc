"""Training in Keras 3 on TensorFlow (``cnnkit train --framework keras``), behind the ``keras`` extra.

``run.train_keras`` is the run-level flow (the same data, run folder and records as PyTorch's
``train_run``); ``loop.fit_keras`` the epochs; ``options`` what TrainConfig means in Keras.
"""
