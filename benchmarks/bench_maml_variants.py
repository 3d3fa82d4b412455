"""MAML variants on the same training data and seed: prior vs adapted on held-out test tasks.

Trains each variant (inner learning rate, inner steps, Meta-SGD, first order) on a saved training
buffer, then runs the few-shot benchmark's prior/adapted rows (oracle and scratch at a token
budget, since they do not depend on the variant).

    python benchmarks/bench_maml_variants.py --buffer runs/ml10-quick-seed0/train_buffer.npz --suite ml10
"""

from __future__ import annotations

import argparse

import pandas as pd
import torch
from _common import report

import task_suites
from meta_mbrl import MAML, DynamicsMLP, TaskBuffer, meta_train
from meta_mbrl.evaluation import kshot_benchmark
from meta_mbrl.runs import select_tasks

VARIANTS = {
    "maml lr=0.01 (GrBAL)": dict(inner_lr=0.01),
    "maml lr=0.1": dict(inner_lr=0.1),
    "maml lr=0.05 x2 steps": dict(inner_lr=0.05, inner_steps=2),
    "meta-sgd (init 0.01)": dict(inner_lr=0.01, meta_sgd=True),
    "fomaml lr=0.1": dict(inner_lr=0.1, first_order=True),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--buffer", required=True)
    ap.add_argument("--suite", default="ml10")
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--windows", type=int, default=8)
    args = ap.parse_args()
    buf = TaskBuffer.load(args.buffer)
    suite = task_suites.make(args.suite, seed=args.seed)
    tasks = select_tasks(suite.test_tasks, 1)
    rows = []
    for name, kw in VARIANTS.items():
        torch.manual_seed(args.seed)
        learner = MAML(DynamicsMLP(suite.obs_dim, suite.act_dim), **kw)
        meta_train(learner, buf, steps=args.steps, seed=args.seed, progress=False)
        df, _ = kshot_benchmark(learner, suite, tasks, ks=(8, 32, 128), windows=args.windows, oracle_transitions=1,
                                oracle_steps=1, scratch_steps=1, seed=args.seed, progress=False)
        df = df[df.method.isin(["prior", "adapted"])]
        for (k, method), g in df.groupby(["k", "method"]):
            rows.append({"variant": name, "k": k, "method": method, "dyn_mse": g.dyn_mse.mean(),
                         "reward_mse": g.reward_mse.mean(), "dyn_mse_h10": g.dyn_mse_h10.mean()})
    out = pd.DataFrame(rows).pivot_table(index=["variant", "k"], columns="method",
                                         values=["dyn_mse", "reward_mse", "dyn_mse_h10"]).reset_index()
    out.columns = [" ".join(c).strip() for c in out.columns]
    report(out, f"maml_variants_{args.suite.replace(':', '_')}", f"MAML variants on {args.suite} test tasks")


if __name__ == "__main__":
    main()
