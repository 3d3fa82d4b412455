"""Summaries of the few-shot benchmark's tidy rows: means with intervals, and the guarded gap closed.

Intervals come from a two-level percentile bootstrap: resample the tasks, then the evaluation windows
within each resampled task, so they reflect both how many tasks and how many windows were scored.
Errors on transitions that move an object (``*_moved``) are pooled over those transitions: windows
weigh by how many they hold.

The fraction of the prior-to-oracle gap closed, ``(prior - adapted) / (prior - oracle)``, only means
something on tasks where the oracle is clearly better than the prior: elsewhere the denominator is
near zero or negative, and an adapted model that improves on the prior by 12% can read as -0.63.
:func:`guarded_gap` averages it over the tasks where the oracle's error is at most ``1 - min_improvement``
times the prior's, and lists the others apart.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

__all__ = ["kshot_table", "guarded_gap", "paired_ratio", "format_ci", "METRICS", "MIN_IMPROVEMENT"]

METRICS = ("dyn_mse", "reward_mse", "dyn_mse_h10", "dyn_mse_moved", "reward_mse_moved", "dyn_mse_still",
           "reward_mse_still")
"""The metric columns a table summarizes, where present."""

MIN_IMPROVEMENT = 0.05
"""The oracle must beat the prior by this fraction on a task for the task to enter the gap closed."""


def _grid(df: pd.DataFrame, metric: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Numerators and weights ``(T, W)`` of ``metric`` (weights: 1, or ``n_moved`` / still counts), and the tasks.

    Windows missing for a task (fewer candidates) have weight 0.
    """
    pooled = metric.endswith(("_moved", "_still")) and {"n_moved", "eval_length"} <= set(df.columns)
    tasks = list(dict.fromkeys(df["task"]))
    win = int(df["window"].max()) + 1 if "window" in df.columns else 1
    num = np.zeros((len(tasks), win))
    wts = np.zeros((len(tasks), win))
    ti = pd.Index(tasks).get_indexer(df["task"])
    wi = df["window"].to_numpy(int) if "window" in df.columns else np.zeros(len(df), int)
    vals = df[metric].to_numpy(float)
    if pooled:
        n = df["n_moved"].to_numpy(float)
        w = n if metric.endswith("_moved") else df["eval_length"].to_numpy(float) - n
    else:
        w = np.ones(len(df))
    ok = ~np.isnan(vals)
    w = np.where(ok, w, 0.0)
    num[ti, wi] = np.where(ok, vals, 0.0) * w
    wts[ti, wi] = w
    return num, wts, tasks


def _boot_index(shape: tuple[int, int], valid: np.ndarray, n_boot: int, rng) -> tuple[np.ndarray, np.ndarray]:
    """Task and window indices of ``n_boot`` two-level resamples; windows drawn among each task's valid ones."""
    t, w = shape
    tidx = rng.integers(0, t, size=(n_boot, t))
    counts = valid.sum(1)                                        # valid windows per task
    order = np.argsort(~valid, axis=1, kind="stable")             # valid windows first, per task
    pick = np.floor(rng.random((n_boot, t, w)) * np.maximum(counts[tidx], 1)[..., None]).astype(int)
    widx = order[tidx[..., None], pick]
    return tidx, widx


def _ratio_ci(num: np.ndarray, wts: np.ndarray, n_boot: int, level: float, rng) -> tuple[float, float, float]:
    total = wts.sum()
    if total == 0:
        return float("nan"), float("nan"), float("nan")
    mean = float(num.sum() / total)
    tidx, widx = _boot_index(num.shape, np.ones_like(wts, bool), n_boot, rng)
    rn = num[tidx[..., None], widx].sum((1, 2))
    rw = wts[tidx[..., None], widx].sum((1, 2))
    reps = rn[rw > 0] / rw[rw > 0]
    if reps.size == 0:
        return mean, mean, mean
    lo, hi = np.quantile(reps, [(1 - level) / 2, (1 + level) / 2])
    return mean, float(lo), float(hi)


