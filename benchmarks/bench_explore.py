"""Exploration that finds contact: how often each collector moves the object on ML1 push-v3's training tasks.

Meta-trains a small ensemble prior (CaDM or MAML members) on colored-noise data from a few training
goals, then collects the same env-step budget on those goals with each of

- ``colored-noise``: the exploration noise the prior was trained on (a fresh seed);
- ``mpc reward``: the MPC agent (online adaptation, the agent's default exploration noise) planning on
  the predicted reward alone;
- ``mpc bonus``: the same agent planning on the ensemble-disagreement information bonus alone
  (Plan2Explore / MAX: members' variance about the next observation, normalized Δobs units);
- ``mpc reward+bonus``: on both (``reward_weight * return + bonus_weight * bonus``);

and reports, per row, the env steps, the fraction of transitions that move an object
(:func:`meta_mbrl.data.contact.object_moved` on ``suite.object_slices``), the mean reward per step,
the env steps per second of the collection (planning included), the fraction of steps in which
the hand (Meta-World's ``obs[0:3]``) moved less than 1 mm, and what the bonus sees on the row's
own transitions: the members' disagreement per step (the bonus's per-step term, the prior adapted on
each task's first 32 transitions of the row) and the share of it in the object dims. Every row uses the same prior, tasks,
env seeds and budget. Writes ``benchmarks/results/explore_<env>.csv``.

    python benchmarks/bench_explore.py --seeds 5             # ml1:push-v3, CaDM x3: ~6 min on 1 thread (75 s a seed)
    python benchmarks/bench_explore.py --learner maml --ensemble 5 --bonus-weight 0.3
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
import pandas as pd
import torch
from _common import report

import task_suites
from meta_mbrl import collect, meta_train
from meta_mbrl.agent import MetaMBRLAgent
from meta_mbrl.data.contact import object_moved
from meta_mbrl.meta import make_learner
from meta_mbrl.planning import CEM
from meta_mbrl.training.model_based import agent_source
from meta_mbrl.types import Transitions


def _disagreement(learner, buf, tasks, object_slices) -> tuple[float, float]:
    """Mean per-step disagreement (the bonus term) on ``buf``'s transitions, and the share of it in object dims."""
    trs = []
    for t in tasks:
        parts = buf.trajectories(t.id)
        trs.append(Transitions(*(torch.as_tensor(np.concatenate([np.asarray(p[i]) for p in parts]), dtype=torch.float32)
                                 for i in range(4))))
    tr = Transitions(*(torch.stack([x[i] for x in trs]) for i in range(4)))  # (T, n, ·)
    with torch.no_grad():
        model = learner.adapt(tr.index((slice(None), slice(0, 32))))
        pred = model.predict_members(tr.obs, tr.act).next_obs  # (E, T, n, O)
    var = (pred - pred.mean(0)).square().mean(0) / model.delta_scale.square()  # (T, n, O)
    obj = [d for a, b in object_slices for d in range(a, b)]
    per_dim = var.mean((0, 1))
    return float(var.mean()), float(per_dim[obj].sum() / per_dim.sum())


def _row(name: str, buf, suite, seconds: float, source: str) -> dict:
    tr = buf.transitions()
    moved = object_moved(tr.obs, tr.next_obs, suite.object_slices)
    n = int(tr.obs.shape[0])
    still = float((np.linalg.norm(np.asarray(tr.next_obs)[:, :3] - np.asarray(tr.obs)[:, :3], axis=-1) < 1e-3).mean())
    return {"collector": name, "source": source, "env_steps": buf.env_steps, "transitions": n, "hand_still": still,
            "moved": int(moved.sum()), "moved_frac": float(moved.float().mean()) if isinstance(moved, torch.Tensor)
            else float(np.mean(moved)), "reward_per_step": float(tr.reward.mean()), "seconds": seconds,
            "env_steps_per_s": buf.env_steps / seconds}


