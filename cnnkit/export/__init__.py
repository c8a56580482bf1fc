"""A run leaves cnnkit: checked exports, the Hugging Face Hub folder, and the push.

- ``cnnkit.export.formats.export_run(run, format, quantize=None, out=None)``: onnx, onnx + int8, pt2 or
  hf; checked, reported in ``export/<format>.json``, reused while the weights are unchanged.
- ``cnnkit.export.hf.write_hub_folder(run, out_dir, include_onnx=False)``: the Hub folder alone.
- ``cnnkit.export.hub.push(run, repo_id)``: that folder uploaded in one commit (huggingface_hub).
- ``onnx`` / ``quantize`` / ``pt2``: the exporters and their checks; ``report``: reports and reuse.
"""
