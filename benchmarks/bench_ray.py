"""Ray: collection and control-evaluation throughput (env steps/s) in this process vs 1 and 2 Ray workers, one run.

Each Ray row uses a local cluster of W worker CPUs started for it (startup time in its own column), one warm-up
call (worker processes spawned, imports done), then the timed call; the result is checked equal to the in-process
one. ``overhead_1w`` = in-process steps/s / 1-worker steps/s (Ray's cost at equal parallelism); ``speedup`` =
steps/s / in-process steps/s. Every process runs torch with 1 thread (OMP_NUM_THREADS=1).

    OMP_NUM_THREADS=1 python benchmarks/bench_ray.py [--episodes 40] [--mw-episodes 1] [--no-metaworld]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402
from _common import report  # noqa: E402

import task_suites  # noqa: E402
from meta_mbrl import distributed, runs  # noqa: E402
from meta_mbrl.config import make_config  # noqa: E402
from meta_mbrl.data import collect  # noqa: E402

torch.set_num_threads(1)


def start(ray, workers: int) -> float:
    t = time.perf_counter()
    ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False, configure_logging=False,
             runtime_env={"env_vars": {"OMP_NUM_THREADS": "1"}})
    return time.perf_counter() - t


def timed(fn, repeat: int = 2):
    """(result, best seconds) over ``repeat`` calls (the machine is shared: the best is the least disturbed)."""
    best, out = float("inf"), None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return out, best


def same(a, b) -> bool:
    return a.sources == b.sources and all(
        np.array_equal(u, v) for (_, x), (_, y) in zip(a._trajs, b._trajs, strict=True) for u, v in zip(x, y, strict=True))


def bench_collect(ray, name: str, suite, tasks, episodes: int, num_envs: int, rows: list) -> None:
    kw = dict(episodes_per_task=episodes, seed=0, num_envs=num_envs, progress=False)
    collect(suite, tasks[:num_envs], **{**kw, "episodes_per_task": 1})  # warm caches as the Ray rows get
    ref, dt = timed(lambda: collect(suite, tasks, **kw))
    base = ref.env_steps / dt
    rows.append(dict(stage="collect", suite=name, tasks=len(tasks), chunk=num_envs, env_steps=ref.env_steps,
                     runner="in-process", workers=0, startup_s=0.0, seconds=ref.env_steps / base, steps_per_s=base,
                     identical=True))
    for w in (1, 2):
        up = start(ray, w)
        distributed.collect(suite, tasks[:num_envs * w], **{**kw, "episodes_per_task": 1}, workers=w)  # warm-up
        buf, dt = timed(lambda: distributed.collect(suite, tasks, **kw, workers=w))
        ray.shutdown()
        rows.append(dict(stage="collect", suite=name, tasks=len(tasks), chunk=num_envs, env_steps=buf.env_steps,
                         runner="ray", workers=w, startup_s=up, seconds=dt, steps_per_s=buf.env_steps / dt,
                         identical=same(buf, ref)))


def bench_evaluate(ray, rows: list, group: int) -> None:
    run = Path(tempfile.mkdtemp()) / "run"
    runs.train_run(make_config("test", {"data.suite": "point-mass"}), run, progress=False, out=lambda *a: None)
    ckpt = runs.load_checkpoint(run)
    cfg = runs.checkpoint_config(ckpt, None, {"control.task_group": group})
    learner = runs.learner_from_checkpoint(ckpt)
    suite = task_suites.make("point-mass", seed=cfg.seed)
    runs.evaluate_control(cfg, learner, suite)  # warm-up
    (ref, info, _), dt = timed(lambda: runs.evaluate_control(cfg, learner, suite))
    steps = info["adapt_env_steps"] + info["eval_env_steps"]
    rows.append(dict(stage="evaluate", suite="point-mass", tasks=len(ref), chunk=group, env_steps=steps,
                     runner="in-process", workers=0, startup_s=0.0, seconds=dt, steps_per_s=steps / dt, identical=True))
    for w in (1, 2):
        up = start(ray, w)
        opts = {"checkpoint": run, "value": False, "workers": w, "address": None}
        runs.evaluate_control(cfg, learner, suite, ray=opts)  # warm-up
        (df, info, _), dt = timed(lambda: runs.evaluate_control(cfg, learner, suite, ray=opts))
        ray.shutdown()
        rows.append(dict(stage="evaluate", suite="point-mass", tasks=len(df), chunk=group, env_steps=steps,
                         runner="ray", workers=w, startup_s=up, seconds=dt, steps_per_s=steps / dt,
                         identical=bool(df.equals(ref))))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--episodes", type=int, default=40, help="episodes per task of the point-mass / maze collections")
    p.add_argument("--mw-episodes", type=int, default=1, help="episodes per task of the ml1:reach-v3 collection (2 tasks)")
    p.add_argument("--no-metaworld", action="store_true")
    args = p.parse_args()
    import ray

    rows: list[dict] = []
    pm = task_suites.make("point-mass", seed=0)
    bench_collect(ray, "point-mass", pm, pm.train_tasks, args.episodes, -(-len(pm.train_tasks) // 4), rows)
    mz = task_suites.make("point-maze", seed=0)
    bench_collect(ray, "point-maze", mz, mz.train_tasks, args.episodes, -(-len(mz.train_tasks) // 4), rows)
    bench_evaluate(ray, rows, group=5)
    if not args.no_metaworld:
        try:
            ml1 = task_suites.make("ml1:reach-v3", seed=0)
        except ImportError as e:
            print(f"Meta-World row skipped: {e}")
        else:
            bench_collect(ray, "ml1:reach-v3", ml1, ml1.train_tasks[:2], args.mw_episodes, 1, rows)
    df = pd.DataFrame(rows)
    base = df[df.runner == "in-process"].set_index(["stage", "suite"]).steps_per_s
    one = df[df.workers == 1].set_index(["stage", "suite"]).steps_per_s
    df["speedup"] = [r.steps_per_s / base[(r.stage, r.suite)] for r in df.itertuples()]
    df["overhead_1w"] = [base[(r.stage, r.suite)] / one[(r.stage, r.suite)] if r.workers == 1 else np.nan
                         for r in df.itertuples()]
    report(df, "bench_ray", f"Ray collection / evaluation throughput, {os.cpu_count()} CPUs (shared, noisy), "
                            "1 torch thread per process")


if __name__ == "__main__":
    main()
