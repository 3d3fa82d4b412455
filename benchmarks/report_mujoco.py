"""The parametric-dynamics MuJoCo suites: this project's runs beside CaDM's published returns, and few-shot errors.

Reads run directories written by ``meta-mbrl train --preset mujoco --suite cadm:<name> --learner <L>`` (and with
``--agent-env-steps N``: the value-guided agent) and writes, per suite,

- ``benchmarks/results/mujoco_<suite>.csv``: one row per run and controller: mean return of the scored episodes on
  the test tasks in CaDM's moderate regime, in its extreme regime and over all, the env steps of training (all of
  them: exploration data, model-based rounds, the agent's), the data track, the planner; then CaDM's published
  moderate-regime rows (:mod:`meta_mbrl.evaluation.published`);
- ``benchmarks/results/mujoco_<suite>_kshot.csv``: few-shot errors on the test tasks (outside the training range)
  per learner and K, with the naive predictors (persistence, context mean, ridge on the context), the unadapted
  prior and the per-task oracle.

    python benchmarks/report_mujoco.py RUN_DIR [RUN_DIR ...]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd
from _common import report

import task_suites
from meta_mbrl.evaluation.published import cadm_regime, published_table

_CONTROLLERS = {"control.csv": None, "control_flat.csv": "flat planner (same prior)"}


def _config(run: Path) -> dict:
    return json.loads((run / "config.json").read_text())["config"]


def control_rows(run: Path, suite) -> list[dict]:
    """One row per control file of ``run``: mean return by CaDM regime, env steps and protocol."""
    cfg = _config(run)
    payload = {t.id: t.payload for t in suite.test_tasks}
    rows = []
    for name, label in _CONTROLLERS.items():
        path = run / name
        if not path.exists():
            continue
        df = pd.read_csv(path)
        unknown = sorted(set(df["task"]) - set(payload))
        if unknown:
            raise ValueError(f"{path}: tasks {unknown[:3]} are not test tasks of {suite.name}")
        df["regime"] = [cadm_regime(payload[t]) for t in df["task"]]
        by = df.groupby("regime")["eval_return"].mean()
        first = df.iloc[0]
        agent = label or str(first.get("agent", "flat planner"))
        env_steps = first.get("train_env_steps", first.get("meta_train_env_steps"))
        rows.append(dict(
            method=f"{cfg['learner']['name']}: {agent}", run=run.name, return_moderate=by.get("moderate"),
            return_extreme=by.get("extreme"), return_all=df["eval_return"].mean(), tasks=len(df),
            env_steps=int(env_steps), track=first.get("track", "rl"), planner=first["planner"],
            plan=f"H{first['plan_horizon']} x {first['plan_population']} x {first['plan_iterations']} it",
            adaptation_episodes=int(first["adaptation_episodes"]), seed=int(first["seed"]),
        ))
    return rows


def kshot_rows(run: Path) -> pd.DataFrame:
    path = run / "kshot.summary.csv"
    if not path.exists():
        return pd.DataFrame()
    df = pd.read_csv(path)
    cols = [c for c in ("k", "method", "dyn_mse", "reward_mse", "dyn_mse_h10") if c in df]
    return df[cols].assign(learner=_config(run)["learner"]["name"], run=run.name)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", type=Path)
    args = ap.parse_args()
    by_suite: dict[str, list[Path]] = {}
    for run in args.runs:
        if not (run / "config.json").exists():
            raise SystemExit(f"runs: {run} has no config.json (not a meta-mbrl run directory)")
        by_suite.setdefault(_config(run)["data"]["suite"], []).append(run)
    for name, runs in by_suite.items():
        suite = task_suites.make(name, seed=_config(runs[0])["seed"])
        ours = pd.DataFrame([r for run in runs for r in control_rows(run, suite)])
        table = pd.concat([ours, published_table(name)], ignore_index=True)
        slug = name.replace(":", "_").replace("-", "_")
        report(table, f"mujoco_{slug}", f"{name}: mean return of 1000-step test episodes (CaDM regimes)")
        kshot = pd.concat([kshot_rows(run) for run in runs], ignore_index=True)
        if len(kshot):
            wide = kshot.pivot_table(index=["learner", "k"], columns="method", values="dyn_mse").reset_index()
            report(kshot, f"mujoco_{slug}_kshot",
                   f"{name}: few-shot one-step errors on the test tasks (normalized units; tidy)")
            with pd.option_context("display.width", 200, "display.precision", 3):
                print("\none-step dynamics error (normalized MSE) by learner, K and predictor:")
                print(wide.to_string(index=False))


if __name__ == "__main__":
    main()
