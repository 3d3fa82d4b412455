"""Append-only CSV logs readable by pandas (:func:`read_log`), optionally mirrored to TensorBoard.

A log file is only ever appended to, one ``write`` call per row, so a process killed at any moment
loses at most the row it was writing. A resumed run appends the rows after its checkpoint again:
rows the killed process logged after that checkpoint stay in the file, and :func:`read_log` keeps
the last row of each step.
"""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path

import pandas as pd

from meta_mbrl.errors import FileFormatError

__all__ = ["CSVLogger", "read_log"]


def _complete_lines_end(path: Path) -> tuple[int, int]:
    """``(size, end)``: the file size and the offset just past its last newline (0 if none)."""
    size = path.stat().st_size
    if size == 0:
        return 0, 0
    with open(path, "rb") as f:
        pos = size
        while pos > 0:
            chunk = min(65536, pos)
            f.seek(pos - chunk)
            data = f.read(chunk)
            i = data.rfind(b"\n")
            if i >= 0:
                return size, pos - chunk + i + 1
            pos -= chunk
    return size, 0


def _header(path: Path) -> list[str] | None:
    with open(path, newline="", encoding="utf-8") as f:
        first = f.readline()
    if not first.endswith("\n"):
        return None
    return next(csv.reader([first]))


def read_log(path: str | os.PathLike) -> pd.DataFrame:
    """Reads a training log: one row per step (the last one logged for it), sorted by step.

    A last line cut off by a killed writer is ignored.

    Raises:
        FileFormatError: the file is missing, or is not a CSV log with a ``step`` column.

    Example:
        >>> import tempfile
        >>> p = Path(tempfile.mkdtemp()) / "log.csv"
        >>> _ = p.write_text("step,loss\\n1,0.5\\n2,0.4\\n2,0.3\\n3,0.2")  # step 2 logged twice, the last row cut off
        >>> read_log(p).values.tolist()
        [[1.0, 0.5], [2.0, 0.3]]
    """
    path = Path(path)
    if not path.is_file():
        raise FileFormatError(f"log: no log file at {str(path)!r}")
    data = path.read_bytes()
    end = data.rfind(b"\n") + 1
    text = data[:end].decode("utf-8", errors="replace")
    if not text.strip():
        return pd.DataFrame()
    try:
        df = pd.read_csv(io.StringIO(text))
    except (ValueError, pd.errors.ParserError) as e:
        raise FileFormatError(f"log: {str(path)!r} is not a readable CSV log ({str(e).strip().splitlines()[0]})") from None
    if "step" not in df.columns:
        raise FileFormatError(f"log: expected a 'step' column in {str(path)!r}, got columns {list(df.columns)}")
    return df.drop_duplicates("step", keep="last").sort_values("step", kind="stable").reset_index(drop=True)


class CSVLogger:
    """Appends one CSV row per :meth:`log` call to ``path``; never rewrites the file.

    Args:
        path: the CSV file.
        resume_step: None starts a new log (an existing file is replaced by an empty one); a step
            number resumes: rows are appended after the existing ones (rows past ``resume_step`` stay,
            :func:`read_log` keeps the last row of each step).
        tensorboard_dir: also mirror numeric columns to TensorBoard there.

    Columns are fixed by the header on disk, or by the first row written. A last line cut off by a
    killed writer is dropped when the log is opened (only those bytes after the last newline).

    Raises:
        FileFormatError: from :meth:`log`, when a row's columns differ from the header on disk.

    Example:
        >>> import tempfile
        >>> p = Path(tempfile.mkdtemp()) / "log.csv"
        >>> log = CSVLogger(p)
        >>> log.log({"step": 1, "loss": 0.5}); log.log({"step": 2, "loss": 0.25}); log.close()
        >>> again = CSVLogger(p, resume_step=1)  # a resumed run appends (step 2 again)
        >>> again.log({"step": 2, "loss": 0.125}); again.close()
        >>> read_log(p).loss.tolist()
        [0.5, 0.125]
    """

    def __init__(self, path: str | os.PathLike, resume_step: int | None = None, tensorboard_dir: str | None = None):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.fields: list[str] | None = None
        if resume_step is None:
            if self.path.exists():
                self.path.unlink()  # a new run: the old log belonged to training that is being restarted
        elif self.path.exists():
            size, end = _complete_lines_end(self.path)
            if end < size:  # a row cut off by a killed writer: drop its bytes, keep every complete row
                os.truncate(self.path, end)
            self.fields = _header(self.path) if end > 0 else None
        self.tb = None
        if tensorboard_dir:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError as e:  # pragma: no cover - depends on optional extra
                raise ImportError("tensorboard: install the 'tensorboard' extra (pip install -e '.[tensorboard]')") from e
            self.tb = SummaryWriter(tensorboard_dir)

    def log(self, row: dict) -> None:
        """Appends ``row`` (a header first if the file is new) with one ``write`` call."""
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        if self.fields is None:
            self.fields = [str(k) for k in row]
            w.writerow(self.fields)
        elif [str(k) for k in row] != self.fields:
            raise FileFormatError(
                f"log: {str(self.path)!r} has columns {self.fields}, got a row with columns {list(row)}; "
                "log to a new file or resume with the same settings"
            )
        w.writerow([row[k] for k in row])
        data = buf.getvalue().encode("utf-8")
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            while data:
                data = data[os.write(fd, data):]
        finally:
            os.close(fd)
        if self.tb is not None:
            for k, v in row.items():
                if k != "step" and isinstance(v, (int, float)):
                    self.tb.add_scalar(k, v, row["step"])

    def close(self) -> None:
        """Closes the TensorBoard writer (the CSV file is not held open)."""
        if self.tb is not None:
            self.tb.close()
            self.tb = None
