"""Where studies live: Optuna's RDB storage, on SQLite by default or any SQLAlchemy URL.

Default: ``<runs>/_studies/optuna.db`` (SQLite). Several processes on one machine share it
safely: SQLite serializes writers, and we give each connection a 60 s busy timeout so a
writer waits for the lock instead of failing with "database is locked" (Optuna's default 5 s
is too short when K workers heartbeat and write trials at once), and switch the file to WAL
so readers never block writers. Optuna itself retries trial creation on lock timeouts.
For several machines, use a server (``--storage postgresql://user:pass@host/db``): SQLite
over a network file system is not safe.

We use the RDB storage (not the journal file) because its heartbeat is what turns a trial of
a worker killed with ``kill -9`` into a failed trial while the others go on.
"""
from __future__ import annotations

import sqlite3
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cnnkit.config import runs_root
from cnnkit.errors import CnnkitError

STUDIES_DIR = "_studies"
SQLITE_TIMEOUT_S = 60
CONNECT_TIMEOUT_S = 10


def default_url(runs_dir: str | None) -> str:
    path = (runs_root(runs_dir) / STUDIES_DIR / "optuna.db").resolve()
    return f"sqlite:///{path}"


def study_folder(runs_dir: str | None, study: str) -> Path:
    """Where a study's files on this machine go (its plots); its trials are runs ``STUDY-tN``."""
    return runs_root(runs_dir) / STUDIES_DIR / study


def redact(url: str) -> str:
    """The URL with its password hidden, for messages and records."""
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - an unparsable URL is shown without its credentials part
        return url.split("@")[-1] if "@" in url else url


def _sqlite_path(url: str) -> Path | None:
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return Path(parsed.database)


def _engine_kwargs(url: str) -> dict[str, Any]:
    from sqlalchemy.engine import make_url

    backend = make_url(url).get_backend_name()
    if backend == "sqlite":
        return {"connect_args": {"timeout": SQLITE_TIMEOUT_S}}
    if backend == "postgresql" and make_url(url).get_driver_name() in ("psycopg", "psycopg2"):
        # An unreachable host should fail in seconds, not after the OS's TCP timeout.
        return {"connect_args": {"connect_timeout": CONNECT_TIMEOUT_S}, "pool_pre_ping": True}
    return {"pool_pre_ping": True}


def _prepare_sqlite(path: Path, create: bool) -> None:
    if not path.is_file():
        if not create:
            raise CnnkitError(f"no study storage at {path} (no study has been run with these runs)")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise CnnkitError(f"cannot create the study storage folder {path.parent}: {exc.strerror}") from None
    try:
        with sqlite3.connect(path, timeout=SQLITE_TIMEOUT_S) as con:
            con.execute("PRAGMA journal_mode=WAL")  # persistent: set once per file
        con.close()
    except sqlite3.Error as exc:
        raise CnnkitError(f"cannot open the study storage {path}: {exc}") from None


def _reason(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None)
    if orig is None and isinstance(exc, ImportError) and exc.__cause__ is not None:
        orig = f"its Python driver is missing ({exc.__cause__}; PostgreSQL's comes with cnnkit[tune])"
    text = str(orig if orig is not None else exc).strip()
    return (text.splitlines() or [type(exc).__name__])[0]


def open_storage(url: str, heartbeat: int | None = None, on_stale: Callable[..., None] | None = None,
                 create: bool = True) -> Any:
    """An ``optuna.storages.RDBStorage``; every way the URL can be unusable is one CnnkitError line.

    ``heartbeat`` (seconds) makes running trials send a heartbeat; a trial silent for three
    intervals is failed by the next worker that starts a trial, and ``on_stale`` is called.
    """
    import optuna
    import sqlalchemy.exc as sa_exc

    sqlite_path = _sqlite_path_or_error(url)
    if sqlite_path is not None:
        _prepare_sqlite(sqlite_path, create)
    kwargs: dict[str, Any] = {"engine_kwargs": _engine_kwargs(url)}
    if heartbeat:
        kwargs.update(heartbeat_interval=heartbeat, grace_period=3 * heartbeat, heartbeat_stale_trial_callback=on_stale)
    for attempt in range(3):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # the heartbeat's flag
                return optuna.storages.RDBStorage(url, **kwargs)
        except (sa_exc.IntegrityError, sa_exc.ProgrammingError, sa_exc.OperationalError, sa_exc.InterfaceError) as exc:
            # Two processes creating the tables of a new database at once: the loser retries.
            racing = not isinstance(exc, (sa_exc.OperationalError, sa_exc.InterfaceError)) or "deadlock" in str(exc)
            if not racing:
                raise CnnkitError(f"cannot reach the study storage {redact(url)}: {_reason(exc)}") from None
            if attempt == 2:
                raise CnnkitError(f"cannot set up the study storage {redact(url)}: {_reason(exc)}") from None
            time.sleep(0.5 + attempt)
        except (sa_exc.ArgumentError, sa_exc.NoSuchModuleError, ImportError, ValueError) as exc:
            raise CnnkitError(f"unusable study storage URL {redact(url)}: {_reason(exc)}") from None
        except optuna.exceptions.StorageInternalError as exc:
            raise CnnkitError(f"cannot use the study storage {redact(url)}: {_reason(exc.__cause__ or exc)}") from None
    raise AssertionError("unreachable")


def _sqlite_path_or_error(url: str) -> Path | None:
    import sqlalchemy.exc as sa_exc

    try:
        return _sqlite_path(url)
    except (sa_exc.ArgumentError, ValueError) as exc:
        raise CnnkitError(f"unusable study storage URL {redact(url)}: {_reason(exc)} "
                          "(expected e.g. sqlite:///path/optuna.db or postgresql://user:pass@host:5432/db)") from None
