"""``cnnkit push RUN OWNER/REPO``: the run's Hub folder uploaded to the Hugging Face Hub in one commit.

``huggingface_hub`` does the talking (``create_repo`` then ``upload_folder``: preupload, LFS batch and
upload for the binaries, one commit), so ``HF_ENDPOINT``, ``HF_TOKEN``, the cached login and proxies
behave as in every other Hub tool. Refusals (a bad token, a missing namespace, no network) become
one CnnkitError line.
"""
from __future__ import annotations

import re
import tempfile
from pathlib import Path
from typing import Any

from cnnkit.errors import CnnkitError
from cnnkit.runs import LoadedRun, load

_REPO = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}/[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")


def check_repo_id(repo_id: str) -> str:
    if not _REPO.match(repo_id) or ".." in repo_id or repo_id.endswith((".git", ".")):
        raise CnnkitError(f"{repo_id!r} is not a Hub repository id: OWNER/REPO (letters, digits, '.', '_', '-')")
    return repo_id


def _hub() -> Any:
    try:
        import huggingface_hub
    except ImportError:
        raise CnnkitError('cnnkit push needs huggingface_hub: pip install "cnnkit[hub]"') from None
    return huggingface_hub


def _network_errors() -> tuple[type[BaseException], ...]:
    """What the HTTP client under huggingface_hub raises when the Hub cannot be reached (its versions
    have used requests, httpx and httpx2)."""
    import importlib

    found: list[type[BaseException]] = [OSError]
    for module, name in (("httpx", "HTTPError"), ("httpx2", "HTTPError"), ("requests", "RequestException")):
        try:
            found.append(getattr(importlib.import_module(module), name))
        except (ImportError, AttributeError):
            continue
    return tuple(found)


def _explain(exc: Exception, repo_id: str, endpoint: str) -> CnnkitError:
    """One line for what the Hub (or the network) said."""
    from huggingface_hub import errors

    code = getattr(getattr(exc, "response", None), "status_code", None)
    if code == 401 or isinstance(exc, errors.LocalTokenNotFoundError):
        return CnnkitError(f"the Hub at {endpoint} refused the token (401): pass --token, set HF_TOKEN or run `hf auth login`")
    if code == 403:
        return CnnkitError(f"the token may not write to {repo_id} on {endpoint} (403)")
    if code == 404 or isinstance(exc, errors.RepositoryNotFoundError):
        return CnnkitError(f"{repo_id} not found on {endpoint} (404): check the owner name and that the token can write there")
    if code is not None:
        return CnnkitError(f"the Hub at {endpoint} answered HTTP {code} while pushing {repo_id}")
    first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return CnnkitError(f"cannot reach the Hub at {endpoint} ({type(exc).__name__}: {first})")


def push(run: LoadedRun | str, repo_id: str, *, private: bool = False, revision: str | None = None,
         token: str | None = None, runs_dir: str | None = None, data_dir: str | None = None,
         include_onnx: bool = False) -> dict[str, Any]:
    """Write the Hub folder of ``run`` and upload it to ``repo_id`` in one commit; return what was sent.

    ``token``: default ``HF_TOKEN``, then the cached login (huggingface_hub's own order). The repo is
    created if needed (``private`` applies then); ``revision`` is a branch, created from main if new.
    """
    hf = _hub()
    from cnnkit.export.hf import folder_files, write_hub_folder

    check_repo_id(repo_id)
    loaded = run if isinstance(run, LoadedRun) else load(run, runs_dir)
    api = hf.HfApi(token=token or None)
    endpoint = api.endpoint
    with tempfile.TemporaryDirectory(prefix="cnnkit-push-") as tmp:
        folder = write_hub_folder(loaded, Path(tmp) / "hub", include_onnx, data_dir=data_dir, repo_id=repo_id)
        files = folder_files(folder)
        try:
            url = api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
            if revision:
                api.create_branch(repo_id, branch=revision, exist_ok=True)
            info = api.upload_folder(repo_id=repo_id, folder_path=folder, revision=revision,
                                     commit_message=f"cnnkit push {loaded.ref}",
                                     commit_description=f"Exported by cnnkit from run {loaded.ref}.")
        except (hf.errors.HfHubHTTPError, hf.errors.LocalTokenNotFoundError, *_network_errors()) as exc:
            raise _explain(exc, repo_id, endpoint) from None
    return {"run": loaded.ref, "repo": repo_id, "url": str(url), "revision": revision or "main",
            "commit": info.oid, "commit_url": info.commit_url, "endpoint": endpoint, "private": private,
            "files": files, "load": f"hf://{repo_id}" + (f"@{revision}" if revision else "")}
