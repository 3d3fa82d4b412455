"""Hierarchical against flat planning at equal planning compute (model rows per action).

Every planner drives the same model of each task for one scored episode per task:

- ``true``: the task's exact dynamics and reward (the maze: ``PointMazeSuite.true_dynamics``), which separates
  planning from model error;
- ``adapted``: the run's prior (``--checkpoint``) adapted on one exploration episode per task (``rl`` track:
  the config's exploration policy, colored noise by default); the same context for every planner.

Planners: the hierarchical planner (the checkpoint's ``planner`` section with ``--planner hierarchical``'s
defaults, or the flags below), then flat CEM given the *same* model rows per action as the hierarchical planner
measured (a counting wrapper around the model counts every row it predicts), at the flat horizon and at the
hierarchical lookahead (``M * k``), and the run's own flat planner as configured. Compute is reported as rows per
action and, for the adapted model, approximate model FLOPs (2 x the network's weights per row).

Usage (each row of the README's table; 1 thread):
    python benchmarks/bench_hierarchy.py --checkpoint /work/runs/point-maze-s0 --models true adapted \
        --out benchmarks/results/hierarchy_maze.csv
    python benchmarks/bench_hierarchy.py --checkpoint /work/runs/ml10-quick-s0 \
        --suite "custom:reach-v3|pick-place-v3,drawer-open-v3" --tasks 3 --models adapted \
        --out benchmarks/results/hierarchy_metaworld.csv
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine  # noqa: E402

import task_suites  # noqa: E402
from meta_mbrl import runs  # noqa: E402
from meta_mbrl.config import RunConfig  # noqa: E402
from meta_mbrl.data.rollout import collect  # noqa: E402
from meta_mbrl.models import FunctionModel  # noqa: E402
from meta_mbrl.planning import CEM, MPCController  # noqa: E402
from meta_mbrl.training import learner_from_checkpoint, load_checkpoint  # noqa: E402
from meta_mbrl.types import Prediction, Transitions  # noqa: E402

MODELS = ("true", "adapted", "adapted+true-dynamics", "adapted+true-reward")


def swapped(adapted, true_fn, obs_dim: int, act_dim: int, true_dynamics: bool) -> FunctionModel:
    """The adapted model with its next states (``true_dynamics``) or its rewards replaced by the true ones."""

    def fn(obs, act):
        with torch.no_grad():
            pred = adapted.predict(obs.float(), act.float())
        nxt, rew = true_fn(obs, act)
        return (nxt, pred.reward.double()) if true_dynamics else (pred.next_obs.double(), rew)

    return FunctionModel(fn, obs_dim, act_dim, dtype=torch.float64)


class CountingModel:
    """Forwards ``predict`` to ``model`` and counts the rows (leading elements) it is asked for."""

    def __init__(self, model):
        self.model, self.rows = model, 0
        for attr in ("obs_dim", "act_dim", "dtype", "device"):
            setattr(self, attr, getattr(model, attr, None))

    def predict(self, obs: torch.Tensor, act: torch.Tensor) -> Prediction:
        self.rows += obs[..., 0].numel()
        return self.model.predict(obs, act)


def network_weights(learner) -> int:
    """Weights of the learner's dynamics network (``learner.model``), 0 if it exposes none."""
    net = getattr(learner, "model", None)
    return sum(p.numel() for p in net.parameters()) if isinstance(net, torch.nn.Module) else 0


def adapt_on_exploration(cfg: RunConfig, learner, suite, tasks, seed: int):
    """The prior adapted on one exploration episode of each task (the config's ``data.policy``); returns the adapted
    model (task-batched, ``B = len(tasks)``) and the context's env steps."""
    buf = collect(suite, tasks, policy=cfg.data.policy, episodes_per_task=1, seed=seed, progress=False)
    parts = [buf.transitions([t.id]) for t in tasks]
    n = min(len(p.obs) for p in parts)
    ctx = Transitions(*(torch.as_tensor(np.stack([getattr(p, f)[:n] for p in parts]), dtype=torch.float32)
                        for f in Transitions._fields))
    return learner.adapt(ctx, **(runs.adapt_opts(cfg) or {})), buf.env_steps


