"""Control success across training seeds, and of each ensemble member on its own: is a result robust?

Same data (collected once), same planner and control budget; only the seed of the weights and the
meta-batches changes. With ``--ensemble E`` every member is also scored alone, with ``--bootstrap``
on and off, which is how the ensembles' default (no task-level bootstrap) was chosen.

    python benchmarks/bench_control_seeds.py --suite ml1:reach-v3 --learner cadm --seeds 0 1 2
    python benchmarks/bench_control_seeds.py --suite ml1:reach-v3 --learner cadm --ensemble 2 --seeds 0
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import pandas as pd
import torch
from _common import report

import task_suites
from meta_mbrl.config import make_config
from meta_mbrl.data import collect
from meta_mbrl.runs import build_learner, evaluate_control, select_tasks
from meta_mbrl.training import meta_train


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--suite", default="ml1:reach-v3")
    ap.add_argument("--learner", default="cadm")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--ensemble", type=int, default=1)
    ap.add_argument("--tasks-per-class", type=int, default=50)
    ap.add_argument("--control-meta-batch-size", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=None, help="meta-train steps (default: the quick preset's)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cfg = make_config("quick", suite=args.suite, learner=args.learner, ensemble=args.ensemble,
                      tasks_per_class=args.tasks_per_class, control_meta_batch_size=args.control_meta_batch_size,
                      **({"steps": args.steps} if args.steps else {}))
    suite = task_suites.make(cfg.data.suite, seed=cfg.seed)
    buf = collect(suite, select_tasks(suite.train_tasks, cfg.data.tasks_per_class), cfg.data.policy,
                  episodes_per_task=cfg.data.episodes_per_task, seed=cfg.seed, progress=False)
    rows = []
    for seed in args.seeds:
        for bootstrap in ((False, True) if args.ensemble > 1 else (False,)):
            learner = build_learner(dataclasses.replace(cfg, seed=seed), suite.obs_dim, suite.act_dim)
            if args.ensemble > 1:
                learner.bootstrap = bootstrap
            t = cfg.train
            meta_train(learner, buf, steps=t.steps, tasks_per_batch=t.tasks_per_batch, support=t.support,
                       query=t.query, lr=t.outer_lr, seed=seed, progress=False, query_mode=t.query_mode)
            learner.eval()
            scored = [("ensemble" if args.ensemble > 1 else "single", learner)]
            if args.ensemble > 1:
                scored += [(f"member {e} alone", m) for e, m in enumerate(learner.members)]
            for what, model in scored:
                t = time.perf_counter()
                df, info, _ = evaluate_control(cfg, model, suite)
                ret = info.get("mean_return", float(df["eval_return"].mean()) if "eval_return" in df else float("nan"))
                rows.append({"suite": suite.name, "learner": args.learner, "ensemble": args.ensemble, "bootstrap": bootstrap,
                             "seed": seed, "scored": what, "success": info.get("mean_success_rate", float("nan")),
                             "mean_return": ret, "seconds": time.perf_counter() - t})
                print(rows[-1], flush=True)
    tag = f"{args.suite.replace(':', '_')}_{args.learner}" + (f"_e{args.ensemble}" if args.ensemble > 1 else "")
    report(pd.DataFrame(rows), f"control_seeds_{tag}",
           f"Control success by training seed ({cfg.train.steps} steps, {buf.env_steps} env steps of {cfg.data.policy} data, "
           f"{cfg.control.meta_batch_size} test goals, CEM {cfg.planner.population}x{cfg.planner.horizon}x{cfg.planner.iterations})")


if __name__ == "__main__":
    main()
