"""Figures of a run: the meta-training curve, few-shot errors against K, control per task or class.

Every ``plot_*`` function draws into the ``ax`` it is given (or a new pyplot figure, so notebooks show
it inline with whatever backend they chose) and returns the Axes. :func:`plot_run` writes a run
directory's figures as PNG files without pyplot (a bare ``matplotlib.figure.Figure`` needs no
backend, so it works headless and never changes the backend a caller chose).

matplotlib is optional (the ``notebooks`` and ``dev`` extras): it is imported when a figure is
drawn, and its absence is an :class:`OptionalDependencyError` saying which extra to install.

Example:
    >>> import pandas as pd
    >>> from matplotlib.figure import Figure
    >>> df = pd.DataFrame({"task": ["a", "b"] * 4, "method": ["prior"] * 4 + ["adapted"] * 4,
    ...                    "k": [8, 8, 32, 32] * 2, "dyn_mse": [0.4, 0.5, 0.4, 0.5, 0.3, 0.35, 0.1, 0.2]})
    >>> ax = plot_kshot(df, ax=Figure().subplots())
    >>> [line.get_label() for line in ax.get_lines()]
    ['prior', 'adapted']
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from meta_mbrl.io import atomic_path

__all__ = ["plot_training_curve", "plot_kshot", "plot_control", "plot_run", "plot_transfer", "write_transfer_png",
           "bootstrap_ci", "OptionalDependencyError"]

INSTALL_HINT = "install the notebooks extra: pip install 'meta-mbrl[notebooks]'"

# methods in the order they are drawn (others follow in the order they appear), with fixed styles
_METHOD_ORDER = ("prior", "adapted", "scratch", "oracle")
_METHOD_STYLE = {"adapted": ("C0", "-", "o"), "prior": ("C7", "--", "s"), "scratch": ("C1", "-.", "^"),
                 "oracle": ("k", ":", "D")}
_OTHER_COLORS = ("C2", "C4", "C5", "C6", "C8", "C9", "C3")
_LEARNER_COLORS = ("C0", "C3", "C2", "C4", "C5", "C6", "C8", "C9", "C1")
# methods whose rows depend on the learner (the others are fitted on the same data for every learner)
_PER_LEARNER = ("adapted", "prior")
_LOSSES = (("query_loss_pre", "query loss, prior (before adaptation)"),
           ("query_loss", "query loss, adapted"),
           ("support_loss_pre", "support loss, prior (before adaptation)"))


class OptionalDependencyError(ImportError):
    """A feature needs an optional package that is not installed; the message names it and the extra to install."""


def _require(module: str, what: str):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise OptionalDependencyError(f"{what}: {module.split('.')[0]} is not installed ({e}); {INSTALL_HINT}") from None


def _new_axes():
    plt = _require("matplotlib.pyplot", "plots")
    return plt.subplots(figsize=(6.4, 4.2))[1]


def _table(x, name: str) -> pd.DataFrame:
    """A DataFrame, or the CSV file at path ``x``."""
    if isinstance(x, pd.DataFrame):
        return x
    if isinstance(x, (str, os.PathLike)):
        path = Path(x)
        if not path.is_file():
            raise ValueError(f"{name}: expected a DataFrame or a CSV file, got {str(path)!r} (no such file)")
        try:
            return pd.read_csv(path)
        except (ValueError, UnicodeDecodeError) as e:
            raise ValueError(f"{name}: {str(path)!r} is not a readable CSV table ({str(e).strip().splitlines()[0]})") from None
    raise ValueError(f"{name}: expected a DataFrame or a path to a CSV file, got {type(x).__name__}")


def _need_columns(df: pd.DataFrame, name: str, columns: Sequence[str]) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(f"{name}: expected columns {list(columns)}, missing {missing}; got columns {list(df.columns)}")


# ---------------------------------------------------------------------------------------------- statistics
def bootstrap_ci(values, level: float = 0.95, n_boot: int = 2000, seed: int = 0) -> tuple[float, float, float]:
    """The mean of ``values`` and a percentile bootstrap confidence interval of it.

    Resamples the values with replacement ``n_boot`` times; the interval holds the central ``level``
    of the resampled means. NaNs are dropped. One value gives a zero-width interval.

    Args:
        values: 1-D numbers (e.g. one few-shot error per task).
        level: coverage of the interval, in (0, 1).
        n_boot: bootstrap resamples.
        seed: seed of the resampling.

    Returns:
        ``(mean, low, high)``.

    Example:
        >>> mean, low, high = bootstrap_ci([1.0, 2.0, 3.0, 4.0])
        >>> mean, bool(low <= mean <= high), bool(1.0 <= low and high <= 4.0)
        (2.5, True, True)
    """
    x = np.asarray(values, dtype=np.float64).ravel()
    x = x[~np.isnan(x)]
    if x.size == 0:
        raise ValueError("values: expected at least one number that is not NaN, got none")
    if not 0 < level < 1:
        raise ValueError(f"level: expected a number in (0, 1), got {level!r}")
    if isinstance(n_boot, bool) or not isinstance(n_boot, (int, np.integer)) or n_boot < 1:
        raise ValueError(f"n_boot: expected an int >= 1, got {n_boot!r}")
    mean = float(x.mean())
    if x.size == 1:
        return mean, mean, mean
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, x.size, size=(int(n_boot), x.size))].mean(axis=1)
    low, high = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return mean, float(min(low, mean)), float(max(high, mean))


def _wants_log(values) -> bool:
    """A log y-axis for positive values that span more than a factor of 10 (a narrower range reads better linear)."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    return bool(v.size) and bool((v > 0).all()) and v.max() > 10 * v.min()


