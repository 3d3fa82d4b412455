"""Env steps/s of `collect` against raw env stepping of the same vector env, in the same run.

Raw stepping: the suite's vector env over the same tasks, stepped with precomputed random actions
(no policy, nothing recorded). `collect`: the colored-noise policy, recording every transition.
Both include making the vector env and resetting it. Target (issue #2): at most 10% overhead.

    python benchmarks/bench_collect.py [--suites point-mass ml10] [--episodes 2]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd
from _common import report

import task_suites
from meta_mbrl import collect


def raw_steps_per_s(suite, tasks, episodes: int, seed: int = 0) -> float:
    t = time.perf_counter()
    env = suite.make_vec_env(tasks, seed=seed)
    env.reset(seed=seed)
    n = episodes * suite.max_episode_steps
    acts = np.random.default_rng(seed).uniform(-1, 1, size=(n, len(tasks), suite.act_dim)).astype(np.float32)
    for i in range(n):
        env.step(acts[i])
    env.close()
    return n * len(tasks) / (time.perf_counter() - t)


def collect_steps_per_s(suite, tasks, episodes: int, seed: int = 0) -> float:
    t = time.perf_counter()
    buf = collect(suite, tasks, "colored-noise", episodes_per_task=episodes, seed=seed, num_envs=len(tasks),
                  progress=False)
    return buf.env_steps / (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--suites", nargs="+", default=["point-mass", "ml10"])
    ap.add_argument("--episodes", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    rows = []
    for name in args.suites:
        suite = task_suites.make(name, seed=0)
        tasks = suite.train_tasks[:: max(1, len(suite.train_tasks) // 10)][:10] if name != "point-mass" else suite.train_tasks
        eps = args.episodes * (20 if name == "point-mass" else 1)
        raw, col = [], []
        for r in range(args.repeats):  # interleaved, so drift hits both alike
            raw.append(raw_steps_per_s(suite, tasks, eps, seed=r))
            col.append(collect_steps_per_s(suite, tasks, eps, seed=r))
        raw_m, col_m = float(np.median(raw)), float(np.median(col))
        rows.append({"suite": name, "envs": len(tasks), "steps_per_run": eps * suite.max_episode_steps * len(tasks),
                     "raw_env_steps_per_s": raw_m, "collect_steps_per_s": col_m, "overhead_pct": 100 * (raw_m / col_m - 1)})
    report(pd.DataFrame(rows), "collect_speed", "collect vs raw vector-env stepping (median of repeats)")


if __name__ == "__main__":
    main()
