"""Atomic file writes: write to a temporary file in the same folder, fsync, rename, fsync the folder.

A process killed mid-write leaves the old file intact and a ``.NAME.XXXXXXXX.tmp`` file beside it;
:func:`remove_stale_tmp_files` removes those (the run-directory lock calls it when it is taken).
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

__all__ = ["atomic_write", "atomic_path", "fsync_dir", "remove_stale_tmp_files"]

# ".NAME.<random>.tmp", as made by tempfile.mkstemp(prefix=".NAME.", suffix=".tmp") in atomic_path
_TMP_NAME = re.compile(r"^\..+\.[A-Za-z0-9_]+\.tmp$")


def fsync_dir(folder: str | os.PathLike) -> None:
    """Flushes a folder's entries (a rename or a new file in it) to disk; a no-op where the OS refuses.

    Example:
        >>> import tempfile
        >>> fsync_dir(tempfile.gettempdir())
    """
    flags = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0)
    try:
        fd = os.open(folder, flags)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some platforms / file systems cannot fsync a directory
        pass
    finally:
        os.close(fd)


@contextmanager
def atomic_path(path: str | os.PathLike):
    """Yields a temporary path; on success it replaces ``path`` atomically, on error it is removed.

    The data is fsynced before the rename and the folder after it, so after the block ``path`` holds
    the new content even across a power loss; a kill at any point leaves either the old or the new file.

    Example:
        >>> import tempfile
        >>> target = Path(tempfile.mkdtemp()) / "x.txt"
        >>> with atomic_path(target) as tmp:
        ...     _ = tmp.write_text("hello")
        >>> target.read_text()
        'hello'
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield Path(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)


def atomic_write(path: str | os.PathLike, write: Callable[[Path], None]) -> Path:
    """Calls ``write(tmp_path)`` then moves the result to ``path`` atomically.

    Example:
        >>> import tempfile
        >>> p = atomic_write(Path(tempfile.mkdtemp()) / "y.txt", lambda tmp: tmp.write_text("hi"))
        >>> p.read_text()
        'hi'
    """
    with atomic_path(path) as tmp:
        write(tmp)
    return Path(path)


def remove_stale_tmp_files(folder: str | os.PathLike) -> list[Path]:
    """Removes the temporary files that killed :func:`atomic_path` writes left in ``folder``.

    Only call it while no other process writes into ``folder`` (e.g. holding its run-directory lock).

    Returns:
        The paths removed.

    Example:
        >>> import tempfile
        >>> d = Path(tempfile.mkdtemp())
        >>> _ = (d / ".checkpoint.pt.k2j4x_a9.tmp").write_bytes(b"PK")
        >>> [p.name for p in remove_stale_tmp_files(d)], sorted(p.name for p in d.iterdir())
        (['.checkpoint.pt.k2j4x_a9.tmp'], [])
    """
    removed = []
    folder = Path(folder)
    if not folder.is_dir():
        return removed
    for p in sorted(folder.iterdir()):
        if _TMP_NAME.match(p.name) and p.is_file() and not p.is_symlink():
            try:
                p.unlink()
            except FileNotFoundError:
                continue
            removed.append(p)
    return removed