# ---------------------------------------------------------------------------------------------- training curve
def plot_training_curve(log, ax=None):
    """Meta-training losses against the step: query loss before and after adaptation (and the support loss).

    Args:
        log: the training log, a DataFrame (as ``meta_train`` returns it) or the path of a ``train_log.csv``
            (read with :func:`meta_mbrl.training.read_log`).
        ax: the matplotlib Axes to draw into (default: a new pyplot figure).

    Returns:
        The Axes, with one line per loss column present (``query_loss_pre``, ``query_loss``,
        ``support_loss_pre``); the y-axis is logarithmic when every loss is positive and they span more
        than a factor of 10.

    Example:
        >>> import pandas as pd
        >>> from matplotlib.figure import Figure
        >>> log = pd.DataFrame({"step": [10, 20, 30], "query_loss": [0.5, 0.1, 0.02], "query_loss_pre": [0.9, 0.8, 0.8]})
        >>> ax = plot_training_curve(log, ax=Figure().subplots())
        >>> len(ax.get_lines()), ax.get_yscale()
        (2, 'log')
    """
    if isinstance(log, (str, os.PathLike)):
        from meta_mbrl.training import read_log

        df = read_log(log)
    elif isinstance(log, pd.DataFrame):
        df = log
    else:
        raise ValueError(f"log: expected a DataFrame or the path of a train_log.csv, got {type(log).__name__}")
    present = [(c, label) for c, label in _LOSSES if c in df.columns and df[c].notna().any()]
    if "step" not in df.columns or not present:
        raise ValueError(f"log: expected a 'step' column and at least one of {[c for c, _ in _LOSSES]} with values; "
                         f"got columns {list(df.columns)} ({len(df)} rows)")
    ax = _new_axes() if ax is None else ax
    values = []
    for col, label in present:
        d = df[["step", col]].dropna()
        ax.plot(d["step"], d[col], label=label, marker="o" if len(d) <= 30 else None, markersize=3)
        values.append(d[col].to_numpy())
    if _wants_log(np.concatenate(values)):
        ax.set_yscale("log")
    ax.set_xlabel("meta-training step")
    ax.set_ylabel("loss")
    ax.set_title("Meta-training losses")
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize="small")
    return ax


# ---------------------------------------------------------------------------------------------- few-shot
def _ordered_methods(present: Sequence[str]) -> list[str]:
    return [m for m in _METHOD_ORDER if m in present] + [m for m in present if m not in _METHOD_ORDER]


