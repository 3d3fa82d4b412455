"""Where a value agent's control fails: held-out test goals (policy vs plan) against its own and unseen training goals.

Meta-World's judge scores the test goals (one sub-env, ``--rounds`` goals, ``--adapt`` adaptation + 3 scored episodes);
training goals go through ``protocol_evaluation`` (one env per goal, 3 adaptation + 1 scored episode): the first ten
goals of the training split (the ones a 10-goal run trained on) and the next ten (never trained on).

    python benchmarks/diag_value_agent.py RUN_DIR [--rounds 10] [--adapt 3]
"""

from __future__ import annotations

import argparse
import dataclasses
import warnings
from pathlib import Path

import pandas as pd
from _common import report

import task_suites
from meta_mbrl.evaluation import metaworld_evaluation, protocol_evaluation
from meta_mbrl.runs import build_value_agent, checkpoint_config, load_value_agent
from meta_mbrl.training import learner_from_checkpoint, load_checkpoint


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path)
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--adapt", type=int, default=3)
    args = ap.parse_args()
    warnings.filterwarnings("ignore")
    ckpt = load_checkpoint(args.run / "checkpoint.pt")
    cfg = checkpoint_config(ckpt)
    learner = learner_from_checkpoint(ckpt)
    ac = load_value_agent(args.run, learner)
    if ac is None:
        raise SystemExit(f"run: {args.run} holds no agent.pt; train with --agent-env-steps first")
    suite = task_suites.make(cfg.data.suite, seed=cfg.seed)
    rows = []
    for mode in ("policy", "plan"):
        c = dataclasses.replace(cfg, agent=dataclasses.replace(cfg.agent, mode=mode))
        _, info = metaworld_evaluation(build_value_agent(c, learner, ac, suite, 1), suite, num_evals=args.rounds,
                                       adaptation_episodes=args.adapt, evaluation_episodes=3, meta_batch_size=1,
                                       seed=cfg.seed)
        rows.append({"goals": f"test ({args.rounds})", "mode": mode, "success": info["mean_success_rate"],
                     "mean_return": info["mean_return"]})
    c = dataclasses.replace(cfg, agent=dataclasses.replace(cfg.agent, mode="policy"))
    for name, tasks in (("training 0-9", suite.train_tasks[:10]), ("training 10-19", suite.train_tasks[10:20])):
        df, _ = protocol_evaluation(build_value_agent(c, learner, ac, suite, len(tasks)), suite, tasks,
                                    adaptation_episodes=3, evaluation_episodes=1, seed=5)
        rows.append({"goals": name, "mode": "policy", "success": float(df["success_rate"].mean()),
                     "mean_return": float(df["eval_return"].mean())})
    report(pd.DataFrame(rows), f"diag_value_agent_{args.run.name}", f"Value agent of {args.run}: where control fails")


if __name__ == "__main__":
    main()
