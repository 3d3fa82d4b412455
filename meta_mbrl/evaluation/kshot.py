"""The few-shot model benchmark: prior vs adapted vs scratch vs oracle on held-out tasks.

For each test task, evaluation points are drawn in trajectories collected by ``policy``. At each
point the context is the ``K`` transitions just before it (one trajectory), and metrics are taken
on the transitions that follow:

- ``dyn_mse``: 1-step MSE of the observation change, in units of the prior's Δobs normalizer.
- ``reward_mse``: 1-step reward MSE (raw reward units).
- ``dyn_mse_h10``: open-loop error of the observation over the next 10 steps (the model is fed its
  own predictions and the recorded actions), in units of the prior's observation normalizer.

Methods: ``prior`` (unadapted), ``adapted`` (``learner.adapt(context)``), ``scratch`` (a fresh
model fit on the K context transitions only, full-batch Adam, minibatches of 128 for larger K) and ``oracle`` (a fresh model fit on at least
``oracle_transitions`` transitions of that very task, disjoint from the evaluation data).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from meta_mbrl.adaptation import AdaptedModel
from meta_mbrl.data.rollout import collect
from meta_mbrl.types import Transitions, as_tensor_transitions

__all__ = ["kshot_benchmark", "prepare_kshot", "KShotData", "reference_network", "summarize_kshot", "fit_models",
           "save_kshot_data", "load_kshot_data"]


SCRATCH_BATCH = 128
"""The ``scratch`` model trains full-batch on contexts up to this size, on minibatches of it beyond."""


def _fresh_params(model, num: int, seed: int) -> dict[str, torch.Tensor]:
    """``num`` independently initialised parameter sets of ``model``'s architecture, stacked."""
    gen_state = torch.get_rng_state()
    torch.manual_seed(seed)
    sets = [copy.deepcopy(model).apply(lambda m: m.reset_parameters() if hasattr(m, "reset_parameters") else None)
            for _ in range(num)]
    torch.set_rng_state(gen_state)
    return {k: torch.stack([s.param_dict()[k].detach() for s in sets]) for k in model.param_dict()}


