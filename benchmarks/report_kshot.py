"""Markdown tables of a `bench learners` run's few-shot results: every learner's adapted model beside the naive
baselines, the prior and the oracle, per K, with 95% two-level bootstrap intervals; and the guarded gap closed.

    python benchmarks/report_kshot.py benchmarks/results/learners_ml10.csv [--split test] [--metrics dyn_mse reward_mse]

Reads `<stem>.kshot.summary.csv` (and `<stem>.csv` for the gaps) written by `meta-mbrl bench learners`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

SHARED = ("persistence", "context_mean", "ridge", "scratch", "oracle")


def cell(row, metric: str) -> str:
    return f"{row[metric]:.3g} [{row[metric + '_lo']:.3g}, {row[metric + '_hi']:.3g}]"


def table(summary: pd.DataFrame, metric: str, split: str | None) -> str:
    s = summary if split is None or "split" not in summary else summary[summary["split"] == split]
    ks = sorted(s["k"].unique())
    lines = [f"| {metric} | " + " | ".join(f"K={k}" for k in ks) + " |", "|---" * (len(ks) + 1) + "|"]
    learners = list(dict.fromkeys(s["learner"]))
    for name in learners:
        rows = s[(s["learner"] == name) & (s["method"] == "adapted")].set_index("k")
        lines.append(f"| {name} (adapted) | " + " | ".join(cell(rows.loc[k], metric) for k in ks) + " |")
    for name in learners:
        rows = s[(s["learner"] == name) & (s["method"] == "prior")].set_index("k")
        lines.append(f"| {name} (prior) | " + " | ".join(cell(rows.loc[k], metric) for k in ks) + " |")
    first = s[s["learner"] == learners[0]]
    for method in SHARED:
        rows = first[first["method"] == method].set_index("k")
        if len(rows):
            lines.append(f"| *{method}* | " + " | ".join(cell(rows.loc[k], metric) for k in ks) + " |")
    return "\n".join(lines)


def compact(summary: pd.DataFrame, metrics, split: str | None) -> str:
    """Means only, every learner's adapted model and the shared methods, several metrics side by side."""
    s = summary if split is None or "split" not in summary else summary[summary["split"] == split]
    ks = sorted(s["k"].unique())
    head = " | ".join(f"{m} K={k}" for m in metrics for k in ks)
    lines = [f"| method | {head} |", "|---" * (len(ks) * len(metrics) + 1) + "|"]
    learners = list(dict.fromkeys(s["learner"]))
    first = s[s["learner"] == learners[0]]
    rows = [(f"{n} (adapted)", s[(s["learner"] == n) & (s["method"] == "adapted")]) for n in learners]
    rows += [(f"*{m}*", first[first["method"] == m]) for m in SHARED if (first["method"] == m).any()]
    for label, part in rows:
        part = part.set_index("k")
        lines.append(f"| {label} | " + " | ".join(f"{part.loc[k, m]:.3g}" for m in metrics for k in ks) + " |")
    return "\n".join(lines)


def gaps(learners: pd.DataFrame) -> str:
    cols = [c for c in learners.columns if c.startswith("gap_") and not c.endswith(("_lo", "_hi", "_excluded"))]
    lines = ["| learner | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for _, r in learners[learners["status"] == "ok"].iterrows():
        lines.append(f"| {r['learner']} | " + " | ".join(
            f"{r[c]:.2f} [{r[c + '_lo']:.2f}, {r[c + '_hi']:.2f}] ({int(r[c + '_excluded'])} excl.)" for c in cols) + " |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("csv", help="the learners CSV of `meta-mbrl bench learners` (its .kshot.summary.csv sits beside it)")
    ap.add_argument("--split", default=None, help="split to report: test, heldout (the other one), or its name")
    ap.add_argument("--metrics", nargs="+", default=["dyn_mse", "reward_mse", "dyn_mse_moved", "reward_mse_moved"])
    ap.add_argument("--compact", action="store_true", help="one table of means, the metrics side by side")
    args = ap.parse_args()
    path = Path(args.csv)
    summary = pd.read_csv(path.with_suffix(".kshot.summary.csv"))
    if args.split not in (None, "test") and args.split not in set(summary.get("split", [])):
        held = [x for x in dict.fromkeys(summary.get("split", [])) if x != "test"]
        args.split = held[0] if args.split == "heldout" and held else args.split
    if args.compact:
        print(compact(summary, args.metrics, args.split))
        return
    for m in args.metrics:
        print(table(summary, m, args.split), end="\n\n")
    if args.split in (None, "test"):
        print(gaps(pd.read_csv(path)))


if __name__ == "__main__":
    main()