def kshot_table(df: pd.DataFrame, metrics: Sequence[str] | None = None, level: float = 0.95, n_boot: int = 1000,
                seed: int = 0, eval_length: int | None = None) -> pd.DataFrame:
    """Mean and two-level bootstrap interval of each metric, per K and method.

    Args:
        df: tidy rows of :func:`~meta_mbrl.evaluation.kshot.kshot_benchmark` (one per task, window, method, K).
        metrics: columns to summarize (default: those of :data:`METRICS` present).
        level: interval coverage.
        n_boot: bootstrap resamples.
        seed: seed of the resampling.
        eval_length: transitions per window, where ``df`` has no ``eval_length`` column (``*_still`` pooling).

    Returns:
        One row per ``(k, method)``, columns ``<metric>``, ``<metric>_lo``, ``<metric>_hi`` and, where
        objects exist, ``moved_frac`` (the share of evaluation transitions that move an object).

    Example:
        >>> df = pd.DataFrame({"task": ["a"] * 4 + ["b"] * 4, "window": [0, 1] * 4, "k": 8,
        ...                    "method": (["prior"] * 2 + ["adapted"] * 2) * 2, "dyn_mse": [2., 2., 1., 1.] * 2})
        >>> t = kshot_table(df, ["dyn_mse"])
        >>> t.loc[(8, "adapted"), ["dyn_mse", "dyn_mse_lo", "dyn_mse_hi"]].tolist()
        [1.0, 1.0, 1.0]
    """
    if eval_length is not None:
        df = df.assign(eval_length=eval_length)
    metrics = [m for m in (metrics or METRICS) if m in df.columns]
    if not metrics:
        raise ValueError(f"metrics: expected some of {list(METRICS)} in df's columns {list(df.columns)}")
    rows = []
    for (k, method), part in df.groupby(["k", "method"], sort=True):
        row = {"k": k, "method": method}
        for i, metric in enumerate(metrics):
            num, wts, _ = _grid(part, metric)
            rng = np.random.default_rng([seed, i])
            row[metric], row[f"{metric}_lo"], row[f"{metric}_hi"] = _ratio_ci(num, wts, n_boot, level, rng)
        if "n_moved" in part.columns and "eval_length" in part.columns:
            row["moved_frac"] = float(part["n_moved"].sum() / (len(part) * part["eval_length"].iloc[0]))
        rows.append(row)
    return pd.DataFrame(rows).set_index(["k", "method"])


def guarded_gap(df: pd.DataFrame, metric: str = "dyn_mse", method: str = "adapted",
                min_improvement: float = MIN_IMPROVEMENT, level: float = 0.95, n_boot: int = 1000,
                seed: int = 0) -> pd.DataFrame:
    """The fraction of the prior-to-oracle gap ``method`` closes, over the tasks where the oracle is clearly better.

    Per task and K, on the task's mean over windows: ``(prior - method) / (prior - oracle)``, kept only
    where ``oracle <= (1 - min_improvement) * prior``; its mean over the kept tasks, with a two-level
    bootstrap interval (tasks, then windows, the same windows for the three methods).

    Returns:
        One row per K: ``gap``, ``gap_lo``, ``gap_hi``, ``tasks`` (kept), ``excluded`` (how many tasks were
        not), ``excluded_tasks`` (their ids with the oracle's relative improvement, ``;``-separated).

    Example:
        >>> rows = [{"task": t, "window": 0, "k": 8, "method": m, "dyn_mse": v}
        ...         for t, vals in {"good": (1.0, 0.5, 0.0), "bad": (1.0, 0.88, 1.2)}.items()
        ...         for m, v in zip(("prior", "adapted", "oracle"), vals)]
        >>> g = guarded_gap(pd.DataFrame(rows))       # on "bad" the oracle is worse than the prior
        >>> float(g.loc[8, "gap"]), int(g.loc[8, "tasks"]), g.loc[8, "excluded_tasks"]
        (0.5, 1, 'bad (oracle error +20% vs prior)')
    """
    if not 0 <= min_improvement < 1:
        raise ValueError(f"min_improvement: expected a number in [0, 1), got {min_improvement!r}")
    need = {"prior", "oracle", method}
    if not need <= set(df["method"]):
        raise ValueError(f"df: expected rows of methods {sorted(need)}, got {sorted(set(df['method']))}")
    rows = []
    for k, part in df.groupby("k", sort=True):
        grids = {m: _grid(part[part["method"] == m], metric) for m in need}
        tasks = grids["prior"][2]
        mean = {m: (g[0].sum(1) / np.maximum(g[1].sum(1), 1e-12)) for m, g in grids.items()}
        keep = mean["oracle"] <= (1 - min_improvement) * mean["prior"]
        excluded = [f"{t} (oracle error {mean['oracle'][i] / mean['prior'][i] - 1:+.0%} vs prior)"
                    for i, t in enumerate(tasks) if not keep[i]]
        row = {"k": k, "tasks": int(keep.sum()), "excluded": int((~keep).sum()), "excluded_tasks": "; ".join(excluded)}
        if keep.any():
            gap = (mean["prior"] - mean[method]) / (mean["prior"] - mean["oracle"])
            row["gap"] = float(gap[keep].mean())
            rng = np.random.default_rng(seed)
            kept = np.flatnonzero(keep)
            sub = {m: (g[0][kept], g[1][kept]) for m, g in grids.items()}
            tidx, widx = _boot_index(sub["prior"][1].shape, sub["prior"][1] > 0, n_boot, rng)
            rep = {m: num[tidx[..., None], widx].sum(-1) / np.maximum(w[tidx[..., None], widx].sum(-1), 1e-12)
                   for m, (num, w) in sub.items()}
            reps = ((rep["prior"] - rep[method]) / (rep["prior"] - rep["oracle"])).mean(1)
            row["gap_lo"], row["gap_hi"] = (float(x) for x in np.quantile(reps, [(1 - level) / 2, (1 + level) / 2]))
        else:
            row["gap"] = row["gap_lo"] = row["gap_hi"] = float("nan")
        rows.append(row)
    cols = ["k", "gap", "gap_lo", "gap_hi", "tasks", "excluded", "excluded_tasks"]
    return pd.DataFrame(rows)[cols].set_index("k")


