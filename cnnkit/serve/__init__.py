"""cnnkit's inference server: a JSON API, the KServe v2 protocol, a web page, metrics.

Modules, each with one job: ``settings`` (what the server is told), ``limits`` (size, pixel,
type and time limits on requests), ``batching`` (concurrent requests -> one forward pass),
``backends`` (a forward pass in PyTorch or ONNX Runtime), ``registry`` (the models being served
and swapping their versions), ``decoding`` (request bodies -> images -> model inputs),
``protocol_v2`` (KServe v2 / Triton encode and decode), ``metrics`` (Prometheus), ``schemas``
(the JSON shapes in the OpenAPI document), ``app`` (the routes), ``server`` (uvicorn, workers).
Nothing is imported here: ``cnnkit --help`` must not pay for FastAPI.
"""
