"""The few-shot model benchmark of a trained run, written to benchmarks/results/kshot_<run>.csv.

Same as ``meta-mbrl bench kshot --checkpoint RUN --out FILE.csv`` (every ``bench kshot`` flag works here).

    python benchmarks/bench_kshot.py --checkpoint runs/ml10-quick-seed0 [--kshot-ks 8 32]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from _common import RESULTS

from meta_mbrl.cli import main as cli


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", required=True, help="run directory or checkpoint file")
    ap.add_argument("--out", default=None, help="CSV path (default: benchmarks/results/kshot_<run>.csv)")
    args, rest = ap.parse_known_args()
    run = Path(args.checkpoint)
    out = Path(args.out) if args.out else RESULTS / f"kshot_{(run if run.is_dir() else run.parent).name}.csv"
    return cli(["bench", "kshot", "--checkpoint", str(run), "--out", str(out), *rest])


if __name__ == "__main__":
    sys.exit(main())
