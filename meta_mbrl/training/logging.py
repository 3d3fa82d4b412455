"""CSV logging readable by pandas, optionally mirrored to TensorBoard."""

from __future__ import annotations

import csv
import os
from pathlib import Path

__all__ = ["CSVLogger"]


class CSVLogger:
    """Appends one row per call to ``path``; resuming at ``step`` drops rows logged after it.

    Columns are fixed by the first row written.
    """

    def __init__(self, path: str | os.PathLike, resume_step: int | None = None, tensorboard_dir: str | None = None):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.fields: list[str] | None = None
        if self.path.exists() and resume_step is not None:
            with open(self.path, newline="") as f:
                rows = list(csv.DictReader(f))
            keep = [r for r in rows if int(float(r["step"])) <= resume_step]
            self.fields = list(rows[0].keys()) if rows else None
            with open(self.path, "w", newline="") as f:
                if self.fields:
                    w = csv.DictWriter(f, self.fields)
                    w.writeheader()
                    w.writerows(keep)
        elif self.path.exists():
            self.path.unlink()
        self.tb = None
        if tensorboard_dir:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError as e:  # pragma: no cover - depends on optional extra
                raise ImportError("tensorboard: install the 'tensorboard' extra (pip install -e '.[tensorboard]')") from e
            self.tb = SummaryWriter(tensorboard_dir)

    def log(self, row: dict) -> None:
        new = self.fields is None
        if new:
            self.fields = list(row)
        with open(self.path, "a", newline="") as f:
            w = csv.DictWriter(f, self.fields, extrasaction="ignore")
            if new:
                w.writeheader()
            w.writerow(row)
        if self.tb is not None:
            for k, v in row.items():
                if k != "step" and isinstance(v, (int, float)):
                    self.tb.add_scalar(k, v, row["step"])

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()