def _one_seed(args, seed: int) -> pd.DataFrame:
    """The four rows of one seed: its own goals, colored-noise data, prior, planner and env resets."""
    suite = task_suites.make(args.suite, seed=seed)
    tasks = suite.train_tasks[:args.tasks]
    t0 = time.perf_counter()
    train = collect(suite, tasks, "colored-noise", episodes_per_task=args.train_episodes, seed=seed, progress=False)
    learner = make_learner(args.learner, suite.obs_dim, suite.act_dim, hidden=tuple(args.hidden), ensemble=args.ensemble,
                           seed=seed)
    meta_train(learner, train, steps=args.steps, tasks_per_batch=min(args.tasks, 10), support=16, query=16, lr=1e-3,
               progress=False, seed=seed)
    learner.eval()
    prep = time.perf_counter() - t0
    print(f"seed {seed}: prior {args.learner} x{args.ensemble} {tuple(args.hidden)}, {args.steps} steps on {train} "
          f"({prep:.0f} s)", flush=True)

    rows_seed = seed + 1  # every row: the same env resets, none shared with the training data
    rows = []
    t = time.perf_counter()
    buf = collect(suite, tasks, "colored-noise", episodes_per_task=args.episodes, seed=rows_seed, progress=False)
    rows.append(_row("colored-noise", buf, suite, time.perf_counter() - t, "colored-noise"))
    rows[-1]["disagreement"], rows[-1]["object_share"] = _disagreement(learner, buf, tasks, suite.object_slices)
    print(rows[-1], flush=True)
    for name, bonus, reward in (("mpc reward", 0.0, 1.0), ("mpc bonus", args.bonus_weight, 0.0),
                                ("mpc reward+bonus", args.bonus_weight, 1.0)):
        planner = CEM(suite.action_low, suite.action_high, horizon=args.horizon, population=args.population,
                      iterations=args.iterations, seed=seed)
        agent = MetaMBRLAgent(learner, planner, num_envs=len(tasks), online=True, context_size=32, adapt_every=1,
                              explore_noise=args.explore_noise, seed=seed, bonus_weight=bonus, reward_weight=reward,
                              propagation=args.propagation)
        t = time.perf_counter()
        with torch.no_grad():
            buf = collect(suite, tasks, agent, episodes_per_task=args.episodes, seed=rows_seed, progress=False,
                          source=agent_source(agent))
        rows.append(_row(name, buf, suite, time.perf_counter() - t, agent_source(agent)))
        rows[-1]["disagreement"], rows[-1]["object_share"] = _disagreement(learner, buf, tasks, suite.object_slices)
        print(rows[-1], flush=True)

    df = pd.DataFrame(rows)
    df.insert(0, "seed", seed)
    df.insert(0, "suite", args.suite)
    df["learner"], df["ensemble"] = args.learner, args.ensemble
    df["planner"] = f"cem H{args.horizon} x{args.population} x{args.iterations}it, {args.propagation}"
    noise = df["moved_frac"].iloc[0]
    df["moved_vs_noise"] = df["moved_frac"] / noise if noise > 0 else float("nan")  # undefined if noise moved nothing
    return df


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--suite", default="ml1:push-v3")
    ap.add_argument("--learner", default="cadm", help="the ensemble members' learner (cadm, maml, ...)")
    ap.add_argument("--ensemble", type=int, default=3, help="members E (>= 2: the bonus is their disagreement)")
    ap.add_argument("--hidden", type=int, nargs="+", default=[64, 64])
    ap.add_argument("--tasks", type=int, default=5, help="training goals collected on (the first ones)")
    ap.add_argument("--train-episodes", type=int, default=4, help="colored-noise episodes per goal to meta-train on")
    ap.add_argument("--steps", type=int, default=400, help="meta-training outer steps")
    ap.add_argument("--episodes", type=int, default=2, help="episodes per goal per row (the env-step budget)")
    ap.add_argument("--horizon", type=int, default=8)
    ap.add_argument("--population", type=int, default=50)
    ap.add_argument("--iterations", type=int, default=2)
    ap.add_argument("--propagation", default="ts1", choices=["ts1", "tsinf", "mean"],
                    help="how imagined particles move through the ensemble (the agent's default: ts1, E particles)")
    ap.add_argument("--bonus-weight", type=float, default=1.0, help="bonus weight of the bonus rows")
    ap.add_argument("--explore-noise", type=float, default=0.3, help="the agent's exploration noise (its default)")
    ap.add_argument("--seed", type=int, default=0, help="the first seed")
    ap.add_argument("--seeds", type=int, default=1, help="seeds run one after another (a summary table over them)")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads (1: on a shared 2-core machine 2 threads under contention ran ~10x slower)")
    ap.add_argument("--out-suffix", default="")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    frames = [_one_seed(args, seed) for seed in range(args.seed, args.seed + args.seeds)]
    df = pd.concat(frames, ignore_index=True)
    name = f"explore_{args.suite.split(':')[-1]}{args.out_suffix}"
    budget = f"{args.tasks} goals x {args.episodes} episodes per row and seed"
    report(df, name, f"Contact found by each collector on {args.suite} training goals ({budget}; prior meta-trained "
           f"{args.steps} steps on {args.tasks * args.train_episodes} colored-noise episodes)")
    if args.seeds > 1:
        g = df.groupby("collector", sort=False)
        summary = pd.DataFrame({
            "seeds": g["seed"].nunique(), "env_steps": g["env_steps"].sum(), "moved": g["moved"].sum(),
            "moved_frac_mean": g["moved_frac"].mean(), "moved_frac_std": g["moved_frac"].std(),
            "moved_frac_min": g["moved_frac"].min(), "moved_frac_max": g["moved_frac"].max(),
            "hand_still": g["hand_still"].mean(), "env_steps_per_s": g["env_steps"].sum() / g["seconds"].sum(),
        }).reset_index()
        report(summary, name + ".summary", f"Over {args.seeds} seeds (each: its own goals, prior and env resets)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
