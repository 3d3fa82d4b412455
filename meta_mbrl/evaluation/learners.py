"""One table comparing meta-learners on the same data, seed, benchmark windows, oracles and planner.

For every learner: meta-train on the same buffer, run the few-shot model benchmark against the
same evaluation windows and oracles (:func:`~meta_mbrl.evaluation.kshot.prepare_kshot` once),
time ``adapt`` for one task and for 64 tasks batched, time the meta-train step, and score control
with the same planner and budget.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
import torch

from meta_mbrl.evaluation.kshot import kshot_benchmark, prepare_kshot
from meta_mbrl.evaluation.kshot_stats import guarded_gap, paired_ratio
from meta_mbrl.types import Transitions, as_tensor_transitions

__all__ = ["compare_learners", "adapt_latency_ms"]


def adapt_latency_ms(learner, context: Transitions, repeat: int = 30, rounds: int = 3) -> float:
    """Median over ``rounds`` of the mean milliseconds of ``learner.adapt(context)`` over ``repeat`` calls."""
    for _ in range(3):
        learner.adapt(context)
    means = []
    for _ in range(rounds):
        t = time.perf_counter()
        for _ in range(repeat):
            learner.adapt(context)
        means.append((time.perf_counter() - t) / repeat * 1e3)
    return float(np.median(means))


def compare_learners(
    names: Sequence[str],
    make: Callable[[str], object],
    train: Callable[[object], pd.DataFrame],
    suite,
    test_tasks: Sequence,
    buffer,
    *,
    control: Callable[[object], tuple[pd.DataFrame, dict]] | None = None,
    ks: Sequence[int] = (8, 32, 128),
    kshot_kwargs: dict | None = None,
    latency_k: int = 32,
    heldout: tuple | None = None,
    seed: int = 0,
    progress: bool = True,
    out=print,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Trains and scores every learner in ``names`` the same way.

    Args:
        names: learner names.
        make: ``make(name) -> learner`` on a fresh network (same seed for all).
        train: ``train(learner) -> log`` meta-trains it on the shared data (``meta_train`` with fixed settings).
        suite / test_tasks: held-out tasks of the few-shot benchmark.
        buffer: the training buffer (its transitions also give the latency contexts).
        control: ``control(learner) -> (df, info)``, the same planner and budget for all; None skips control.
        ks: context sizes of the few-shot benchmark.
        kshot_kwargs: more :func:`kshot_benchmark` / :func:`prepare_kshot` arguments (windows, oracle_steps, ...).
        latency_k: context size for the adapt latency.
        heldout: ``(name, suite, tasks)``: also run the few-shot benchmark on these tasks of another suite (same
            obs/act dims), with its own evaluation data and oracles; its rows carry ``split=name``.

    Returns:
        ``(table, kshot)``: one row per learner (a learner whose adapted model fails the few-shot benchmark, e.g.
        non-finite predictions, keeps its row with that ``status``), and the tidy few-shot rows of all learners (column ``split``:
        ``"test"`` for ``test_tasks``, the held-out name for ``heldout``). A learner whose
        meta-training diverges (``FloatingPointError``) keeps its row, with ``status`` saying at which step
        and every measurement empty; the others go on.
    """
    kk = dict(kshot_kwargs or {})
    prep_keys = ("policy", "eval_episodes", "oracle_transitions", "oracle_steps")
    data = held_data = None
    tr = as_tensor_transitions(buffer.transitions())
    rows, kshots = [], []
    for name in names:
        learner = make(name)
        t0 = time.perf_counter()
        try:
            log = train(learner)
        except FloatingPointError as e:  # one learner diverging must not cost the others their rows
            rows.append({"learner": name, "status": f"diverged: {str(e).split(';')[0]}"})
            out(f"{name}: {rows[-1]['status']}")
            continue
        train_s = time.perf_counter() - t0
        learner.eval()
        if data is None:  # normalizers are fit on the shared buffer, so the first learner's serve all
            data = prepare_kshot(learner.model, suite, test_tasks, seed=seed, progress=progress,
                                 **{k: kk[k] for k in prep_keys if k in kk})
        bench_kw = {k: v for k, v in kk.items() if k not in prep_keys}
        try:
            df, _ = kshot_benchmark(learner, ks=ks, seed=seed, progress=progress, data=data, **bench_kw)
        except (ValueError, FloatingPointError) as e:  # an adapted model that blows up must not cost the others their rows
            rows.append({"learner": name, "status": f"failed in the few-shot benchmark: {' '.join(str(e).split())[:300]}"})
            out(f"{name}: {rows[-1]['status']}")
            continue
        df.insert(0, "learner", name)
        df.insert(1, "split", "test")
        kshots.append(df)
        if heldout is not None:
            if held_data is None:
                held_data = prepare_kshot(learner.model, heldout[1], heldout[2], seed=seed, progress=progress,
                                          **{k: kk[k] for k in prep_keys if k in kk})
            try:
                hdf, _ = kshot_benchmark(learner, ks=ks, seed=seed, progress=progress, data=held_data, **bench_kw)
                hdf.insert(0, "learner", name)
                hdf.insert(1, "split", heldout[0])
                kshots.append(hdf)
                held_status = "ok"
            except (ValueError, FloatingPointError) as e:
                held_status = f"failed: {' '.join(str(e).split())[:300]}"
        p = next(learner.parameters())
        idx = torch.arange(latency_k * 64) % tr.reward.shape[0]  # wraps around a small buffer
        one = Transitions(*(x[idx[:latency_k]].to(p.device) for x in tr))
        many = Transitions(*(x[idx].reshape(64, latency_k, *x.shape[1:]).to(p.device) for x in tr))
        row = {"learner": name, "status": "ok", **({"heldout_status": held_status} if heldout is not None else {})}
        means = df.groupby(["k", "method"])[["dyn_mse", "reward_mse"]].mean()
        for k in ks:
            row[f"dyn_mse@{k}"] = means.loc[(k, "adapted"), "dyn_mse"]
            row[f"reward_mse@{k}"] = means.loc[(k, "adapted"), "reward_mse"]
        row["prior_dyn_mse"] = means.loc[(ks[0], "prior"), "dyn_mse"]
        row["prior_reward_mse"] = means.loc[(ks[0], "prior"), "reward_mse"]
        bases = [b for b in ("persistence", "context_mean", "ridge") if b in set(df["method"])]
        for metric in ("dyn_mse", "reward_mse"):
            for k in ks:
                for base in bases:
                    row[f"{base}_{metric}@{k}"] = means.loc[(k, base), metric]
            # the adapted model against the best naive baseline at each K, on the same windows (paired interval)
            for k in ks:
                if not bases:
                    break
                best = min(bases, key=lambda b: means.loc[(k, b), metric])
                r = paired_ratio(df[df["k"] == k], "adapted", best, metric, seed=seed).loc[k]
                short = metric.split("_")[0]
                row[f"best_baseline_{short}@{k}"] = best
                row[f"vs_best_{short}@{k}"], row[f"vs_best_{short}@{k}_lo"], row[f"vs_best_{short}@{k}_hi"] = (
                    float(r["ratio"]), float(r["ratio_lo"]), float(r["ratio_hi"]))
        for metric in ("dyn_mse", "reward_mse"):
            gap = guarded_gap(df, metric, seed=seed)
            for k in ks:
                short = f"gap_{metric.split('_')[0]}@{k}"
                row[short], row[f"{short}_lo"], row[f"{short}_hi"] = (float(gap.loc[k, c]) for c in ("gap", "gap_lo", "gap_hi"))
                row[f"{short}_excluded"] = int(gap.loc[k, "excluded"])
        with torch.no_grad():
            row["adapt_ms_1"] = adapt_latency_ms(learner, one)
            row["adapt_ms_64"] = adapt_latency_ms(learner, many, repeat=5)
        row["ratio_64_vs_1"] = row["adapt_ms_64"] / row["adapt_ms_1"]
        row["train_ms_per_step"] = float(log["sec_per_step"].mean() * 1e3) if len(log) else float("nan")
        row["train_s"] = train_s
        if control is not None:
            cdf, info = control(learner)
            if "mean_success_rate" in info:
                row["success"] = info["mean_success_rate"]
            else:
                row["eval_return"] = float(cdf["eval_return"].mean())
            row["control_env_steps"] = info["adapt_env_steps"] + info["eval_env_steps"]
        rows.append(row)
        out(f"{name}: " + ", ".join(f"{k}={v:.4g}" for k, v in row.items() if isinstance(v, float)))
    return pd.DataFrame(rows), (pd.concat(kshots, ignore_index=True) if kshots else pd.DataFrame())
