"""``--target docker``: a build context for the repository's multi-stage Dockerfile with the run baked in.

The context is the Dockerfile, ``pyproject.toml`` and the ``cnnkit`` sources of this checkout
(the image runs ``cnnkit serve``, with PyTorch, exactly as the repository's own image does) and
the run under ``docker/runs/NAME/vN`` (the Dockerfile's default ``RUNS_DIR``), its checked ONNX
export included so ``--backend onnx`` needs no test data in the container. The build's smoke
stage starts the server on the baked-in run and calls ``/predict``: the build fails if it does
not answer. The kserve and k8s targets put this same context in their ``image/`` folder.
"""
from __future__ import annotations

import re
import shutil
from pathlib import Path

from cnnkit.errors import CnnkitError
from cnnkit.export.deploy.bundle import Bundle, _cnnkit_root, copy_run, readme

CONTEXT_FILES = ("Dockerfile", "pyproject.toml", "docker/smoke.py")
DOCKERIGNORE = "**/__pycache__\n**/*.pyc\n.git\n.venv\n"
# How the image is built where the Docker Hub and the PyTorch index are reachable; the sandbox
# recipe (a local base image, the torch wheel from disk) is in the README's "Build here" notes.
BUILD = "podman build -t {image} {context}   # or: docker build -t {image} {context}"
SERVE_PORT = 8000


def source_root() -> Path:
    """The checkout this cnnkit runs from; the image is built from its Dockerfile and sources."""
    root = _cnnkit_root()
    missing = [f for f in CONTEXT_FILES if not (root / f).is_file()]
    if missing:
        raise CnnkitError(f"the docker, kserve and k8s targets build from a cnnkit source checkout, and {root} lacks "
                          f"{', '.join(missing)}; run cnnkit deploy from a clone of the repository")
    return root


def check_context(context: Path) -> int:
    """Every source the Dockerfile COPYs from the context exists there (ARG defaults substituted)."""
    text = (context / "Dockerfile").read_text()
    args = dict(re.findall(r"^ARG (\w+)=(\S+)", text, flags=re.M))
    copies = re.findall(r"^COPY (?!--from)(?:--\S+ )*(.+) \S+$", text, flags=re.M)
    sources = [re.sub(r"\$\{(\w+)\}", lambda m: args.get(m.group(1), m.group(0)), src) for line in copies for src in line.split()]
    missing = [src for src in sources if not (context / src).exists()]
    if missing or not sources:
        raise CnnkitError(f"the docker build context lacks what its Dockerfile copies: {', '.join(missing) or 'COPY lines'}")
    return len(sources)


def check_baked_export(b: Bundle, run_dir: Path) -> None:
    """The baked-in run's export must be the one ``cnnkit serve --backend onnx`` reuses (no data needed)."""
    from cnnkit.export.report import cached
    from cnnkit.runs import load

    if cached(load(str(run_dir)), "onnx", run_dir / "export" / "model.onnx") is None:
        raise CnnkitError("the baked-in run's ONNX export would not be reused by cnnkit serve --backend onnx")


def serve_args(b: Bundle, port: int = SERVE_PORT) -> list[str]:
    return ["cnnkit", "serve", "--host", "0.0.0.0", "--port", str(port), b.ref]


def write_context(b: Bundle, dest: str = "") -> str:
    """Write the build context under ``dest`` ('' = the bundle root); returns its relative path."""
    root = source_root()
    prefix = f"{dest}/" if dest else ""
    for rel in CONTEXT_FILES:
        shutil.copy2(root / rel, b.path(prefix + rel))
    shutil.copytree(root / "cnnkit", b.path(prefix + "cnnkit"), ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
                    dirs_exist_ok=True)
    # The final stage serves the baked-in run unless `docker run IMAGE OTHER-RUN` says otherwise.
    dockerfile = b.path(prefix + "Dockerfile")
    dockerfile.write_text(dockerfile.read_text().rstrip() + f'\n# cnnkit deploy: serve the baked-in run by default.\nCMD ["{b.ref}"]\n')
    b.text(prefix + ".dockerignore", DOCKERIGNORE)
    copy_run(b, f"{prefix}docker/runs/{b.name}/v{b.version}", with_onnx=True)
    check_baked_export(b, b.root / prefix / f"docker/runs/{b.name}/v{b.version}")
    # pyproject's readme: the bundle's README.md at the root (written last), a pointer in image/.
    b.text(prefix + "README.md", f"cnnkit build context for {b.ref}; see the bundle's README.md.\n")
    n = check_context(b.root / dest if dest else b.root)
    b.verified.append(f"the build context holds all {n} sources its Dockerfile copies (pyproject.toml, README.md, cnnkit/, "
                      f"docker/smoke.py, the run in docker/runs/{b.name}/v{b.version}/)")
    return dest or "."