def episode(suite, tasks, model, planner, seed: int, steps: int, discount: float) -> dict:
    """One scored episode per task with ``planner`` on ``model`` (rows counted); mean return, success, rows per action."""
    counted = CountingModel(model)
    mpc = MPCController(planner, num_envs=len(tasks), discount=discount)
    env = suite.make_vec_env(tasks, seed=seed)
    try:
        obs, _ = env.reset(seed=seed)
        ret, success, has_success = np.zeros(len(tasks)), np.zeros(len(tasks), dtype=bool), False
        t0 = time.perf_counter()
        for _ in range(steps):
            obs, reward, _, _, info = env.step(mpc.act(obs, counted))
            ret += reward
            if "success" in info:
                has_success = True
                success |= np.asarray(info["success"]) > 0
        wall = time.perf_counter() - t0
    finally:
        env.close()
    out = {"return": float(ret.mean()), "success_rate": float(success.mean()) if has_success else math.nan,
           "rows_per_action": counted.rows / (steps * len(tasks)), "sec_per_step": wall / steps,
           "env_steps": steps * len(tasks)}
    names = sorted({t.name for t in tasks})
    if len(names) > 1:  # per class too
        for name in names:
            idx = [i for i, t in enumerate(tasks) if t.name == name]
            out[f"return[{name}]"] = float(ret[idx].mean())
            if has_success:
                out[f"success_rate[{name}]"] = float(success[idx].mean())
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkpoint", required=True, help="run directory of the prior (and of the planner settings)")
    ap.add_argument("--suite", default=None, help="suite to plan on (default: the checkpoint's)")
    ap.add_argument("--tasks", type=int, default=0, help="test tasks per class (0: all)")
    ap.add_argument("--models", nargs="+", default=["adapted"], choices=list(MODELS),
                    help="true: exact dynamics and reward; adapted: the prior adapted on exploration; "
                         "adapted+true-dynamics / adapted+true-reward: the adapted model with one part swapped "
                         "for the truth (which part of the model fails)")
    ap.add_argument("--hierarchical-only", action="store_true", help="skip the flat planners")
    ap.add_argument("--steps", type=int, default=0, help="episode length (0: the suite's)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--discount", type=float, default=1.0, help="of the imagined returns, every planner")
    ap.add_argument("--out", required=True, help="CSV file to write")
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                    help="config overrides of the planner section, e.g. planner.segment=20")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)

    ckpt = load_checkpoint(args.checkpoint)
    overrides = {"planner.name": "hierarchical", "seed": args.seed}
    for kv in args.set:
        key, value = kv.split("=", 1)
        overrides[key] = type(getattr(runs.checkpoint_config(ckpt).planner, key.split(".")[-1]))(value)
    cfg = runs.checkpoint_config(ckpt, None, overrides)
    suite = task_suites.make(args.suite or cfg.data.suite, seed=cfg.seed)
    tasks = runs.select_tasks(suite.test_tasks, args.tasks) if args.tasks else list(suite.test_tasks)
    steps = args.steps or suite.max_episode_steps
    learner = learner_from_checkpoint(ckpt, device="cpu")
    p = cfg.planner
    rows = []
    for kind in args.models:
        if "true" in kind and not hasattr(suite, "true_dynamics"):
            raise SystemExit(f"--models {kind}: suite {suite.name!r} has no true_dynamics")
        if kind == "true":
            model, ctx_steps, weights = FunctionModel(suite.true_dynamics(tasks), suite.obs_dim, suite.act_dim,
                                                      dtype=torch.float64), 0, 0
        else:
            model, ctx_steps = adapt_on_exploration(cfg, learner, suite, tasks, seed=args.seed + 1000)
            weights = network_weights(learner)
            if kind != "adapted":
                model = swapped(model, suite.true_dynamics(tasks), suite.obs_dim, suite.act_dim,
                                true_dynamics=kind == "adapted+true-dynamics")
        hier = runs.build_planner(cfg, suite)
        res = {"planner": "hierarchical", "horizon": hier.horizon, "lookahead": hier.lookahead,
               **episode(suite, tasks, model, hier, args.seed, steps, args.discount)}
        budget = res["rows_per_action"]
        flat = [("flat (run's CEM)", p.horizon, p.population)]
        for h in (p.horizon, hier.lookahead):
            flat.append((f"flat CEM, equal compute, H={h}", h, max(2, round(budget / (p.iterations * h)))))
        results = [res]
        for name, h, pop in ([] if args.hierarchical_only else flat):
            cem = CEM(suite.action_low, suite.action_high, horizon=h, population=pop, iterations=p.iterations,
                      seed=args.seed)
            results.append({"planner": name, "horizon": h, "lookahead": h, "population": pop,
                            **episode(suite, tasks, model, cem, args.seed, steps, args.discount)})
        for r in results:
            r.update(model=kind, suite=suite.name, tasks=len(tasks), context_env_steps=ctx_steps,
                     model_mflop_per_action=(2 * weights * r["rows_per_action"] / 1e6) if weights else math.nan,
                     track={"true": "true dynamics", "adapted": "rl"}.get(kind, "rl, part swapped for the truth"),
                     seed=args.seed, episode_steps=steps,
                     checkpoint=str(args.checkpoint), **{f"hier_{k}": getattr(p, k) for k in (
                         "segment", "num_subgoals", "subgoal_population", "subgoal_iterations", "track_samples",
                         "track_lookahead", "subgoal_every", "low_level")})
            print(f"{kind:8s} {r['planner']:34s} return {r['return']:9.2f} success {r['success_rate']:.2f} "
                  f"rows/action {r['rows_per_action']:9.0f}", flush=True)
        rows += results
    df = pd.DataFrame(rows)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    df.to_csv(tmp, index=False)
    tmp.replace(out)
    cols = ["model", "planner", "horizon", "lookahead", "return", "success_rate", "rows_per_action",
            "model_mflop_per_action", "sec_per_step"]
    cols += [c for c in df.columns if c.startswith("return[")]
    print(df[cols].to_string(index=False, float_format=lambda v: f"{v:.3g}"))
    print(f"[{machine()}]")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
