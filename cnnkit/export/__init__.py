"""A run leaves cnnkit: checked exports (``onnx``)."""
