"""Fetching the built-in datasets' official files: mirrors in turn, MD5-verified, written atomically.

Files already on disk are kept; an MD5 that differs from the official release is a warning, not an
error, since people hold repacked copies (their structure is checked by the readers).
"""
from __future__ import annotations

import tarfile
import tempfile
import urllib.error
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING

from cnnkit.errors import CnnkitError
from cnnkit.io import file_digest

if TYPE_CHECKING:
    from cnnkit.data.builtins import BuiltinSpec


def file_md5(path: Path) -> str:
    return file_digest(path, "md5")


def _download(url: str, dest: Path, md5: str, progress: bool) -> None:
    """Fetch ``url`` to ``dest`` through a temporary file, verify its MD5, then rename (atomic)."""
    from tqdm.auto import tqdm

    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=dest.parent, delete=False, suffix=".part") as tmp:
        try:
            with urllib.request.urlopen(url, timeout=30) as resp:
                total = int(resp.headers.get("Content-Length") or 0) or None
                with tqdm(total=total, unit="B", unit_scale=True, desc=dest.name, disable=not progress) as bar:
                    for chunk in iter(lambda: resp.read(1 << 16), b""):
                        tmp.write(chunk)
                        bar.update(len(chunk))
            tmp.close()
            if file_md5(Path(tmp.name)) != md5:
                raise CnnkitError(f"download of {url} has the wrong checksum (expected md5 {md5})")
            Path(tmp.name).replace(dest)
        finally:
            Path(tmp.name).unlink(missing_ok=True)


def _fetch_missing(spec: BuiltinSpec, root: Path, missing: list[str], progress: bool) -> None:
    errors = []
    for mirror in spec.mirrors:
        try:
            if spec.archive is not None:
                archive = root / spec.archive.name
                _download(mirror + spec.archive.name, archive, spec.archive.md5, progress)
                with tarfile.open(archive) as tar:
                    tar.extractall(root, filter="data")
                archive.unlink()
            else:
                for name in missing:
                    md5 = next(f.md5 for f in spec.files if f.name == name)
                    _download(mirror + name, root / spec.folder / name, md5, progress)
            return
        except (urllib.error.URLError, OSError, TimeoutError, tarfile.TarError) as exc:
            errors.append(f"{mirror}: {exc}")
    raise CnnkitError(
        f"{spec.name}: missing {', '.join(missing)} in {root / spec.folder} and the download failed "
        f"({errors[-1] if errors else 'no mirror'}); put the official files there or set --data-dir/CNNKIT_DATA"
    )


def ensure_files(spec: BuiltinSpec, root: Path, download: bool, progress: bool = True) -> list[str]:
    """Make sure the dataset's files are on disk; return warnings (e.g. non-official checksums)."""
    folder = root / spec.folder
    missing = [f.name for f in spec.files if not (folder / f.name).is_file()]
    if missing:
        if not download:
            raise CnnkitError(f"{spec.name}: missing {', '.join(missing)} in {folder} (downloads are off)")
        _fetch_missing(spec, root, missing, progress)
    differing = [f.name for f in spec.files if file_md5(folder / f.name) != f.md5]
    if differing:
        return [f"{spec.name}: {', '.join(differing)} differ from the official release's MD5 (a repacked copy?); "
                "structure checked, the data checksum is recorded with the run"]
    return []