def plot_kshot(df, metric: str = "dyn_mse", ax=None, seed: int = 0, methods: Sequence[str] | None = None,
               split: str | None = None):
    """Few-shot error against the context size K, one line per method, with 95% bootstrap intervals.

    Each point is the mean of ``metric`` over the rows of one (method, K) — one row per task and evaluation
    window in a ``kshot.csv`` — and the band its 95% percentile bootstrap confidence interval over those rows
    (:func:`~meta_mbrl.evaluation.kshot_stats.kshot_table` gives the two-level interval over tasks, then windows).

    With a ``learner`` column (``meta-mbrl bench learners``' ``*.kshot.csv``), ``adapted`` is drawn once
    per learner (labelled with the learner's name) and ``prior`` too (``"<learner> prior"``); the other
    methods (``scratch``, ``oracle``, naive baselines) are fitted on the same data for every learner, so
    they are drawn once, from the first learner's rows.

    Args:
        df: a tidy few-shot table (columns ``method``, ``k``, ``metric``, usually ``task``), or its CSV path.
        metric: the column to plot (``dyn_mse``, ``reward_mse``, ``dyn_mse_h10``, ...).
        ax: the matplotlib Axes to draw into (default: a new pyplot figure).
        seed: seed of the bootstrap resampling.
        methods: the methods to draw (default: every method present, ``prior``, ``adapted``, ``scratch``,
            ``oracle`` first).
        split: with a ``split`` column (``bench learners --kshot-heldout-suite``), the split to draw (default:
            ``"test"``, else the first present).

    Returns:
        The Axes: x is K on a log2 scale, y the metric (log scale when every interval is positive and they
        span more than a factor of 10).

    Example:
        >>> import pandas as pd
        >>> from matplotlib.figure import Figure
        >>> df = pd.DataFrame({"task": ["a", "b"] * 4, "method": ["prior"] * 4 + ["adapted"] * 4,
        ...                    "k": [8, 8, 32, 32] * 2, "dyn_mse": [0.4, 0.5, 0.4, 0.5, 0.3, 0.35, 0.1, 0.2]})
        >>> ax = plot_kshot(df, ax=Figure().subplots(), methods=["adapted"])
        >>> [line.get_xdata().tolist() for line in ax.get_lines()], ax.get_xscale()
        ([[8, 32]], 'log')
    """
    df = _table(df, "df")
    if not isinstance(metric, str):
        raise ValueError(f"metric: expected a column name, got {metric!r}")
    _need_columns(df, "df", ["method", "k"])
    if "split" in df.columns:
        splits = list(dict.fromkeys(df["split"]))
        chosen_split = split if split is not None else ("test" if "test" in splits else splits[0])
        if chosen_split not in splits:
            raise ValueError(f"split: expected one of {splits}, got {split!r}")
        df = df[df["split"] == chosen_split]
    if metric not in df.columns:
        numeric = [c for c in df.columns if c not in ("method", "k", "task", "learner")
                   and pd.api.types.is_numeric_dtype(df[c])]
        raise ValueError(f"metric: expected a column of df such as {numeric}, got {metric!r}")
    df = df[df[metric].notna()]
    if df.empty:
        raise ValueError(f"df: expected rows with a value of {metric!r}, got none")
    present = _ordered_methods(list(dict.fromkeys(df["method"])))
    if methods is None:
        chosen = present
    else:
        chosen = [methods] if isinstance(methods, str) else list(methods)
        unknown = [m for m in chosen if m not in present]
        if unknown or not chosen:
            raise ValueError(f"methods: expected a non-empty subset of the methods in df {present}, got {chosen}")
    has_learner = "learner" in df.columns and df["learner"].notna().any()
    learners = list(dict.fromkeys(df["learner"].dropna())) if has_learner else []

    # (label, rows, color, linestyle, marker) of every line
    series = []
    other = iter(_OTHER_COLORS * 4)
    for m in chosen:
        rows = df[df["method"] == m]
        color, ls, marker = _METHOD_STYLE.get(m, (None, (0, (3, 1, 1, 1)), "v"))
        if has_learner and m in _PER_LEARNER:
            for j, lr in enumerate(learners):
                sel = rows[rows["learner"] == lr]
                if len(sel):
                    label = str(lr) if m == "adapted" else f"{lr} {m}"
                    series.append((label, sel, _LEARNER_COLORS[j % len(_LEARNER_COLORS)], ls, marker))
            continue
        if has_learner:
            rows = rows[rows["learner"] == next((lr for lr in learners if (rows["learner"] == lr).any()), None)]
        series.append((str(m), rows, color or next(other), ls, marker))

    ax = _new_axes() if ax is None else ax
    ks: set = set()
    counts: list[int] = []
    bounds = []
    alpha = 0.15 if len(series) <= 5 else 0.06
    for label, rows, color, ls, marker in series:
        stats = []
        for k, grp in sorted(rows.groupby("k"), key=lambda kv: kv[0]):
            mean, low, high = bootstrap_ci(grp[metric].to_numpy(), seed=seed)
            stats.append((k, mean, low, high))
            counts.append(len(grp))
        if not stats:
            continue
        k_, mean_, low_, high_ = (np.array(v) for v in zip(*stats))
        ks.update(int(k) for k in k_)
        bounds += [low_, high_]
        line, = ax.plot(k_, mean_, label=label, color=color, linestyle=ls, marker=marker, markersize=4)
        ax.fill_between(k_, low_, high_, color=line.get_color(), alpha=alpha, linewidth=0)
    ax.set_xscale("log", base=2)
    ticks = sorted(ks)
    ax.set_xticks(ticks)
    ax.set_xticklabels([str(k) for k in ticks])
    ax.xaxis.set_minor_locator(_require("matplotlib.ticker", "plots").NullLocator())
    if _wants_log(np.concatenate(bounds)):
        ax.set_yscale("log")
    ax.set_xlabel("K (context transitions)")
    ax.set_ylabel(metric)
    unit = "tasks" if "task" in df.columns else "rows"
    n = f"n = {min(counts)}" if min(counts) == max(counts) else f"n = {min(counts)}-{max(counts)}"
    ax.set_title(f"{metric} against K: mean and 95% bootstrap CI over {unit} ({n} per point)", fontsize="medium")
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize="small", ncol=2 if len(series) > 5 else 1)
    return ax