def push_lines(b: Bundle, context: str, manifest: str) -> str:
    """Build, push and point the manifest at the pushed image (unless --image already named a registry)."""
    if "/" in b.image.split(":")[0]:
        return f"podman build -t {b.image} {context} && podman push {b.image}     # or docker build/push"
    return (f"podman build -t REGISTRY/{b.image} {context} && podman push REGISTRY/{b.image}     # or docker build/push\n"
            f"sed -i 's#image: {b.image}#image: REGISTRY/{b.image}#' {manifest}   # or deploy again with --image REGISTRY/{b.image}")


def podman_notes(context: str) -> str:
    return f"""Building without Docker Hub or the PyTorch index (as in cnnkit's own sandbox): make a local
base image with Debian's Python 3.11 (add your CA bundle to it if PyPI is reached through a
TLS-intercepting proxy) and give the build a CPU torch wheel from disk (here /opt/wheels):

```bash
mmdebstrap --variant=minbase --include=python3,python3-venv,ca-certificates bookworm base.tar
podman import base.tar localhost/cnnkit-base:py3.11-bookworm
podman build --isolation chroot --network host -v /opt/wheels:/opt/wheels:ro \\
  --build-arg PYTHON_IMAGE=localhost/cnnkit-base:py3.11-bookworm --build-arg TORCH_INDEX=https://pypi.org/simple \\
  --build-arg "TORCH_SPEC=/opt/wheels/torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl torchvision==0.28.0" \\
  -t IMAGE {context}
```"""


def write(b: Bundle) -> dict:
    write_context(b)
    image = b.image
    b.verified.append(f"the checked export is baked in (`docker/runs/{b.name}/v{b.version}/export/`) with its report, and "
                      "cnnkit's export cache accepts it for those weights, so `--backend onnx` needs no test data in the container")
    b.tested.append("`podman build` of such a context runs every stage, the smoke stage serving the baked-in run and "
                    "answering /predict (opt-in: CNNKIT_TEST_PODMAN=1, with the recipe below where Docker Hub is unreachable)")
    b.not_verified += [
        "this image's build: run the build command below; its smoke stage serves the baked-in run and calls /predict, "
        "and the build fails if that does not answer",
        "running the container (`docker run`) and pushing it to a registry: neither works in cnnkit's sandbox",
    ]
    commands = f"""```bash
{BUILD.format(image=image, context=".")}
docker run --rm -p {SERVE_PORT}:{SERVE_PORT} {image}              # serves {b.ref} on http://localhost:{SERVE_PORT}
curl -F file=@examples/00.png 'localhost:{SERVE_PORT}/predict?top_k=3'
docker tag {image} REGISTRY/{image} && docker push REGISTRY/{image}
```

{podman_notes(".")}"""
    contents = ["`Dockerfile`: cnnkit's multi-stage image (CPU PyTorch, non-root user, health check on /v2/health/ready, "
                f"a smoke stage that serves the run and calls /predict), serving `{b.ref}` by default",
                "`pyproject.toml`, `cnnkit/`: the sources of the cnnkit that wrote this bundle (installed in the image)",
                f"`docker/runs/{b.name}/v{b.version}/`: the run (weights, model.json with classes and preprocessing, "
                "config, metrics) and its checked ONNX export", "`docker/smoke.py`, `.dockerignore`"]
    readme(b, "docker", "The image runs `cnnkit serve` with PyTorch, exactly as cnnkit's own image does.", contents, commands,
           why="This bundle runs cnnkit itself (its server, PyTorch, the same code as `cnnkit serve` here), so it ships "
               "cnnkit's sources from this checkout and the image installs them; no package index needs to know cnnkit.")
    return {"image": image, "build": BUILD.format(image=image, context=str(b.root))}
