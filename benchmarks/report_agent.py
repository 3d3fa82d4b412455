"""Control results of value-guided agent runs: per-class success beside today's flat agent, and learning curves.

Reads run directories written by ``meta-mbrl train ... --agent-env-steps N`` (``control.csv``: the value-guided
agent; ``control_flat.csv``: today's flat planner on the same prior; any other ``control*.csv``, e.g. the
value agent in policy mode; ``agent_log.csv``: one row per training round)
and writes

- ``benchmarks/results/<name>.csv``: one row per run, agent and test class: success rate (Meta-World's own
  ``metalearning_evaluation``), mean return, env steps of training (all of them: meta-training data and the
  agent's), the data track (``rl`` / ``demo``), the test protocol, and the training's wall time;
- ``benchmarks/results/<name>_curves.csv`` and ``.png``: success and return on test goals against env steps.

    python benchmarks/report_agent.py RUN_DIR [RUN_DIR ...] [--name agent_control]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd
from _common import RESULTS, report


def _run_rows(run: Path) -> list[pd.DataFrame]:
    rows = []
    log = pd.read_csv(run / "agent_log.csv") if (run / "agent_log.csv").exists() else None
    wall = float(log["seconds"].sum()) if log is not None else float("nan")
    for path in sorted(run.glob("control*.csv")):
        name = path.name
        agent = "flat planner" if name == "control_flat.csv" else None
        df = pd.read_csv(path)
        keep = [c for c in ("task_class", "task", "success_rate", "eval_return", "agent", "planner", "plan_horizon",
                            "plan_population", "plan_iterations", "policy_samples", "adaptation_episodes",
                            "evaluation_episodes", "num_evals", "meta_batch_size", "mean_return", "train_env_steps",
                            "agent_env_steps", "meta_train_env_steps", "track", "seed") if c in df]
        df = df[keep].copy()
        if agent is not None and "agent" not in df:
            df["agent"] = agent
        df.insert(0, "run", run.name)
        df.insert(1, "file", name)
        df["agent_train_seconds"] = wall
        rows.append(df)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--name", default="agent_control")
    args = ap.parse_args()
    tables, curves = [], []
    for run in args.runs:
        tables += _run_rows(run)
        if (run / "agent_log.csv").exists():
            log = pd.read_csv(run / "agent_log.csv")
            cols = [c for c in ("round", "env_steps", "collect_return", "collect_success", "eval_success", "eval_return",
                                "q_mean", "alpha", "seconds") if c in log]
            curves.append(log[cols].assign(run=run.name))
    if not tables:
        raise SystemExit("runs: none of them holds control.csv; train with --agent-env-steps first")
    table = pd.concat(tables, ignore_index=True)
    report(table, args.name, "Control on held-out test goals (metaworld.evaluation): value-guided agent vs flat planner")
    summary = table.groupby(["run", "file", "agent"], sort=False).agg(
        success=("success_rate", "mean"), mean_return=("mean_return", "first"), env_steps=("train_env_steps", "first"),
        track=("track", "first"), train_seconds=("agent_train_seconds", "first")).reset_index()
    report(summary, f"{args.name}_summary", "Mean success per run and agent")
    if curves:
        curve = pd.concat(curves, ignore_index=True)
        path = RESULTS / f"{args.name}_curves.csv"
        curve.to_csv(path, index=False)
        print(f"wrote {path}")
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
        for i, (run, g) in enumerate(curve.groupby("run", sort=False)):
            color = f"C{i}"
            ev = g.dropna(subset=["eval_success"]) if "eval_success" in g else g.iloc[:0]
            axes[0].plot(ev["env_steps"], ev["eval_success"], marker="o", color=color, label=f"{run} (test goals)")
            if "collect_success" in g and g["collect_success"].notna().any():
                axes[0].plot(g["env_steps"], g["collect_success"], ls=":", color=color, label=f"{run} (training episodes)")
            axes[1].plot(g["env_steps"], g["collect_return"], color=color, label=run)
        axes[0].set(xlabel="env steps", ylabel="success rate", ylim=(-0.05, 1.05), title="success")
        axes[1].set(xlabel="env steps", ylabel="episode return (training goals)", title="return")
        axes[0].legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(RESULTS / f"{args.name}_curves.png", dpi=90)
        print(f"wrote {RESULTS / f'{args.name}_curves.png'}")


if __name__ == "__main__":
    main()
