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

``meta-mbrl bench learners --data RUN_DIR/train_buffer.npz --out FILE.csv`` tables (every learner trained on one
run's data) join with ``--learners FILE.csv``: their per-task control rows (``FILE.control.csv``) and few-shot
summaries (``FILE.kshot.summary.csv``).

    python benchmarks/report_mujoco.py RUN_DIR [RUN_DIR ...] [--learners FILE.csv ...]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd
from _common import report

import task_suites
from meta_mbrl.evaluation.published import cadm_regime, published_table

_LABELS = {"control_flat.csv": "flat planner (same prior)"}


def _config(run: Path) -> dict:
    return json.loads((run / "config.json").read_text())["config"]


def control_rows(run: Path, suite) -> list[dict]:
    """One row per control file of ``run``: mean return by CaDM regime, env steps and protocol."""
    cfg = _config(run)
    payload = {t.id: t.payload for t in suite.test_tasks}
    rows = []
    for path in sorted(run.glob("control*.csv")):  # control.csv, control_flat.csv, other evaluations (control_*.csv)
        label = _LABELS.get(path.name)
        df = pd.read_csv(path)
        unknown = sorted(set(df["task"]) - set(payload))
        if unknown:
            raise ValueError(f"{path}: tasks {unknown[:3]} are not test tasks of {suite.name}")
        df["regime"] = [cadm_regime(payload[t]) for t in df["task"]]
        by = df.groupby("regime")["eval_return"].mean()
        first = df.iloc[0]
        agent = label or str(first.get("agent", "flat planner"))
        env_steps = first.get("train_env_steps", first.get("meta_train_env_steps"))
        policy_mode = "(policy)" in agent  # the policy's mean action: no planner, no reward model
        plan = "none (policy mean)" if policy_mode else \
            f"H{first['plan_horizon']} x {first['plan_population']} x {first['plan_iterations']} it"
        rows.append(dict(
            method=f"{cfg['learner']['name']}: {agent}", run=run.name, file=path.name,
            reward="n/a" if policy_mode else
            "known" if first.get("known_reward", cfg["planner"].get("known_reward")) else "learned",
            return_moderate=by.get("moderate"), return_extreme=by.get("extreme"), return_all=df["eval_return"].mean(), tasks=len(df),
            env_steps=int(env_steps), track=first.get("track", "rl"), planner="-" if policy_mode else first["planner"],
            plan=plan,
            adaptation_episodes=int(first["adaptation_episodes"]), seed=int(first["seed"]),
        ))
    return rows


def learners_rows(path: Path, suite, cfg_of_data: dict | None) -> list[dict]:
    """Rows of a ``bench learners`` table: one per learner, control by CaDM regime (``FILE.control.csv``)."""
    ctl = path.with_suffix(".control.csv")
    if not ctl.exists():
        return []
    df = pd.read_csv(ctl)
    payload = {t.id: t.payload for t in suite.test_tasks}
    df["regime"] = [cadm_regime(payload[t]) for t in df["task"]]
    rows = []
    for name, part in df.groupby("learner", sort=False):
        by = part.groupby("regime")["eval_return"].mean()
        rows.append(dict(method=f"{name}: flat planner (bench learners, same data)", run=path.stem,
                         reward="known" if (cfg_of_data or {}).get("planner", {}).get("known_reward") else "see command",
                         return_moderate=by.get("moderate"), return_extreme=by.get("extreme"),
                         return_all=part["eval_return"].mean(), tasks=len(part),
                         env_steps=int(part["meta_train_env_steps"].iloc[0]), track="rl"))
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
    ap.add_argument("--learners", nargs="*", type=Path, default=[],
                    help="bench learners tables (FILE.csv, beside FILE.control.csv and FILE.kshot.summary.csv)")
    ap.add_argument("--data-run", type=Path, default=None,
                    help="the run directory whose train_buffer.npz the bench learners tables trained on")
    args = ap.parse_args()
    by_suite: dict[str, list[Path]] = {}
    for run in args.runs:
        if not (run / "config.json").exists():
            raise SystemExit(f"runs: {run} has no config.json (not a meta-mbrl run directory)")
        by_suite.setdefault(_config(run)["data"]["suite"], []).append(run)
    for name, runs in by_suite.items():
        suite = task_suites.make(name, seed=_config(runs[0])["seed"])
        ours = [r for run in runs for r in control_rows(run, suite)]
        data_cfg = _config(args.data_run) if args.data_run else None
        for path in args.learners:
            table_l = pd.read_csv(path)
            if "suite" in table_l and (table_l["suite"] == name).any():
                ours += learners_rows(path, suite, data_cfg)
        ours = pd.DataFrame(ours)
        table = pd.concat([ours, published_table(name)], ignore_index=True)
        slug = name.replace(":", "_").replace("-", "_")
        report(table, f"mujoco_{slug}", f"{name}: mean return of 1000-step test episodes (CaDM regimes)")
        parts = [kshot_rows(run) for run in runs]
        for path in args.learners:
            summ = path.with_suffix(".kshot.summary.csv")
            if summ.exists() and (pd.read_csv(path)["suite"] == name).any():
                df = pd.read_csv(summ)
                df = df[df["split"].isna() | (df["split"] == "test")] if "split" in df else df
                parts.append(df[[c for c in ("learner", "k", "method", "dyn_mse", "reward_mse", "dyn_mse_h10")
                                 if c in df]].assign(run=path.stem))
        kshot = pd.concat(parts, ignore_index=True)
        if len(kshot):
            wide = kshot.pivot_table(index=["run", "learner", "k"], columns="method", values="dyn_mse").reset_index()
            report(kshot, f"mujoco_{slug}_kshot",
                   f"{name}: few-shot one-step errors on the test tasks (normalized units; tidy)")
            with pd.option_context("display.width", 200, "display.precision", 3):
                print("\none-step dynamics error (normalized MSE) by learner, K and predictor:")
                print(wide.to_string(index=False))


if __name__ == "__main__":
    main()
