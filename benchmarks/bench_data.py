"""The data-source table of a suite, written to benchmarks/results/data_<suite>.csv.

Same as ``meta-mbrl bench data --out FILE.csv`` (every ``bench data`` flag works here): per training class
and data source, the fraction of transitions that move an object, the coverage of object 1's positions,
env steps and env steps per second.

    python benchmarks/bench_data.py --suite ml1:push-v3 --tasks-per-class 10 [--sources colored-noise ou demo]
"""

from __future__ import annotations

import argparse
import sys

from _common import RESULTS

from meta_mbrl.cli import main as cli


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--suite", default="ml10", help="task suite (default: ml10)")
    ap.add_argument("--out", default=None, help="CSV path (default: benchmarks/results/data_<suite>.csv)")
    args, rest = ap.parse_known_args()
    out = args.out or RESULTS / f"data_{args.suite.replace(':', '_').replace('|', '_').replace(',', '_')}.csv"
    return cli(["bench", "data", "--suite", args.suite, "--out", str(out), *rest])


if __name__ == "__main__":
    sys.exit(main())