def paired_ratio(df: pd.DataFrame, method: str, against: str, metric: str = "dyn_mse", level: float = 0.95,
                 n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """``method``'s mean error over ``against``'s on the very same windows, with a paired two-level interval.

    Separate intervals of two means overlap whenever the tasks' errors differ by orders of magnitude, even
    when one method is better on every task; resampling the same tasks and windows for both methods measures
    the difference itself. A ratio whose interval lies below 1 says ``method`` is better.

    Returns:
        One row per K: ``ratio``, ``ratio_lo``, ``ratio_hi``.

    Example:
        >>> rows = [{"task": t, "window": w, "k": 8, "method": m, "dyn_mse": v * (1 if m == "a" else 2)}
        ...         for t, v in (("x", 1.0), ("y", 100.0)) for w in range(3) for m in ("a", "b")]
        >>> r = paired_ratio(pd.DataFrame(rows), "a", "b")
        >>> [float(r.loc[8, c]) for c in ("ratio", "ratio_lo", "ratio_hi")]
        [0.5, 0.5, 0.5]
    """
    for m in (method, against):
        if m not in set(df["method"]):
            raise ValueError(f"method: expected a method of df {sorted(set(df['method']))}, got {m!r}")
    rows = []
    for k, part in df.groupby("k", sort=True):
        (na, wa, _), (nb, wb, _) = (_grid(part[part["method"] == m], metric) for m in (method, against))
        valid = (wa > 0) & (wb > 0)
        na, nb, wa, wb = (np.where(valid, x, 0.0) for x in (na, nb, wa, wb))
        ratio = float((na.sum() / wa.sum()) / (nb.sum() / wb.sum())) if wa.sum() and nb.sum() else float("nan")
        rng = np.random.default_rng(seed)
        tidx, widx = _boot_index(na.shape, valid, n_boot, rng)
        pick = lambda x: x[tidx[..., None], widx].sum((1, 2))  # noqa: E731
        ok = (pick(wa) > 0) & (pick(nb) > 0)
        reps = (pick(na) / np.maximum(pick(wa), 1e-300)) / (pick(nb) / np.maximum(pick(wb), 1e-300))
        lo, hi = np.quantile(reps[ok], [(1 - level) / 2, (1 + level) / 2]) if ok.any() else (np.nan, np.nan)
        rows.append({"k": k, "ratio": ratio, "ratio_lo": float(lo), "ratio_hi": float(hi)})
    return pd.DataFrame(rows).set_index("k")


def format_ci(table: pd.DataFrame, metrics: Sequence[str], digits: int = 4) -> pd.DataFrame:
    """``mean [lo, hi]`` strings of ``metrics`` from :func:`kshot_table`, for printing.

    Example:
        >>> t = pd.DataFrame({"m": [1.0], "m_lo": [0.5], "m_hi": [1.5]})
        >>> format_ci(t, ["m"], digits=2)["m"].tolist()
        ['1 [0.5, 1.5]']
    """
    out = pd.DataFrame(index=table.index)
    for m in metrics:
        if m in table.columns:
            out[m] = [f"{v:.{digits}g} [{lo:.{digits}g}, {hi:.{digits}g}]" if not np.isnan(v) else "-"
                      for v, lo, hi in zip(table[m], table[f"{m}_lo"], table[f"{m}_hi"])]
    return out
