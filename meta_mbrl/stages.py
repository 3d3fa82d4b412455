"""Stage reuse: a finished stage of a run (few-shot data and oracles, the few-shot table, control) is
recorded in ``RUN/stages.json`` under a key computed from the content of its inputs, and reused while
the key and its output file are unchanged.

Example:
    >>> import tempfile, pathlib
    >>> run = pathlib.Path(tempfile.mkdtemp())
    >>> cache, key = StageCache(run), content_key(seed=0, ks=[8, 32])
    >>> (run / "kshot.csv").write_text("k\\n8\\n") and cache.record("kshot", key)
    >>> cache.fresh("kshot", key, run / "kshot.csv"), cache.fresh("kshot", content_key(seed=1, ks=[8, 32]), run / "kshot.csv")
    (True, False)
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import torch

from meta_mbrl.io import atomic_path

__all__ = ["StageCache", "content_key"]


def _feed(h, obj) -> None:
    if isinstance(obj, torch.Tensor):
        t = obj.detach().cpu().contiguous()
        h.update(f"tensor:{t.dtype}:{tuple(t.shape)}:".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")  # 0-dim: reshape first
    elif isinstance(obj, np.ndarray):
        a = np.ascontiguousarray(obj)
        h.update(f"array:{a.dtype}:{a.shape}:".encode())
        h.update(a.tobytes())
    elif isinstance(obj, dict):
        h.update(b"{")
        for k in sorted(obj, key=str):
            h.update(json.dumps(str(k)).encode() + b":")
            _feed(h, obj[k])
        h.update(b"}")
    elif isinstance(obj, (list, tuple)):
        h.update(b"[")
        for x in obj:
            _feed(h, x)
            h.update(b",")
        h.update(b"]")
    else:
        h.update(json.dumps(obj, sort_keys=True).encode())


def content_key(**inputs) -> str:
    """A sha256 over the inputs' content: JSON-able values, tensors and arrays (dtype, shape and bytes)."""
    h = hashlib.sha256()
    _feed(h, inputs)
    return h.hexdigest()


class StageCache:
    """The content keys of a run directory's finished stages (``stages.json``)."""

    def __init__(self, run_dir: str | os.PathLike):
        self.path = Path(run_dir) / "stages.json"

    def _read(self) -> dict:
        if not self.path.exists():
            return {}
        try:
            doc = json.loads(self.path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            return {}  # an unreadable record only costs a recomputation
        return doc if isinstance(doc, dict) else {}

    def fresh(self, stage: str, key: str, output: str | os.PathLike) -> bool:
        """True if ``stage`` finished with inputs of this ``key`` and its ``output`` still exists."""
        return self._read().get(stage) == key and Path(output).exists()

    def record(self, stage: str, key: str) -> None:
        """Records that ``stage`` finished with inputs of this ``key`` (atomically)."""
        doc = self._read()
        doc[stage] = key
        with atomic_path(self.path) as tmp:
            tmp.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")
