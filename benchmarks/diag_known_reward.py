"""Which part of the model fails on a MuJoCo suite: the learned reward or the dynamics?

Loads a run's prior, adapts it on one exploration episode of each chosen test task, then plays one episode per task
with the run's flat CEM twice: planning on the adapted model's learned reward, and on the suite's known reward
(``suite.reward_fn``) of the same model's predicted transition. The same planner seed, tasks and context for both,
so the difference is the reward model's. Prints a table and writes CSV.

    python benchmarks/diag_known_reward.py --checkpoint RUN_DIR [--tasks 2 5] [--steps 1000] --out FILE.csv
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine  # noqa: E402
from bench_hierarchy import adapt_on_exploration, episode  # noqa: E402

import task_suites  # noqa: E402
from meta_mbrl import runs  # noqa: E402
from meta_mbrl.models import KnownRewardModel  # noqa: E402
from meta_mbrl.planning import CEM  # noqa: E402
from meta_mbrl.training import learner_from_checkpoint, load_checkpoint  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkpoint", required=True, help="run directory of the prior (and of the planner settings)")
    ap.add_argument("--tasks", type=int, nargs="+", default=[2, 5], help="test task indices (default: 2 5)")
    ap.add_argument("--steps", type=int, default=1000, help="episode length")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    ckpt = load_checkpoint(args.checkpoint)
    cfg = runs.checkpoint_config(ckpt, None, {})
    suite = task_suites.make(cfg.data.suite, seed=cfg.seed)
    if getattr(suite, "reward_fn", None) is None:
        raise SystemExit(f"checkpoint: its suite {suite.name} has no known reward function (suite.reward_fn)")
    bad = [i for i in args.tasks if not 0 <= i < len(suite.test_tasks)]
    if bad:
        raise SystemExit(f"tasks: expected indices in [0, {len(suite.test_tasks)}), got {bad}")
    tasks = [suite.test_tasks[i] for i in args.tasks]
    learner = learner_from_checkpoint(ckpt, device="cpu")
    learner.eval()
    adapted, ctx_steps = adapt_on_exploration(cfg, learner, suite, tasks, seed=args.seed + 1)
    p = cfg.planner
    rows = []
    for reward, model in (("learned", adapted), ("known", KnownRewardModel(adapted, suite.reward_fn))):
        cem = CEM(suite.action_low, suite.action_high, horizon=p.horizon, population=p.population,
                  iterations=p.iterations, seed=args.seed)
        t = time.perf_counter()
        res = episode(suite, tasks, model, cem, args.seed, args.steps, 1.0)
        rows.append(dict(reward=reward, mean_return=res["return"], suite=suite.name,
                         tasks=" ".join(t.id.rsplit("/", 1)[1] for t in tasks), episode_steps=args.steps,
                         plan=f"CEM H{p.horizon} x {p.population} x {p.iterations} it", context_env_steps=ctx_steps,
                         checkpoint_step=ckpt["step"], train_env_steps=ckpt["env_steps"], seed=args.seed,
                         seconds=time.perf_counter() - t, checkpoint=str(args.checkpoint)))
    df = pd.DataFrame(rows)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(args.out, index=False)
    with pd.option_context("display.width", 200):
        print(f"learned vs known reward on the same adapted dynamics  [{machine()}]")
        print(df.drop(columns=["checkpoint"]).to_string(index=False))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
