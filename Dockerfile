# syntax=docker/dockerfile:1
# cnnkit serve in a container: CPU-only PyTorch, non-root, health-checked, smoke-tested at build.
#
#   docker build -t cnnkit-serve .                                   # runs mounted at /runs
#   docker build -t cnnkit-serve --build-arg RUNS_DIR=runs .         # or baked in from ./runs
#   docker run -p 8000:8000 -v "$PWD/runs:/runs:ro" cnnkit-serve mnist-cnn
#
# Stages: "build" installs into a virtual environment; "runtime" is the slim image; "smoke"
# starts the server inside the build and calls /predict; "final" is runtime plus a marker copied
# from smoke, so the smoke test always runs (BuildKit skips stages nothing depends on).

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
# The CPU wheels of PyTorch (about 200 MB instead of several GB of CUDA libraries).
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
ARG TORCH_SPEC="torch torchvision"
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python3 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
RUN pip install --extra-index-url "${TORCH_INDEX}" ${TORCH_SPEC}
COPY pyproject.toml README.md /src/
COPY cnnkit /src/cnnkit
RUN pip install "/src[serve]" && python3 -c "import cnnkit.serve.app, onnxruntime, torch; print('torch', torch.__version__)"

FROM ${PYTHON_IMAGE} AS runtime
ARG RUNS_DIR=docker/runs
RUN useradd --create-home --uid 10001 --shell /usr/sbin/nologin cnnkit && mkdir -p /runs && chown cnnkit /runs
COPY --from=build /opt/venv /opt/venv
COPY --chown=cnnkit:cnnkit ${RUNS_DIR}/ /runs/
ENV PATH=/opt/venv/bin:$PATH CNNKIT_RUNS=/runs OMP_NUM_THREADS=1 PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
USER cnnkit
WORKDIR /home/cnnkit
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=3s --start-period=60s --retries=3 \
    CMD ["python3", "-c", "import urllib.request as u; u.urlopen('http://127.0.0.1:8000/v2/health/ready', timeout=2)"]
ENTRYPOINT ["cnnkit", "serve", "--host", "0.0.0.0", "--port", "8000"]
CMD ["mnist-cnn"]

FROM runtime AS smoke
COPY docker/smoke.py /tmp/smoke.py
RUN python3 /tmp/smoke.py && touch /tmp/smoke-passed

FROM runtime AS final
COPY --from=smoke /tmp/smoke-passed /tmp/smoke-passed
