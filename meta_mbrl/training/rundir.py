"""One process per run directory: ``RunDirLock``.

The lock is an ``fcntl.flock`` on ``RUN_DIR/run.lock``, which the kernel releases when the owning
process dies however it dies (SIGKILL included), so a lock left by a killed process is simply taken
over. The file also holds the owner's pid, host and start time, only to say who holds it. It is never
deleted (deleting a flock'ed file races with a process opening it); releasing empties it.

The lock is re-entrant within a process: ``train_run`` may hold it and call ``meta_train(run_dir=...)``,
which takes it again. When a process takes it, temporary files that killed atomic writes left in the
run directory are removed.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import socket
import threading
from collections.abc import Callable
from pathlib import Path

from meta_mbrl.errors import RunDirLockedError
from meta_mbrl.io import remove_stale_tmp_files

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no kernel lock, only the owner record
    fcntl = None

__all__ = ["RunDirLock", "LOCK_NAME"]

LOCK_NAME = "run.lock"

# resolved run dir -> [fd, refcount, pid of the holder]; guarded by _GUARD
_HELD: dict[str, list] = {}
_GUARD = threading.Lock()


def _read_owner(fd: int) -> dict:
    try:
        raw = os.pread(fd, 4096, 0)
        owner = json.loads(raw.decode()) if raw.strip() else {}
    except (OSError, ValueError):  # being written this instant, or garbage: say "unknown"
        return {}
    return owner if isinstance(owner, dict) else {}


def _describe(owner: dict) -> str:
    if not owner.get("pid"):
        return "another process (its pid is not recorded yet)"
    host = f" on {owner['host']}" if owner.get("host") and owner.get("host") != socket.gethostname() else ""
    return f"process {owner['pid']}{host} (started {owner.get('started', 'at an unknown time')})"


class RunDirLock:
    """Exclusive ownership of a run directory by one process, re-entrant within it.

    Args:
        run_dir: the run directory (created if missing).
        out: called with a one-line note when a stale lock of a dead process is taken over or leftover
            temporary files are removed (None: silent).

    Raises:
        RunDirLockedError: from ``acquire`` / ``with``, when another live process holds the directory.

    Example:
        >>> import tempfile
        >>> run = tempfile.mkdtemp()
        >>> with RunDirLock(run) as lock:
        ...     with RunDirLock(run):  # re-entrant in the same process
        ...         lock.held
        True
        >>> lock.held
        False
    """

    def __init__(self, run_dir: str | os.PathLike, out: Callable[[str], object] | None = None):
        self.run_dir = Path(run_dir)
        self.out = out
        self.held = False

    @property
    def path(self) -> Path:
        """The lock file, ``run_dir/run.lock``."""
        return self.run_dir / LOCK_NAME

    def acquire(self) -> RunDirLock:
        """Takes the lock (or one more reference to it, if this process holds it already)."""
        if self.held:
            return self
        self.run_dir.mkdir(parents=True, exist_ok=True)
        key = str(self.run_dir.resolve())
        with _GUARD:
            entry = _HELD.get(key)
            if entry is not None and entry[2] == os.getpid():
                entry[1] += 1
                self.held = True
                return self
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                if fcntl is not None:
                    try:
                        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    except BlockingIOError:
                        raise RunDirLockedError(
                            f"run_dir: {str(self.run_dir)!r} is in use by {_describe(_read_owner(fd))}; "
                            "wait for it or use another --run-dir"
                        ) from None
                previous = _read_owner(fd)
                me = {"pid": os.getpid(), "host": socket.gethostname(),
                      "started": _dt.datetime.now().astimezone().isoformat(timespec="seconds")}
                os.ftruncate(fd, 0)
                os.pwrite(fd, (json.dumps(me) + "\n").encode(), 0)
            except BaseException:
                os.close(fd)
                raise
            _HELD[key] = [fd, 1, os.getpid()]
            self.held = True
        if previous.get("pid") and self.out is not None:
            self.out(f"run_dir: took over the lock of {_describe(previous)}, which is no longer running")
        removed = remove_stale_tmp_files(self.run_dir)
        if removed and self.out is not None:
            self.out(f"run_dir: removed {len(removed)} temporary file(s) left by a killed write: "
                     + ", ".join(p.name for p in removed))
        return self

    def release(self) -> None:
        """Drops this reference; the last one empties the owner record and unlocks."""
        if not self.held:
            return
        self.held = False
        key = str(self.run_dir.resolve())
        with _GUARD:
            entry = _HELD.get(key)
            if entry is None or entry[2] != os.getpid():
                return
            entry[1] -= 1
            if entry[1] > 0:
                return
            del _HELD[key]
            fd = entry[0]
            try:
                os.ftruncate(fd, 0)
            except OSError:
                pass
            finally:
                os.close(fd)  # closing the only descriptor releases the flock

    def __enter__(self) -> RunDirLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()

    def __repr__(self) -> str:
        return f"RunDirLock({str(self.run_dir)!r}, held={self.held})"