# ---------------------------------------------------------------------------------------------- control
def _short_task(task_id: str) -> str:
    """``ml10/test/door-close-v3/03`` -> ``door-close-v3/03``; ``point-mass/test/00`` -> ``00``."""
    parts = str(task_id).split("/")
    return "/".join(parts[2:]) if len(parts) >= 3 and parts[1] in ("train", "test") else str(task_id)


def plot_control(df, ax=None):
    """Control results as bars: ``success_rate`` per ``task_class`` (Meta-World), else ``eval_return`` per ``task``.

    Rows of the same class or task (e.g. several tables concatenated) are averaged.

    Args:
        df: a control table (``control.csv``, ``evaluations/control-NNN.csv``), or its CSV path.
        ax: the matplotlib Axes to draw into (default: a new pyplot figure).

    Returns:
        The Axes, with one bar per test class (or task).

    Example:
        >>> import pandas as pd
        >>> from matplotlib.figure import Figure
        >>> df = pd.DataFrame({"task_class": ["door-close-v3", "lever-pull-v3"], "success_rate": [1.0, 0.0]})
        >>> ax = plot_control(df, ax=Figure().subplots())
        >>> len(ax.patches), ax.get_ylabel()
        (2, 'success rate')
    """
    df = _table(df, "df")
    if {"task_class", "success_rate"} <= set(df.columns):
        key, value, ylabel, what = "task_class", "success_rate", "success rate", "success rate per test class"
    elif {"task", "eval_return"} <= set(df.columns):
        key, value, ylabel, what = "task", "eval_return", "evaluation return", "evaluation return per task"
    else:
        raise ValueError("df: expected a control table with columns task_class and success_rate (Meta-World) or task "
                         f"and eval_return; got columns {list(df.columns)}")
    table = df.groupby(key, sort=False)[value].mean()
    if table.empty:
        raise ValueError(f"df: expected at least one row of {value!r}, got none")
    ax = _new_axes() if ax is None else ax
    labels = [_short_task(x) for x in table.index] if key == "task" else [str(x) for x in table.index]
    ax.bar(range(len(table)), table.to_numpy(), color="C0" if key == "task_class" else "C2")
    ax.set_xticks(range(len(table)))
    ax.set_xticklabels(labels, rotation=30 if max(len(s) for s in labels) > 6 else 0, ha="right" if
                       max(len(s) for s in labels) > 6 else "center", fontsize="small")
    if key == "task_class":
        ax.set_ylim(0, 1.05)
    ax.axhline(0, color="k", linewidth=0.8)
    ax.set_ylabel(ylabel)
    title = f"Control: {what} (mean {table.mean():.3g})"
    if {"adapt_env_steps", "eval_env_steps"} <= set(df.columns):
        title += f"\n{int(df['adapt_env_steps'].iloc[0])} adaptation + {int(df['eval_env_steps'].iloc[0])} evaluation env steps"
    ax.set_title(title, fontsize="medium")
    ax.grid(True, axis="y", alpha=0.3)
    return ax


