"""Backing up the event log while the service runs: ``adwd backup`` as a function.

:func:`backup_log` copies ``<data_dir>/events.db`` with SQLite's online backup
(:meth:`EventStore.backup`), checks the copy and puts it in place atomically.
Only the event log is copied: ``views.db`` is derived from it and rebuilt
from it when the service starts (see docs/operations.md, "Restoring a backup").
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from adwd.events.errors import AdwdError
from adwd.events.store import EventStore
from adwd.service.app import EVENTS_FILE

_SIDE_FILES = ("-journal", "-wal", "-shm")  # SQLite's companions of a database file


class BackupError(AdwdError):
    """A backup was not made; the message says why and what to do."""


@dataclass(frozen=True)
class BackupReport:
    """What a backup copied, and the check of the copy."""

    source: str  # the event log copied
    path: str  # the copy
    events: int  # events in the copy
    last_seq: int  # the newest of them (0: the log was empty)
    bytes: int  # size of the copy
    integrity: str  # "ok", or what PRAGMA integrity_check found
    epoch: str  # the copy's epoch (new: see EventStore.backup)
    seconds: float  # how long it took


def backup_path(dest: Path, now: float | None = None) -> Path:
    """Where a backup to ``dest`` goes: ``dest`` itself, or, for an existing
    directory, ``events-<UTC time>.db`` inside it (e.g. ``events-20261126T012046Z.db``)."""
    if dest.is_dir():
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now))
        return dest / f"events-{stamp}.db"
    return dest


def backup_log(
    data_dir: Path | str, dest: Path | str, *, force: bool = False, pages: int = 1024
) -> BackupReport:
    """Copy the data directory's event log to ``dest`` (a file, or an existing directory).

    Reads the log read-only, so it is safe while the service runs. The copy is
    written to a temporary file beside its destination, checked with
    ``PRAGMA integrity_check``, synced and renamed into place, so ``dest`` is
    either absent or a complete, checked copy. An existing file is replaced only
    with ``force``. Raises :class:`BackupError` (or ``StoreError``) saying what
    to do when it cannot.
    """
    started = time.monotonic()
    source = Path(data_dir) / EVENTS_FILE
    if str(dest).endswith(os.sep) and not Path(dest).is_dir():
        # "backups/" names a directory: do not write a file called "backups" instead.
        raise BackupError(
            f"Directory {Path(dest).absolute()} does not exist: create it, or give another DEST."
        )
    target = backup_path(Path(dest).absolute())
    store = EventStore(source, readonly=True)  # a StoreError naming --data-dir if there is none
    tmp_name = ""
    try:
        _check_target(source, target, force=force)
        fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
        tmp = Path(tmp_name)
        try:
            os.fchmod(fd, source.stat().st_mode & 0o777)  # the log's permissions, not 0600
        finally:
            os.close(fd)
        events, last_seq = store.backup(tmp, pages=pages)
        integrity = _integrity(tmp)
        if integrity != "ok":
            raise BackupError(
                f"The copy of {source} failed PRAGMA integrity_check ({integrity}); "
                "nothing was written. Check the log itself with "
                f"`sqlite3 {source} 'PRAGMA integrity_check'`."
            )
        copy = EventStore(tmp, readonly=True)
        epoch = copy.epoch
        copy.close()
        _fsync(tmp)
        _publish(tmp, target, force=force)
    except OSError as exc:
        raise BackupError(f"Cannot write the backup {target}: {exc}.") from exc
    finally:
        store.close()
        if tmp_name:  # left behind only by a failure: a finished copy was renamed
            for name in (tmp_name, *(tmp_name + side for side in _SIDE_FILES)):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(name)
    return BackupReport(
        source=str(source),
        path=str(target),
        events=events,
        last_seq=last_seq,
        bytes=target.stat().st_size,
        integrity=integrity,
        epoch=epoch,
        seconds=time.monotonic() - started,
    )


def _check_target(source: Path, target: Path, *, force: bool) -> None:
    """Fail before copying anything when the copy could not be put in place."""
    if not target.parent.is_dir():
        raise BackupError(
            f"Directory {target.parent} does not exist: create it, or give another DEST."
        )
    if target.exists():
        if source.exists() and target.samefile(source):
            raise BackupError(f"{target} is the event log itself: give a DEST outside it.")
        if target.is_dir() or not force:
            raise BackupError(
                f"{target} already exists: give another DEST, or pass --force to replace it."
            )


def _integrity(path: Path) -> str:
    """``ok``, or the first problems ``PRAGMA integrity_check`` reports."""
    uri = f"{path.resolve().as_uri()}?mode=ro"
    conn = sqlite3.connect(uri, uri=True)
    try:
        rows = [str(row[0]) for row in conn.execute("PRAGMA integrity_check(10)")]
    except sqlite3.Error as exc:
        return str(exc)
    finally:
        conn.close()
    return "; ".join(rows)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _publish(tmp: Path, target: Path, *, force: bool) -> None:
    """Rename ``tmp`` to ``target`` atomically; without ``force`` never replace a file."""
    if force:
        os.replace(tmp, target)
    else:
        try:
            # A hard link fails if target exists: no window in which a file that
            # appeared since _check_target is replaced (os.replace would).
            os.link(tmp, target)
        except FileExistsError:
            raise BackupError(
                f"{target} already exists: give another DEST, or pass --force to replace it."
            ) from None
        except OSError:  # a file system without hard links
            if target.exists():
                raise BackupError(
                    f"{target} already exists: give another DEST, or pass --force to replace it."
                ) from None
            os.replace(tmp, target)
        else:
            tmp.unlink()
    # The rename is durable only once the directory is synced.
    dir_fd = os.open(target.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
