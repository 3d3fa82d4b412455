"""Executes the tutorials in place and stores their outputs, stamped with the hash of their code.

    python notebooks/execute.py                      # every notebook at its documented budget ("doc")
    python notebooks/execute.py 01_quickstart        # one of them
    python notebooks/execute.py --budget ci --out /tmp/nb   # the CI budget, into another folder

Each notebook reads its budget from ``META_MBRL_NB_BUDGET`` ("doc" or "ci") in its parameter cell. The
stored notebook's metadata ``meta_mbrl`` records the budget, the sha256 of its code cells and the wall
time (each notebook sets its own torch thread count); ``tests/test_notebooks.py`` checks that the stored code is the code that ran.
"""

from __future__ import annotations

import argparse
import ctypes.util
import hashlib
import os
import sys
import tempfile
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

HERE = Path(__file__).resolve().parent
BUDGETS = ("doc", "ci")


def notebooks(names=None) -> list[Path]:
    """The tutorials (``NN_name.ipynb``), or those whose stem starts with one of ``names``."""
    found = sorted(HERE.glob("[0-9][0-9]_*.ipynb"))
    if names:
        found = [p for p in found if any(p.stem.startswith(n) for n in names)]
    return found


def code_hash(nb) -> str:
    """sha256 of the notebook's code cells, in order (what must equal the code that produced the outputs)."""
    h = hashlib.sha256()
    for cell in nb.cells:
        if cell.cell_type == "code":
            h.update(cell.source.encode() + b"\0")
    return h.hexdigest()


def execute(path: Path, budget: str, out: Path | None = None, timeout: int = 900) -> tuple[Path, float]:
    """Runs ``path`` top to bottom with ``META_MBRL_NB_BUDGET=budget`` in a scratch folder; writes it to ``out``.

    Raises:
        nbclient.exceptions.CellExecutionError: a cell raised (the message names the cell).
    """
    if budget not in BUDGETS:
        raise ValueError(f"budget: expected one of {BUDGETS}, got {budget!r}")
    nb = nbformat.read(path, as_version=4)
    env_before = os.environ.get("META_MBRL_NB_BUDGET")
    os.environ["META_MBRL_NB_BUDGET"] = budget
    if "MUJOCO_GL" not in os.environ and ctypes.util.find_library("EGL"):  # offscreen MuJoCo frames on a CPU machine
        os.environ["MUJOCO_GL"] = "egl"
    t0 = time.perf_counter()
    try:
        with tempfile.TemporaryDirectory() as scratch:
            NotebookClient(nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": scratch}}).execute()
    finally:
        if env_before is None:
            os.environ.pop("META_MBRL_NB_BUDGET", None)
        else:
            os.environ["META_MBRL_NB_BUDGET"] = env_before
    seconds = time.perf_counter() - t0
    nb.metadata["meta_mbrl"] = {"budget": budget, "code_sha256": code_hash(nb), "seconds": round(seconds, 1)}
    target = out / path.name if out is not None else path
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(".ipynb.tmp")
    nbformat.write(nb, tmp)
    os.replace(tmp, target)
    return target, seconds


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("names", nargs="*", help="notebook name prefixes (default: all)")
    ap.add_argument("--budget", default="doc", choices=BUDGETS)
    ap.add_argument("--out", type=Path, default=None, help="write executed notebooks here (default: in place)")
    args = ap.parse_args()
    paths = notebooks(args.names)
    if not paths:
        print(f"execute: no notebook matches {args.names}", file=sys.stderr)
        return 2
    for p in paths:
        target, seconds = execute(p, args.budget, args.out)
        size = target.stat().st_size / 1e6
        print(f"{p.name}: {seconds:.1f} s at budget {args.budget!r}, {size:.2f} MB -> {target}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