# ---------------------------------------------------------------------------------------------- a run directory
def _control_table(run: Path) -> Path | None:
    """``RUN/control.csv``, else the newest ``RUN/evaluations/control-NNN.csv``."""
    if (run / "control.csv").is_file():
        return run / "control.csv"
    found = sorted(p for p in (run / "evaluations").glob("control-*.csv") if p.is_file())
    return found[-1] if found else None


def plot_run(run_dir: str | os.PathLike, out_dir: str | os.PathLike | None = None) -> list[Path]:
    """Writes a run directory's figures as PNG files (100 dpi, each written atomically).

    ``training_curve.png`` from ``train_log.csv``; ``kshot_dyn_mse.png`` and ``kshot_reward_mse.png``
    from ``kshot.csv``; ``control.png`` from ``control.csv`` (else the newest
    ``evaluations/control-NNN.csv``). A figure whose input is missing is skipped. Uses no pyplot,
    so it works headless and leaves the caller's matplotlib backend alone.

    Args:
        run_dir: a run directory (``meta-mbrl train --run-dir``).
        out_dir: where to write (default: ``RUN/plots/``).

    Returns:
        The paths written.

    Raises:
        ValueError: ``run_dir`` is not a directory or holds none of the inputs; an input is not a valid table.
        OptionalDependencyError: matplotlib is not installed.

    Example:
        >>> import tempfile
        >>> run = Path(tempfile.mkdtemp())
        >>> _ = (run / "train_log.csv").write_text("step,query_loss,query_loss_pre\\n10,0.5,0.9\\n20,0.3,0.8\\n")
        >>> [p.name for p in plot_run(run)]
        ['training_curve.png']
    """
    run = Path(run_dir)
    if not run.is_dir():
        raise ValueError(f"run_dir: expected a run directory, got {str(run)!r} (not a directory)")
    figure = _require("matplotlib.figure", "plots")
    jobs = []
    if (run / "train_log.csv").is_file():
        jobs.append(("training_curve.png", run / "train_log.csv", lambda p, ax: plot_training_curve(p, ax=ax)))
    if (run / "kshot.csv").is_file():
        kshot = _table(run / "kshot.csv", "kshot.csv")
        for metric in ("dyn_mse", "reward_mse"):
            if metric in kshot.columns:
                jobs.append((f"kshot_{metric}.png", run / "kshot.csv",
                             lambda p, ax, m=metric, d=kshot: plot_kshot(d, metric=m, ax=ax)))
    control = _control_table(run)
    if control is not None:
        jobs.append(("control.png", control, lambda p, ax: plot_control(p, ax=ax)))
    if not jobs:
        raise ValueError(f"run_dir: expected a run directory holding at least one of train_log.csv, kshot.csv, "
                         f"control.csv or evaluations/control-NNN.csv; {str(run)!r} holds none")
    out = Path(out_dir) if out_dir is not None else run / "plots"
    written = []
    for name, src, draw in jobs:
        fig = figure.Figure(figsize=(6.4, 4.2), dpi=100)
        try:
            draw(src, fig.subplots())
        except ValueError as e:
            raise ValueError(f"{src}: {e}") from None
        fig.tight_layout()
        with atomic_path(out / name) as tmp:
            fig.savefig(tmp, format="png", dpi=100)
        written.append(out / name)
    return written


