"""Every learner on the same data, seed, evaluation windows, oracles and planner, in one table.

Thin wrapper over ``meta-mbrl bench learners`` (every flag of it works here, each learner family's own
settings included: ``--maml-inner-lr``, ``--cadm-context-dim``, ...) that writes
``benchmarks/results/learners_<suite><suffix>.csv`` (one row per learner) and ``.kshot.csv`` (the tidy
few-shot rows).

    python benchmarks/bench_learners.py --suite point-mass --preset quick --kshot-ks 8 16 24 --kshot-eval-length 16
    python benchmarks/bench_learners.py --suite ml10 --preset quick --steps 2000
    python benchmarks/bench_learners.py --suite ml1:reach-v3 --preset quick --tasks-per-class 50 --control-meta-batch-size 10
    python benchmarks/bench_learners.py --suite point-mass --ensemble 5 --out-suffix _e5 [--learners maml cadm]
"""

from __future__ import annotations

import argparse
import sys

from _common import RESULTS

from meta_mbrl.cli import main as cli


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0], add_help=False)
    ap.add_argument("--suite", default="point-mass")
    ap.add_argument("--out-suffix", default="", help="appended to the CSV name, e.g. _e5")
    args, rest = ap.parse_known_args()
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"learners_{args.suite.replace(':', '_')}{args.out_suffix}.csv"
    return cli(["bench", "learners", "--suite", args.suite, "--out", str(out), "--no-progress", *rest])


if __name__ == "__main__":
    sys.exit(main())
