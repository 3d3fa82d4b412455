"""Fuzzing at scale: the properties of ``tests/test_fuzz.py`` at 10,000+ Hypothesis examples per entry point.

The same strategies and properties as the CI test (which runs ~1,000 examples per entry point): ``adapt``
(MAML, Reptile, CaDM, PEARL, MultiTask, FineTune, and MAML x2 ensembles of deterministic and of Gaussian
members), ``predict`` (one task, a batch of tasks, the ensembles' ``predict`` / ``predict_members``),
``imagine`` and ``plan`` (CEM, MPPI, random shooting) on tiny models. Each example's outcome is counted:

- ``ok``: a correct result (right shape, finite values);
- ``ValueError`` / ``TypeError``: rejected, with a message that names an argument that was wrong;
- ``other``: any other exception (a bug: the input reached code that does not check it);
- ``violation``: the property failed (a wrong result, a non-finite output without an error, an error naming
  the wrong argument, a valid input rejected, a mutated prior); the first few are printed.

Examples are deterministic (``derandomize=True``) unless ``--seed`` is given. Writes
``benchmarks/results/fuzz.csv`` (one row per entry point).

    python benchmarks/bench_fuzz.py [--examples 10000] [--entry-points adapt predict imagine plan] [--seed S]
"""

from __future__ import annotations

import argparse
import collections
import os
import sys
import time
from pathlib import Path

import pandas as pd
import torch
from _common import report
from hypothesis import given, seed, settings

os.environ.setdefault("META_MBRL_FUZZ_PROFILE", "bench")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import test_fuzz  # noqa: E402 -- the tests directory is on the path only now

OUTCOMES = ("ok", "ValueError", "TypeError", "other", "violation")


def run(entry: str, examples: int, rng_seed: int | None) -> tuple[dict, list[str], float]:
    """Runs one entry point's property on ``examples`` examples; returns counts, violations and seconds."""
    strategy, prop = test_fuzz.ENTRY_POINTS[entry]
    counts: collections.Counter = collections.Counter()
    violations: list[str] = []

    def body(case) -> None:
        try:
            counts[prop(case)] += 1
        except AssertionError as e:
            cause = e.__context__
            if cause is not None and not isinstance(cause, (ValueError, TypeError, AssertionError)):
                counts["other"] += 1
                violations.append(f"{type(cause).__name__}: {cause}")
            else:
                counts["violation"] += 1
                violations.append(str(e))

    profile = settings(settings.get_profile("meta_mbrl_fuzz_bench"), max_examples=examples,
                       derandomize=rng_seed is None)
    test = profile(given(strategy())(body))
    if rng_seed is not None:
        test = seed(rng_seed)(test)
    t0 = time.perf_counter()
    test()
    return dict(counts), violations, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--examples", type=int, default=10_000, help="Hypothesis examples per entry point")
    ap.add_argument("--entry-points", nargs="+", default=list(test_fuzz.ENTRY_POINTS), choices=list(test_fuzz.ENTRY_POINTS))
    ap.add_argument("--seed", type=int, default=None, help="random (not derandomized) examples from this seed")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    for entry in args.entry_points:
        counts, violations, secs = run(entry, args.examples, args.seed)
        total = sum(counts.values())
        rows.append({"entry_point": entry, "examples": total, **{k: counts.get(k, 0) for k in OUTCOMES},
                     "ok_frac": counts.get("ok", 0) / max(total, 1), "seconds": secs, "ms_per_example": 1e3 * secs / max(total, 1)})
        for v in violations[:5]:
            print(f"[{entry}] {v}", file=sys.stderr)
    how = "derandomized" if args.seed is None else f"seed {args.seed}"
    report(pd.DataFrame(rows), "fuzz", f"Fuzzing outcomes per entry point ({args.examples} Hypothesis examples each, {how})")


if __name__ == "__main__":
    main()
