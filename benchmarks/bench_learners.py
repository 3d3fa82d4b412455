"""Every learner on the same data, seed, evaluation windows, oracles and planner, in one table.

Thin wrapper over ``meta-mbrl bench learners`` that writes ``benchmarks/results/learners_<suite>.csv``
(one row per learner) and ``learners_<suite>.kshot.csv`` (the tidy few-shot rows).

    python benchmarks/bench_learners.py --suite point-mass --preset quick --ks 8 16 24 --eval-length 16 [--learners maml cadm]
    python benchmarks/bench_learners.py --suite ml10 --preset quick --steps 2000
    python benchmarks/bench_learners.py --suite ml1:reach-v3 --preset quick --tasks-per-class 50 --control-meta-batch-size 10
    python benchmarks/bench_learners.py --suite point-mass --ensemble 5 [--out-suffix _e5]
"""

from __future__ import annotations

import argparse

from _common import RESULTS

from meta_mbrl.config import PRESETS, make_config
from meta_mbrl.experiment import learners_run
from meta_mbrl.meta import LEARNER_NAMES


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--suite", default="point-mass")
    p.add_argument("--preset", default="quick", choices=sorted(PRESETS))
    p.add_argument("--learners", nargs="+", default=list(LEARNER_NAMES))
    p.add_argument("--steps", type=int, default=None, help="meta-train steps per learner")
    p.add_argument("--tasks-per-class", type=int, default=None)
    p.add_argument("--ks", type=int, nargs="+", default=None, help="few-shot context sizes (point-mass: 8 16 24)")
    p.add_argument("--eval-length", type=int, default=None, help="transitions scored after each context")
    p.add_argument("--episodes-per-task", type=int, default=None)
    p.add_argument("--control-meta-batch-size", type=int, default=None,
                   help="test sub-envs of the control column (ML1 has one test class: use e.g. 10 goals)")
    p.add_argument("--ensemble", type=int, default=None, help="make every learner an ensemble of E members")
    p.add_argument("--out-suffix", default="", help="appended to the CSV name, e.g. _e5")
    p.add_argument("--no-control", action="store_true")
    args = p.parse_args()
    overrides = {k: v for k, v in (("steps", args.steps), ("tasks_per_class", args.tasks_per_class),
                                   ("kshot_ks", tuple(args.ks) if args.ks else None), ("kshot_eval_length", args.eval_length),
                                   ("episodes_per_task", args.episodes_per_task),
                                   ("control_meta_batch_size", args.control_meta_batch_size),
                                   ("ensemble", args.ensemble)) if v is not None}
    cfg = make_config(args.preset, suite=args.suite, **overrides)
    RESULTS.mkdir(parents=True, exist_ok=True)
    learners_run(cfg, args.learners, RESULTS / f"learners_{args.suite.replace(':', '_')}{args.out_suffix}.csv", control=not args.no_control,
                 progress=False)


if __name__ == "__main__":
    main()
