"""The project's error types: each is a ``ValueError`` (or ``FloatingPointError``) so callers that
catch those keep working, and the CLI prints any of them in one line with exit code 2.

Example:
    >>> issubclass(FileFormatError, ValueError), issubclass(DivergenceError, FloatingPointError)
    (True, True)
"""

from __future__ import annotations

__all__ = ["FileFormatError", "DivergenceError", "RunDirLockedError", "CollectionError", "DistributedError"]


class FileFormatError(ValueError):
    """A file (checkpoint, buffer, config, log) could not be read or failed validation.

    The message names the file and what is wrong with it.
    """


class DivergenceError(FloatingPointError):
    """Training produced a non-finite loss, gradient norm or parameter; names which, and the step."""


class RunDirLockedError(ValueError):
    """Another live process owns the run directory."""


class DistributedError(ValueError):
    """Data-parallel training cannot start or go on: torchrun's environment variables are missing, a
    backend is unavailable, or rank 0 failed and the other ranks stop with its message."""


class CollectionError(RuntimeError):
    """Data collection failed partway (e.g. a dead worker); ``.buffer`` holds what was collected before.

    Attributes:
        buffer: the TaskBuffer with every finished trajectory, ``env_steps`` counting every step taken.
    """

    def __init__(self, message: str, buffer=None):
        super().__init__(message)
        self.buffer = buffer