def fit_models(model, data: Sequence[Transitions], steps: int, batch_size: int | None, lr: float = 1e-3,
               seed: int = 0, progress: bool = False, desc: str = "fit", init: dict[str, torch.Tensor] | None = None,
               task_vector: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """Fits one model per dataset, all at once as task-batched parameters (no meta-learning).

    Args:
        model: architecture and normalizers to use (its parameters are not touched).
        data: one Transitions ``(N_t, ·)`` per model.
        steps: Adam steps.
        batch_size: minibatch size per model (None: full batch, sizes must match).
        progress: show a progress bar titled ``desc``.
        init: starting parameters, task-batched with leading dim ``len(data)`` (copied, never modified); None:
            freshly initialised ones (seeded with ``seed``), i.e. a model trained from scratch.
        task_vector: ``(len(data), Z)``: the fixed task vector a context-conditioned network is fit at.

    Returns:
        Task-batched parameters with leading dim ``len(data)``.
    """
    start = _fresh_params(model, len(data), seed) if init is None else init
    params = {k: v.detach().clone().requires_grad_() for k, v in start.items()}
    opt = torch.optim.Adam(params.values(), lr=lr)
    gen = torch.Generator().manual_seed(seed)
    for _ in tqdm(range(steps), desc=desc, disable=not progress, leave=False):
        if batch_size is None:
            batch = Transitions(*(torch.stack(f) for f in zip(*data)))
        else:
            idx = [torch.randint(d.reward.shape[0], (batch_size,), generator=gen) for d in data]
            batch = Transitions(*(torch.stack([getattr(d, f)[i] for d, i in zip(data, idx)]) for f in Transitions._fields))
        loss = (model.task_loss(params, batch) if task_vector is None else model.task_loss(params, batch, task_vector)).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return {k: v.detach() for k, v in params.items()}


def _metrics(model, norm, evals: Transitions, horizon: int, moved: torch.Tensor | None) -> dict[str, np.ndarray]:
    """Per-window metrics of a DynamicsModel batched over ``W`` windows on evaluation segments ``(W, L, ·)``.

    ``norm`` is the network whose normalizers set the units (the learner's prior network). ``moved``
    ``(W, L)`` marks the transitions that move an object (None: the suite has no objects); the
    ``*_moved`` / ``*_still`` columns average over those transitions only (NaN where a window has none),
    ``n_moved`` counts them.
    """
    with torch.no_grad():
        pred = model.predict(evals.obs, evals.act)
        d_std, o_std = norm.delta_norm.std, norm.obs_norm.std
        dyn = (((pred.next_obs - evals.next_obs) / d_std) ** 2).mean(-1)      # (W, L)
        rew = (pred.reward - evals.reward) ** 2                                  # (W, L)
        obs = evals.obs[:, 0]
        errs = []
        for h in range(horizon):
            obs = model.predict(obs.unsqueeze(1), evals.act[:, h:h + 1]).next_obs[:, 0]
            errs.append((((obs - evals.next_obs[:, h]) / o_std) ** 2).mean(-1))
        h10 = torch.stack(errs, -1).mean(-1)
    out = {"dyn_mse": dyn.mean(-1), "reward_mse": rew.mean(-1), "dyn_mse_h10": h10}
    if moved is not None:
        for name, mask in (("moved", moved), ("still", ~moved)):
            n = mask.sum(-1)
            nan = torch.full_like(n, float("nan"), dtype=dyn.dtype)
            out[f"dyn_mse_{name}"] = torch.where(n > 0, (dyn * mask).sum(-1) / n.clamp_min(1), nan)
            out[f"reward_mse_{name}"] = torch.where(n > 0, (rew * mask).sum(-1) / n.clamp_min(1), nan)
        out["n_moved"] = moved.sum(-1)
    return {k: v.detach().double().cpu().numpy() for k, v in out.items()}


def _stream(trajs: list[Transitions]) -> tuple[Transitions, np.ndarray]:
    """A task's trajectories end to end, and the id of the trajectory each transition belongs to."""
    stream = Transitions(*(np.concatenate([getattr(tr, f) for tr in trajs]) for f in Transitions._fields))
    owner = np.concatenate([np.full(tr.reward.shape[0], i) for i, tr in enumerate(trajs)])
    return stream, owner


def _windows(owner: np.ndarray, kmax: int, length: int, num: int, rng) -> np.ndarray:
    """Evaluation starts ``s`` in a task's stream: ``kmax`` transitions before it (a context may span earlier
    episodes of the task, as Meta-World's adaptation episodes do), ``length`` after it within one episode."""
    n = owner.shape[0]
    cands = np.array([s for s in range(kmax, n - length + 1) if owner[s] == owner[s + length - 1]], dtype=np.int64)
    if cands.size == 0:
        raise ValueError(f"ks: the task's {n} evaluation transitions hold no window of K={kmax} context plus {length} "
                         "evaluation steps in one episode; collect more kshot.eval_episodes")
    return np.sort(cands[rng.choice(cands.size, size=min(num, cands.size), replace=False)])


def reference_network(model):
    """A plain DynamicsMLP (unconditioned, no linear skip) with ``model``'s hidden layers and normalizers, for oracle
    and scratch fits: the same reference for every learner scored on the same data."""
    from meta_mbrl.models import DynamicsMLP

    kwargs = {k: v for k, v in model.init_kwargs().items() if k not in ("context_dim", "skip")}
    ref = DynamicsMLP(**kwargs)
    for name in ("obs_norm", "delta_norm", "reward_norm"):
        getattr(ref, name).load_state_dict(getattr(model, name).state_dict())
    p = next(model.parameters())
    return ref.to(device=p.device, dtype=p.dtype)


@dataclass
class KShotData:
    """What the few-shot benchmark shares across learners: evaluation episodes and fitted oracles.

    Build it once with :func:`prepare_kshot`, then pass it to :func:`kshot_benchmark` for every
    learner trained on the same data (same normalizers), so all learners are scored on the very
    same windows against the very same oracles.
    """

    tasks: list
    eval_buf: object
    reference: object
    oracle_params: dict[str, torch.Tensor]
    info: dict
    memo: dict = field(default_factory=dict, repr=False)
    """Scores of the learner-independent methods (oracle, scratch, naive baselines) by their inputs, so that
    scoring several learners on the same data fits and scores them once."""


def prepare_kshot(model, suite, tasks: Sequence, *, policy="colored-noise", eval_episodes: int = 2,
                  oracle_transitions: int = 20_000, oracle_steps: int = 3000, seed: int = 0,
                  progress: bool = True) -> KShotData:
    """Collects evaluation and oracle data on ``tasks`` and fits one oracle per task.

    Args:
        model: the prior network whose architecture and normalizers the oracle (and scratch) models take.
        suite / tasks: where to evaluate (normally the suite's test tasks).
        policy: the exploration policy that collects evaluation and oracle data.
        eval_episodes: episodes per task for contexts and evaluation windows.
        oracle_transitions / oracle_steps: data and Adam steps (batch 256) of each oracle.
    """
    tasks = list(tasks)
    ref = reference_network(model)
    p = next(ref.parameters())
    label = policy if isinstance(policy, str) else getattr(policy, "name", type(policy).__name__)
    eval_buf = collect(suite, tasks, policy, episodes_per_task=eval_episodes, seed=seed + 10_000, progress=progress)
    oracle_eps = max(1, math.ceil(oracle_transitions / suite.max_episode_steps))
    oracle_buf = collect(suite, tasks, policy, episodes_per_task=oracle_eps, seed=seed + 20_000, progress=progress)
    oracle_params = fit_models(
        ref, [as_tensor_transitions(oracle_buf.transitions([t.id]), p.device, p.dtype) for t in tasks],
        steps=oracle_steps, batch_size=256, seed=seed + 1, progress=progress, desc="fit oracles",
    )
    info = {"eval_policy": label, "eval_env_steps": eval_buf.env_steps, "oracle_env_steps": oracle_buf.env_steps,
            "oracle_transitions_per_task": oracle_buf.num_transitions // len(tasks),
            "object_slices": [list(x) for x in getattr(suite, "object_slices", ())]}
    return KShotData(tasks, eval_buf, ref, oracle_params, info)


def save_kshot_data(data: KShotData, folder) -> None:
    """Writes prepared few-shot data (evaluation episodes, oracle weights, info) to ``folder``, atomically per file.

    ``load_kshot_data`` rebuilds it from the same suite and prior network, so a re-run of the benchmark
    does not collect and fit again.
    """
    import json
    from pathlib import Path

    from meta_mbrl.io import atomic_path

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    data.eval_buf.save(folder / "eval_buffer.npz")
    payload = {"task_ids": json.dumps([t.id for t in data.tasks]), "info": json.dumps(data.info),
               "oracle_params": {k: v.detach().cpu().clone() for k, v in data.oracle_params.items()}}
    with atomic_path(folder / "oracles.pt") as tmp, open(tmp, "wb") as f:
        torch.save(payload, f)  # a file object: saved by path, torch names the archive after the random temp name


def load_kshot_data(folder, suite, model) -> KShotData:
    """Reads what :func:`save_kshot_data` wrote; the reference network is rebuilt from ``model``.

    Raises:
        FileFormatError: naming the file, if it cannot be read or does not match ``model``.
    """
    import json
    import pickle
    import zipfile
    from pathlib import Path

    from meta_mbrl.data import TaskBuffer
    from meta_mbrl.errors import FileFormatError

    folder = Path(folder)
    path = folder / "oracles.pt"
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
        tasks = [suite.task(t) for t in json.loads(payload["task_ids"])]
        info = json.loads(payload["info"])
        info.setdefault("object_slices", [list(x) for x in getattr(suite, "object_slices", ())])
        params = dict(payload["oracle_params"])
    except (OSError, EOFError, RuntimeError, KeyError, TypeError, ValueError, pickle.UnpicklingError, zipfile.BadZipFile) as e:
        raise FileFormatError(f"kshot data: cannot read {str(path)!r}: {type(e).__name__}: {str(e).splitlines()[0][:200]}") from None
    ref = reference_network(model)
    p = next(ref.parameters())
    expected = {k: tuple(v.shape) for k, v in ref.param_dict().items()} if hasattr(ref, "param_dict") else None
    for k, v in params.items():
        if expected is not None and (k not in expected or tuple(v.shape[1:]) != expected[k] or v.shape[0] != len(tasks)):
            raise FileFormatError(f"kshot data: {str(path)!r} holds oracle weights {k} of shape {tuple(v.shape)} that do "
                                  "not match the network")
        if not bool(torch.isfinite(v).all()):
            raise FileFormatError(f"kshot data: {str(path)!r} holds non-finite oracle weights {k}")
    params = {k: v.to(device=p.device, dtype=p.dtype) for k, v in params.items()}
    return KShotData(tasks, TaskBuffer.load(folder / "eval_buffer.npz"), ref, params, info)


def kshot_benchmark(
    learner,
    suite=None,
    tasks: Sequence | None = None,
    ks: Sequence[int] = (8, 32, 128),
    policy="colored-noise",
    eval_episodes: int = 2,
    windows: int = 8,
    eval_length: int = 32,
    horizon: int = 10,
    oracle_transitions: int = 20_000,
    oracle_steps: int = 3000,
    scratch_steps: int = 300,
    adapt_opts: dict | None = None,
    seed: int = 0,
    progress: bool = True,
    data: KShotData | None = None,
    baselines: bool = True,
) -> tuple[pd.DataFrame, dict]:
    """Runs the few-shot model benchmark on ``tasks`` (normally the suite's test tasks).

    Works with any MetaLearner (``prior(num_tasks)`` and ``adapt(context)`` returning models with
    ``predict``). Pass ``data`` from :func:`prepare_kshot` to reuse evaluation data and oracles
    across learners; otherwise they are collected and fitted here from ``suite`` and ``tasks``.

    On each task, ``windows`` evaluation points are drawn once and shared by every K and method: the
    context is the K transitions just before a point (across earlier episodes of the task where K is
    longer than the episode so far), the metrics are taken on the ``eval_length`` transitions after it.
    Beside ``prior``, ``adapted``, ``scratch`` and ``oracle``, the naive predictors of
    :mod:`~meta_mbrl.evaluation.baselines` (``persistence``, ``context_mean``, ``ridge``) are fit on the
    same contexts (``baselines=False`` leaves them out).

    Returns:
        ``(df, info)``: a tidy DataFrame with one row per task, evaluation window, method and K: columns
        ``task, window, method, k, dyn_mse, reward_mse, dyn_mse_h10`` and, on suites with objects,
        ``dyn_mse_moved, reward_mse_moved, dyn_mse_still, reward_mse_still, n_moved`` (errors on the
        transitions that move an object by more than 1 mm, and on the others), plus ``windows``,
        ``eval_length``, ``policy``;
        and info with the env steps each data source used.
    """
    from meta_mbrl.data.contact import object_moved
    from meta_mbrl.evaluation.baselines import fit_baselines

    ks = sorted(int(k) for k in ks)
    if not ks or ks[0] < 1:
        raise ValueError(f"ks: expected positive context sizes, got {ks}")
    if horizon > eval_length:
        raise ValueError(f"horizon: expected <= eval_length ({eval_length}), got {horizon}")
    if data is None:
        if suite is None or tasks is None:
            raise ValueError("suite/tasks: expected a suite and its tasks when no prepared data is given")
        data = prepare_kshot(learner.model, suite, tasks, policy=policy, eval_episodes=eval_episodes,
                             oracle_transitions=oracle_transitions, oracle_steps=oracle_steps, seed=seed,
                             progress=progress)
    net, ref = learner.model, data.reference
    p = next(net.parameters())
    device, dtype = p.device, p.dtype
    slices = data.info.get("object_slices") or ()
    rng = np.random.default_rng(seed)
    rows = []

    def add(task, method, k, m):
        for i in range(len(m["dyn_mse"])):
            rows.append({"task": task.id, "window": i, "method": method, "k": k, **{n: v[i] for n, v in m.items()},
                         "policy": data.info["eval_policy"]})

    for ti, task in enumerate(tqdm(data.tasks, desc="k-shot", disable=not progress, leave=False)):
        stream, owner = _stream(data.eval_buf.trajectories(task.id))
        pts = _windows(owner, ks[-1], eval_length, windows, rng)
        seg = lambda a, b: as_tensor_transitions(  # noqa: E731
            Transitions(*(np.stack([getattr(stream, f)[s + a:s + b] for s in pts]) for f in Transitions._fields)),
            device, dtype)
        evals, w = seg(0, eval_length), len(pts)
        moved = object_moved(evals.obs, evals.next_obs, slices) if slices else None
        score = lambda model: _metrics(model, net, evals, horizon, moved)  # noqa: E731
        # the learner-independent methods depend on the windows, the units (the prior's normalizers) and the settings
        units = tuple(float(x) for n in (net.obs_norm, net.delta_norm) for x in (n.mean.sum(), n.std.sum()))
        memo_key = (task.id, tuple(pts.tolist()), eval_length, horizon, scratch_steps, seed, baselines, units)

        def shared(key, make):
            if (memo_key, key) not in data.memo:
                data.memo[(memo_key, key)] = make()
            return data.memo[(memo_key, key)]

        oracle = lambda: score(AdaptedModel(  # noqa: E731
            ref, {k: v[ti].expand(w, *v[ti].shape) for k, v in data.oracle_params.items()}, w))
        fixed = {"prior": score(learner.prior(w)), "oracle": shared("oracle", oracle)}
        for k in ks:
            context = seg(-k, 0)
            adapted = learner.adapt(context, **(adapt_opts or {}))

            def others(context=context, k=k):
                scratch = fit_models(ref, [context.index(i) for i in range(w)], steps=scratch_steps,
                                     batch_size=None if k <= SCRATCH_BATCH else SCRATCH_BATCH, seed=seed + 2 + k)
                out = {"scratch": score(AdaptedModel(ref, scratch, w))}
                if baselines:
                    out.update({name: score(b) for name, b in fit_baselines(context, net).items()})
                return out

            per_method = {**fixed, "adapted": score(adapted), **shared(k, others)}
            for method, m in per_method.items():
                add(task, method, k, {**m, "windows": np.full(w, w), "eval_length": np.full(w, eval_length)})
    return pd.DataFrame(rows), dict(data.info)


def summarize_kshot(df: pd.DataFrame, metric: str = "dyn_mse",
                    min_improvement: float | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Pivot tables: mean metrics per (method, k), and the guarded fraction of the prior-to-oracle gap closed.

    The gap closed is ``(prior - adapted) / (prior - oracle)`` per task (mean over its windows) and K. It is
    NaN on tasks where the oracle is not at least ``min_improvement`` (default
    :data:`~meta_mbrl.evaluation.kshot_stats.MIN_IMPROVEMENT`) better than the prior, and the ``"mean"`` row
    averages the other tasks only (:func:`~meta_mbrl.evaluation.kshot_stats.guarded_gap` adds intervals
    and names the excluded tasks).
    """
    from meta_mbrl.evaluation.kshot_stats import MIN_IMPROVEMENT

    guard = MIN_IMPROVEMENT if min_improvement is None else min_improvement
    cols = [c for c in ("dyn_mse", "reward_mse", "dyn_mse_h10") if c in df.columns]
    table = df.groupby(["k", "method"])[cols].mean().unstack("method")
    wide = df.pivot_table(index=["task", "k"], columns="method", values=metric)
    gap = ((wide["prior"] - wide["adapted"]) / (wide["prior"] - wide["oracle"])).rename(f"gap_closed_{metric}")
    gap = gap.where(wide["oracle"] <= (1 - guard) * wide["prior"]).unstack("k")
    gap.loc["mean"] = gap.mean()
    return table, gap
