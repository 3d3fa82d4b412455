"""The few-shot model benchmark of a trained run, written to benchmarks/results/kshot_<run>.csv.

Same as ``meta-mbrl bench kshot --checkpoint RUN --out FILE.csv``.

    python benchmarks/bench_kshot.py --checkpoint runs/ml10-quick-seed0
"""

from __future__ import annotations

import argparse
from pathlib import Path

from _common import RESULTS

from meta_mbrl.experiment import kshot_run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", required=True, help="run directory or checkpoint file")
    ap.add_argument("--out", default=None, help="CSV path (default: benchmarks/results/kshot_<run>.csv)")
    args = ap.parse_args()
    run = Path(args.checkpoint)
    out = Path(args.out) if args.out else RESULTS / f"kshot_{(run if run.is_dir() else run.parent).name}.csv"
    kshot_run(run, out)


if __name__ == "__main__":
    main()