_ARM_STYLE = {"transfer": ("C0", "-", "o"), "scratch": ("C1", "-.", "^"), "adapt": ("C2", ":", "s")}
_METRIC_LABEL = {"dyn_mse": "1-step Δobs MSE (normalized)", "reward_mse": "1-step reward MSE",
                 "dyn_mse_h10": "10-step open-loop obs MSE (normalized)", "success": "control success rate",
                 "return": "control mean return"}


def plot_transfer(curves, metric: str = "dyn_mse", ax=None, arms: Sequence[str] | None = None):
    """A transfer learning curve: ``metric`` against the amount of target data, one line per arm.

    The x axis is ``symlog`` (amounts are geometric and start at 0, the jump-start).

    Args:
        curves: a :func:`~meta_mbrl.evaluation.transfer.transfer_curves` table or its CSV: columns
            ``amount, arm, metric, value``.
        metric: which metric (``dyn_mse``, ``reward_mse``, ``dyn_mse_h10``, ``success``, ``return``).
        ax: where to draw (default: a new pyplot figure).
        arms: which arms (default: all present, transfer first).

    Example:
        >>> from matplotlib.figure import Figure
        >>> curves = pd.DataFrame({"amount": [0, 10, 0, 10], "arm": ["transfer"] * 2 + ["scratch"] * 2,
        ...                        "metric": "dyn_mse", "value": [0.5, 0.1, 2.0, 0.3]})
        >>> [line.get_label() for line in plot_transfer(curves, ax=Figure().subplots()).get_lines()]
        ['transfer', 'scratch']
    """
    df = _table(curves, "curves")
    _need_columns(df, "curves", ["amount", "arm", "metric", "value"])
    df = df[df["metric"] == metric]
    if df.empty:
        raise ValueError(f"metric: expected one of {sorted(_table(curves, 'curves')['metric'].unique())}, got {metric!r}")
    present = list(dict.fromkeys(df["arm"]))
    order = [a for a in _ARM_STYLE if a in present] + [a for a in present if a not in _ARM_STYLE]
    ax = ax if ax is not None else _new_axes()
    for arm in (arms or order):
        part = df[df["arm"] == arm].groupby("amount")["value"].mean()
        color, ls, marker = _ARM_STYLE.get(arm, ("C3", "-", "D"))
        ax.plot(part.index, part.values, color=color, linestyle=ls, marker=marker, label=arm)
    ax.set_xscale("symlog", linthresh=max(1.0, float(df.loc[df["amount"] > 0, "amount"].min()) if (df["amount"] > 0).any() else 1.0))
    if metric in ("dyn_mse", "reward_mse", "dyn_mse_h10") and _wants_log(df["value"]):
        ax.set_yscale("log")
    ax.set_xlabel("target transitions per task")
    ax.set_ylabel(_METRIC_LABEL.get(metric, metric))
    ax.grid(True, alpha=0.3)
    ax.legend()
    return ax


def write_transfer_png(curves, path: str | os.PathLike, title: str = "") -> Path:
    """Writes the transfer curves of model error (Δobs, reward) and control (success, or return where the suite
    reports no success) side by side as one PNG, atomically; the panels present in ``curves`` only."""
    figure = _require("matplotlib.figure", "plots")
    df = _table(curves, "curves")
    metrics = [m for m in ("dyn_mse", "reward_mse") if m in set(df["metric"])]
    control = df[df["metric"] == "success"]
    if len(control) and control["value"].notna().any():
        metrics.append("success")
    elif "return" in set(df["metric"]):
        metrics.append("return")
    fig = figure.Figure(figsize=(4.2 * len(metrics), 3.8), dpi=100)
    axes = np.atleast_1d(fig.subplots(1, len(metrics)))
    for ax, m in zip(axes, metrics):
        plot_transfer(df, m, ax=ax)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    return Path(path)
