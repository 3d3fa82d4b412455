"""Transfer measurement: a prior fine-tuned on a new target task against a model trained from scratch.

The metrics are the standard ones of Taylor & Stone (2009), "Transfer Learning for Reinforcement Learning
Domains: A Survey" (JMLR 10), computed on a pair of learning curves, performance against the amount of
target data:

- **jump-start**: the difference at the first amount (normally 0: no target data at all);
- **time to threshold**: the smallest amount of target data at which each curve reaches a threshold;
- **area under the curve** (total performance) and the **transfer ratio**
  ``(AUC_transfer - AUC_scratch) / |AUC_scratch|``;
- **asymptotic performance**: the last point of each curve;
- **negative transfer**: where the prior hurts (per amount, and overall by area).

Every difference is signed "better is positive" (for an error, ``scratch - transfer``), so a negative value
always means negative transfer.

:func:`transfer_curves` measures the two curves: for each amount ``n`` of target transitions (collected by the
toolkit's exploration, the ``rl`` track: colored noise), it fine-tunes the prior and trains a fresh network of
the same architecture on the same ``n`` transitions of each target task, and scores model error on held-out
target transitions and (optionally) control with the toolkit's MPC.

Example:
    >>> import numpy as np
    >>> m = transfer_metrics([0, 10, 100], np.array([0.5, 0.2, 0.1]), np.array([1.0, 0.4, 0.1]),
    ...                      higher_is_better=False)
    >>> m["jump_start"], m["time_to_threshold_transfer"], m["time_to_threshold_scratch"], m["negative_transfer"]
    (0.5, 100.0, 100.0, False)
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
import torch

from meta_mbrl.adaptation import AdaptedModel
from meta_mbrl.types import Transitions, as_tensor_transitions

__all__ = ["transfer_metrics", "transfer_table", "transfer_curves", "control_scores", "FittedLearner",
           "MODEL_METRICS", "CONTROL_METRICS", "HIGHER_IS_BETTER", "ARMS"]

MODEL_METRICS = ("dyn_mse", "reward_mse", "dyn_mse_h10")
"""Model-error metrics of the curves, in the few-shot benchmark's units (lower is better)."""
CONTROL_METRICS = ("success", "return")
"""Control metrics of the curves: success rate and mean evaluation return (higher is better)."""
HIGHER_IS_BETTER = {**{m: False for m in MODEL_METRICS}, **{m: True for m in CONTROL_METRICS}}
"""The direction of every metric of :func:`transfer_curves`."""
ARMS = ("transfer", "scratch", "adapt")
"""The arms of :func:`transfer_curves`: the fine-tuned prior, a fresh network, and the learner's own ``adapt``."""


def _curve(name: str, x, n: int | None = None) -> np.ndarray:
    try:
        a = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: expected a 1-D sequence of numbers, got {type(x).__name__}") from None
    if a.ndim != 1 or a.size == 0:
        raise ValueError(f"{name}: expected a non-empty 1-D sequence of numbers, got shape {a.shape}")
    if n is not None and a.size != n:
        raise ValueError(f"{name}: expected {n} values (one per amount), got {a.size}")
    if not np.isfinite(a).all():
        raise ValueError(f"{name}: expected finite values, got {a.tolist()}")
    return a


def check_amounts(amounts) -> np.ndarray:
    """``amounts`` as a float array, or ValueError naming it: 1-D, finite, ``>= 0``, strictly increasing.

    Example:
        >>> check_amounts([0, 10, 100]).tolist()
        [0.0, 10.0, 100.0]
        >>> check_amounts([0, 10, 10])
        Traceback (most recent call last):
        ...
        ValueError: amounts: expected strictly increasing amounts >= 0, got [0.0, 10.0, 10.0]
    """
    a = _curve("amounts", amounts)
    if (a < 0).any() or (np.diff(a) <= 0).any():
        raise ValueError(f"amounts: expected strictly increasing amounts >= 0, got {a.tolist()}")
    return a


def _first_reached(amounts: np.ndarray, curve: np.ndarray, threshold: float, higher: bool) -> float:
    hit = curve >= threshold if higher else curve <= threshold
    return float(amounts[np.argmax(hit)]) if hit.any() else float("nan")


def _area(x: np.ndarray, y: np.ndarray) -> float:
    """Trapezoid area over ``x`` divided by its span: the curve's mean height (its only value for one point)."""
    if x.size == 1:
        return float(y[0])
    return float(np.sum((y[1:] + y[:-1]) * np.diff(x)) / 2 / (x[-1] - x[0]))


def transfer_metrics(amounts, transfer, scratch, *, higher_is_better: bool, threshold: float | None = None) -> dict:
    """Taylor & Stone's transfer metrics of one pair of learning curves.

    Differences are signed "better is positive": ``transfer - scratch`` when higher is better, ``scratch -
    transfer`` for errors, so a negative gain is negative transfer.

    - ``jump_start``: the gain at the first amount (``start_amount``, normally 0: no target data).
    - ``time_to_threshold_transfer`` / ``_scratch``: the smallest amount at which the curve reaches ``threshold``
      (``>=`` when higher is better, ``<=`` otherwise), NaN if it never does; ``threshold_saved`` is scratch's time
      minus transfer's (NaN unless both reach it). The default threshold is the scratch curve's asymptote (its
      last value), so ``time_to_threshold_transfer`` answers "how much less data does the prior need to do as well
      as scratch does with the most data".
    - ``auc_transfer`` / ``auc_scratch``: the area under each curve by the trapezoid rule over ``log(1 + amount)``
      (amounts are usually geometric, 0, 10, 30, 100, ..., so each decade weighs the same and the 0 point is kept),
      divided by the span of ``log(1 + amount)``: the curve's mean height, in the metric's own units.
      ``auc_gain`` is their signed difference and ``transfer_ratio = auc_gain / |auc_scratch|`` (NaN if
      ``auc_scratch`` is 0), i.e. ``(AUC_transfer - AUC_scratch) / |AUC_scratch|`` for a higher-is-better metric.
    - ``asymptote_transfer`` / ``_scratch``: the last point of each curve; ``asymptotic_gain`` their signed difference.
    - ``gain``: the signed difference at every amount; ``negative_at``: the amounts where it is below 0;
      ``negative_transfer``: True if the prior hurts overall (``auc_gain < 0``).

    Args:
        amounts: amounts of target data, strictly increasing, ``>= 0``.
        transfer / scratch: the metric of the fine-tuned prior and of the model trained from scratch at each amount.
        higher_is_better: the metric's direction (False for errors).
        threshold: the performance threshold (default: ``scratch[-1]``).

    Shapes:
        ``amounts``, ``transfer``, ``scratch``: ``(N,)``.

    Returns:
        A dict of floats (``gain`` and ``negative_at`` are lists, ``negative_transfer`` a bool).

    Raises:
        ValueError: naming the argument: not 1-D, lengths that differ from ``amounts``', NaN or inf values, amounts
            not strictly increasing or negative, a non-finite threshold.

    Example:
        >>> m = transfer_metrics([0, 10, 100, 1000], [0.2, 0.5, 0.7, 0.8], [0.0, 0.3, 0.6, 0.8],
        ...                      higher_is_better=True)
        >>> m["jump_start"], m["threshold"], m["time_to_threshold_transfer"], m["time_to_threshold_scratch"]
        (0.2, 0.8, 1000.0, 1000.0)
        >>> round(m["transfer_ratio"], 3), m["asymptotic_gain"], m["negative_at"]
        (0.313, 0.0, [])
    """
    x = check_amounts(amounts)
    t, s = _curve("transfer", transfer, x.size), _curve("scratch", scratch, x.size)
    if threshold is None:
        threshold = float(s[-1])
    elif not (isinstance(threshold, (int, float)) and math.isfinite(threshold)) or isinstance(threshold, bool):
        raise ValueError(f"threshold: expected a finite number or None, got {threshold!r}")
    sign = 1.0 if higher_is_better else -1.0
    gain = sign * (t - s)
    lx = np.log1p(x)
    auc_t, auc_s = _area(lx, t), _area(lx, s)
    auc_gain = sign * (auc_t - auc_s)
    ttt_t = _first_reached(x, t, float(threshold), higher_is_better)
    ttt_s = _first_reached(x, s, float(threshold), higher_is_better)
    return {
        "higher_is_better": bool(higher_is_better),
        "start_amount": float(x[0]),
        "jump_start": float(gain[0]),
        "start_transfer": float(t[0]),
        "start_scratch": float(s[0]),
        "threshold": float(threshold),
        "time_to_threshold_transfer": ttt_t,
        "time_to_threshold_scratch": ttt_s,
        "threshold_saved": ttt_s - ttt_t,
        "auc_transfer": auc_t,
        "auc_scratch": auc_s,
        "auc_gain": float(auc_gain),
        "transfer_ratio": float(auc_gain / abs(auc_s)) if auc_s != 0 else float("nan"),
        "asymptote_transfer": float(t[-1]),
        "asymptote_scratch": float(s[-1]),
        "asymptotic_gain": float(gain[-1]),
        "gain": gain.tolist(),
        "negative_at": x[gain < 0].tolist(),
        "negative_transfer": bool(auc_gain < 0),
    }


def transfer_table(curves: pd.DataFrame, thresholds: dict | None = None) -> pd.DataFrame:
    """:func:`transfer_metrics` of every metric of a :func:`transfer_curves` table (transfer vs scratch).

    Metrics whose curves hold NaN or inf (``success`` on a suite that reports none, a diverged model) are left out.

    Args:
        curves: columns ``amount, arm, metric, value`` (arms ``transfer`` and ``scratch``).
        thresholds: optional threshold per metric name (default: each scratch curve's asymptote).

    Returns:
        One row per metric: ``metric`` and the keys of :func:`transfer_metrics` (lists as ``;``-joined strings).

    Example:
        >>> curves = pd.DataFrame({"amount": [0, 10, 0, 10], "arm": ["transfer"] * 2 + ["scratch"] * 2,
        ...                        "metric": "dyn_mse", "value": [0.5, 0.1, 2.0, 0.3]})
        >>> transfer_table(curves)[["metric", "jump_start", "negative_transfer"]].to_dict("records")
        [{'metric': 'dyn_mse', 'jump_start': 1.5, 'negative_transfer': False}]
    """
    missing = {"amount", "arm", "metric", "value"} - set(curves.columns)
    if missing:
        raise ValueError(f"curves: expected columns amount, arm, metric, value; missing {sorted(missing)}")
    rows = []
    for metric in dict.fromkeys(curves["metric"]):
        wide = curves[curves["metric"] == metric].pivot_table(index="amount", columns="arm", values="value",
                                                              dropna=False)
        if not {"transfer", "scratch"} <= set(wide.columns):
            continue
        wide = wide[["transfer", "scratch"]]
        if not np.isfinite(wide.to_numpy()).all():
            continue
        m = transfer_metrics(wide.index.to_numpy(), wide["transfer"].to_numpy(), wide["scratch"].to_numpy(),
                             higher_is_better=HIGHER_IS_BETTER.get(metric, False),
                             threshold=(thresholds or {}).get(metric))
        m = {k: ";".join(f"{v:g}" for v in val) if isinstance(val, list) else val for k, val in m.items()}
        rows.append({"metric": metric, **m})
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------------------------- the learning curves
class FittedLearner:
    """A fixed, already fitted model in the MetaLearner shape the agent drives: ``prior`` and ``adapt`` return it.

    Lets :class:`~meta_mbrl.agent.MetaMBRLAgent` (and so the toolkit's MPC) plan with a fine-tuned or scratch
    model without adapting it further.

    Args:
        adapted: a task-batched :class:`~meta_mbrl.adaptation.AdaptedModel` (``T`` tasks: one per env).

    Example:
        >>> from meta_mbrl.models import DynamicsMLP
        >>> net = DynamicsMLP(4, 2, hidden=(8,))
        >>> fl = FittedLearner(AdaptedModel.from_prior(net, 3))
        >>> fl.prior(3) is fl.adapt(None), fl.model is net
        (True, True)
    """

    ADAPT_OPTIONS: tuple[str, ...] = ()

    def __init__(self, adapted: AdaptedModel):
        if not isinstance(adapted, AdaptedModel) or adapted.num_tasks is None:
            raise ValueError(f"adapted: expected a task-batched AdaptedModel, got {adapted!r}")
        self.adapted, self.model = adapted, adapted.model

    def prior(self, num_tasks: int | None = None) -> AdaptedModel:
        if num_tasks != self.adapted.num_tasks:
            raise ValueError(f"num_tasks: expected {self.adapted.num_tasks} (the fitted tasks), got {num_tasks}")
        return self.adapted

    def adapt(self, context, **opts) -> AdaptedModel:
        return self.adapted


class _ShortEpisodes:
    """``suite`` with episodes truncated at ``steps`` (gymnasium's TimeLimit over the suite's own envs)."""

    def __init__(self, suite, steps: int):
        self.suite, self.max_episode_steps, self.name = suite, int(steps), suite.name

    def check_tasks(self, tasks):
        return self.suite.check_tasks(tasks)

    def make_vec_env(self, tasks, seed: int | None = None, strategy: str = "sync"):
        import gymnasium as gym

        fns = [(lambda t=t, i=i: gym.wrappers.TimeLimit(self.suite.make_env(t, None if seed is None else seed + i),
                                                       self.max_episode_steps)) for i, t in enumerate(tasks)]
        return gym.vector.SyncVectorEnv(fns, autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)


def control_scores(adapted: AdaptedModel, suite, tasks: Sequence, planner, *, episodes: int = 1,
                   max_episode_steps: int | None = None, seed: int = 0, particles: int | None = None,
                   propagation: str = "ts1") -> dict:
    """Success rate and mean return of MPC with a fixed model on ``tasks`` (one env per task, no adaptation).

    The agent is :class:`~meta_mbrl.agent.MetaMBRLAgent` over :class:`FittedLearner` (so the model is not
    adapted further), run by :func:`~meta_mbrl.evaluation.protocol_evaluation` with no adaptation episodes and
    ``episodes`` scored episodes per task.

    Args:
        adapted: the model, task-batched over ``tasks`` (``T`` tasks).
        suite / tasks: where to act.
        planner: a fresh planner (e.g. ``runs.build_planner(cfg, suite)``).
        episodes: scored episodes per task.
        max_episode_steps: shorter episodes than the suite's (None or 0: the suite's).
        seed: the envs' and the agent's seed.
        particles / propagation: the agent's trajectory sampling (ensembles only).

    Returns:
        ``{"success": mean success rate (NaN where the env reports no success), "return": mean return,
        "eval_env_steps": env steps spent}``.

    Example:
        >>> import task_suites
        >>> from meta_mbrl.models import DynamicsMLP
        >>> from meta_mbrl.planning import RandomShooting
        >>> suite = task_suites.make("point-mass")
        >>> tasks = suite.test_tasks[:2]
        >>> planner = RandomShooting(suite.action_low, suite.action_high, horizon=3, population=8, seed=0)
        >>> s = control_scores(AdaptedModel.from_prior(DynamicsMLP(4, 2, hidden=(8,)), 2), suite, tasks, planner,
        ...                    max_episode_steps=5)
        >>> s["eval_env_steps"], bool(np.isnan(s["success"])), s["return"] < 0
        (10, True, True)
    """
    from meta_mbrl.agent import MetaMBRLAgent
    from meta_mbrl.evaluation.control import protocol_evaluation

    tasks = list(tasks)
    steps = int(max_episode_steps or 0)
    env_suite = _ShortEpisodes(suite, steps) if 0 < steps < suite.max_episode_steps else suite
    agent = MetaMBRLAgent(FittedLearner(adapted), planner, num_envs=len(tasks), explore_noise=0.0, seed=seed,
                          particles=particles, propagation=propagation)
    df, info = protocol_evaluation(agent, env_suite, tasks, adaptation_episodes=0, evaluation_episodes=episodes,
                                   seed=seed)
    success = float(df["success_rate"].mean()) if "success_rate" in df else float("nan")
    return {"success": success, "return": float(df["eval_return"].mean()), "eval_env_steps": int(info["eval_env_steps"])}


class _Unchecked:
    """An AdaptedModel whose ``predict`` lets non-finite predictions through (a diverged open-loop rollout scores inf)."""

    def __init__(self, model: AdaptedModel):
        self.model = model

    def predict(self, obs, act):
        return self.model.predict_unchecked(obs, act)


def _stream(buf, task_id: str):
    from meta_mbrl.evaluation.kshot import _stream as stream

    return stream(buf.trajectories(task_id))


def _per_task(adapted: AdaptedModel, num_tasks: int) -> tuple[dict, torch.Tensor | None]:
    """The model's parameters materialised per task ``(T, ...)`` (copies), and its task vector."""
    params = {k: (v if adapted.params_batched else v.expand(num_tasks, *v.shape)).detach().clone()
              for k, v in adapted.params.items()}
    return params, adapted.task_vector


def transfer_curves(
    learner,
    suite,
    tasks: Sequence,
    amounts: Sequence[int] = (0, 30, 100, 300, 1000),
    *,
    steps: int = 300,
    lr: float = 1e-3,
    batch_size: int = 128,
    policy="colored-noise",
    eval_episodes: int = 2,
    windows: int = 8,
    eval_length: int = 32,
    horizon: int = 10,
    control: Callable[[AdaptedModel], dict] | None = None,
    units: str = "prior",
    seed: int = 0,
    progress: bool = False,
    out: Callable[[str], None] | None = None,
) -> tuple[pd.DataFrame, dict]:
    """Learning curves of a prior fine-tuned on target tasks, and of a network trained from scratch.

    For every amount ``n`` of ``amounts`` and every target task, the first ``n`` transitions of that task's
    target data (episodes of ``policy``, the toolkit's colored-noise exploration by default: the ``rl`` track,
    collected once with seed ``seed + 30_000``, so a smaller amount's data is a prefix of a larger one's) train:

    - ``transfer``: **fine-tuning the prior**, one definition for every learner: Adam (``lr``) on *all* the
      weights of ``learner.prior()``'s network, starting from the prior's weights (a copy per task; the prior is
      never modified), at the prior's own task vector for context-conditioned networks (CaDM, PEARL, task
      embeddings: held fixed). At ``n = 0`` it is the prior as is, with no target data.
    - ``scratch``: a network of the same architecture (``learner.model``'s class and sizes), freshly initialised
      with ``seed``, trained the same way, knowing nothing of the prior: its input/output normalizers are fit on its
      own ``n`` transitions of every target task (pooled). At ``n = 0`` it is untrained (the prior's normalizers,
      which a random network does not care about): its control is a planner on a random model, the correct scratch
      jump-start. The transfer arm keeps the prior's normalizers (they are part of the prior).
    - ``adapt`` (model error only): the learner's own few-shot adaptation, ``learner.adapt`` on the same ``n``
      transitions (no gradient steps for ALPaCA / CaDM / PEARL, its inner steps for the MAML family); the prior
      at ``n = 0``.

    Both trained arms take the same number of Adam ``steps`` whatever ``n``, on full batches up to
    ``batch_size`` transitions and minibatches of ``batch_size`` beyond (drawn by one generator seeded with
    ``seed + n`` for both), so the only difference between them is the starting point.

    Model error is measured as in :func:`~meta_mbrl.evaluation.kshot_benchmark`, by its helper and in its units
    (``units="prior"``: Δobs and observation divided by the prior's normalizer std, reward raw): on ``windows``
    segments of ``eval_length`` held-out transitions per task (``eval_episodes`` episodes of ``policy``, seed
    ``seed + 10_000``), 1-step ``dyn_mse`` and ``reward_mse`` and the ``horizon``-step open-loop ``dyn_mse_h10``,
    averaged over tasks and windows. ``units="target"`` divides every dimension by one scale of the held-out target
    data itself instead, the root mean (over dimensions) variance of its Δobs (of its observations for the open-loop
    error), so ``dyn_mse`` is the squared error as a fraction of the data's mean variance: the yardstick for a prior
    whose normalizers saw some dimensions constant (an ML10 prior's second-object dims, std 0.001, which move in
    other Meta-World classes), where the prior's units would let those dims swamp the others. Either way the units
    are the same for every arm and amount. A model whose open-loop prediction overflows scores ``inf`` (and NaN
    control: the planner refuses non-finite imagined returns); :func:`transfer_table` leaves such curves out.
    ``control(model)`` (e.g. :func:`control_scores`), if given, scores each trained arm's model on the target tasks
    and returns ``{"success", "return", ...}``.

    Args:
        learner: the prior (any built-in non-ensemble learner: ``prior(T)`` must be an AdaptedModel).
        suite / tasks: the target suite and tasks (``T`` tasks); the suite's obs/act dims must be the prior's.
        amounts: transitions of target data per task, strictly increasing, ``>= 0``.
        steps / lr / batch_size: the Adam fit of both trained arms.
        policy / eval_episodes / windows / eval_length / horizon: target data and model-error windows.
        control: scores a model on the target tasks (None: model error only).
        units: ``"prior"`` or ``"target"``, the units of the model error (above).
        seed: seeds collection, initialisation and minibatches.
        progress: progress bars of collection.
        out: prints one line per amount if given.

    Returns:
        ``(curves, info)``: one row per amount, arm and metric: ``amount, arm, metric, value, target_env_steps``
        (target transitions used, over all tasks); info: ``target_env_steps`` / ``eval_env_steps`` collected,
        ``control_env_steps`` spent, ``tasks``, ``seconds``.

    Raises:
        ValueError: naming the argument: bad ``amounts``, ``suite`` dims that differ from the prior's, an ensemble
            ``learner``, bad ``steps`` / ``lr`` / windows.

    Example:
        >>> import task_suites
        >>> from meta_mbrl import MAML, DynamicsMLP
        >>> suite = task_suites.make("point-mass")
        >>> curves, info = transfer_curves(MAML(DynamicsMLP(4, 2, hidden=(16,))), suite, suite.test_tasks[:2],
        ...                                [0, 20], steps=5, eval_episodes=1, windows=2, eval_length=12)
        >>> sorted(curves["arm"].unique()), sorted(curves["metric"].unique()), info["target_env_steps"]
        (['adapt', 'scratch', 'transfer'], ['dyn_mse', 'dyn_mse_h10', 'reward_mse'], 100)
    """
    from meta_mbrl.data.rollout import collect
    from meta_mbrl.evaluation.kshot import SCRATCH_BATCH, _fresh_params, _metrics, _windows, fit_models

    x = check_amounts(amounts)
    if not np.all(x == np.round(x)):
        raise ValueError(f"amounts: expected whole numbers of transitions, got {x.tolist()}")
    amounts = [int(a) for a in x]
    tasks = suite.check_tasks(tasks)
    net = learner.model
    if (suite.obs_dim, suite.act_dim) != (net.obs_dim, net.act_dim):
        raise ValueError(f"suite: {suite.name} has obs/act dims {(suite.obs_dim, suite.act_dim)}, the prior's network "
                         f"{(net.obs_dim, net.act_dim)}; transfer needs the same dims")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps: expected an int >= 1, got {steps!r}")
    if not (isinstance(lr, (int, float)) and 0 < lr <= 1):
        raise ValueError(f"lr: expected a learning rate in (0, 1], got {lr!r}")
    if horizon > eval_length or eval_length > suite.max_episode_steps:
        raise ValueError(f"eval_length: expected horizon ({horizon}) <= eval_length <= the suite's episode length "
                         f"({suite.max_episode_steps}), got {eval_length}")
    if units not in ("prior", "target"):
        raise ValueError(f"units: expected 'prior' or 'target', got {units!r}")
    T = len(tasks)
    prior = learner.prior(T)
    if not isinstance(prior, AdaptedModel):
        raise ValueError(f"learner: expected a learner whose prior is one AdaptedModel, got {type(prior).__name__} "
                         "(ensembles are not supported)")
    p = next(net.parameters())
    dev, dt = p.device, p.dtype
    t0 = time.perf_counter()
    # target data (a prefix per amount) and held-out evaluation windows
    per_task = max(1, math.ceil(amounts[-1] / suite.max_episode_steps)) if amounts[-1] > 0 else 0
    train_buf = collect(suite, tasks, policy, episodes_per_task=per_task, seed=seed + 30_000,
                        progress=progress) if per_task else None
    streams = [_stream(train_buf, t.id)[0] for t in tasks] if train_buf is not None else None
    eval_buf = collect(suite, tasks, policy, episodes_per_task=eval_episodes, seed=seed + 10_000, progress=progress)
    rng = np.random.default_rng(seed)
    segs = []
    for t in tasks:
        stream, owner = _stream(eval_buf, t.id)
        pts = _windows(owner, 0, eval_length, windows, rng)
        segs.append(Transitions(*(np.stack([getattr(stream, f)[s:s + eval_length] for s in pts])
                                  for f in Transitions._fields)))
    w = min(s.reward.shape[0] for s in segs)
    evals = as_tensor_transitions(Transitions(*(np.concatenate([getattr(s, f)[:w] for s in segs])
                                                for f in Transitions._fields)), dev, dt)   # (T * W, L, ·)

    if units == "prior":
        yardstick = net
    else:
        from types import SimpleNamespace

        flat = Transitions(*(getattr(evals, f).reshape(-1, *getattr(evals, f).shape[2:]) for f in Transitions._fields))
        std = lambda v: SimpleNamespace(std=v.var(0).mean().sqrt().clamp_min(1e-6).expand(v.shape[-1]))  # noqa: E731
        yardstick = SimpleNamespace(obs_norm=std(flat.obs), delta_norm=std(flat.next_obs - flat.obs))

    def score(model: AdaptedModel) -> dict:
        params, z = _per_task(model, T)
        rep = {k: v.repeat_interleave(w, 0) for k, v in params.items()}
        zr = None if z is None else z.repeat_interleave(w, 0)
        m = _metrics(_Unchecked(AdaptedModel(model.model, rep, T * w, task_vector=zr)), yardstick, evals, horizon, None)
        return {k: float(np.mean(np.nan_to_num(m[k], nan=np.inf))) for k in MODEL_METRICS}

    def act(model: AdaptedModel) -> dict:
        try:
            return control(model)
        except ValueError as e:  # the planner refuses a model whose imagined returns overflow
            if "not finite" not in str(e):
                raise
            return {"success": float("nan"), "return": float("nan")}

    rows, control_steps = [], 0
    prior_params, z = _per_task(prior, T)
    for n in amounts:
        data = None
        if n:
            data = [as_tensor_transitions(Transitions(*(getattr(s, f)[:n] for f in Transitions._fields)), dev, dt)
                    for s in streams]
            if any(d.reward.shape[0] < n for d in data):
                raise ValueError(f"amounts: {n} transitions per task is more than was collected")
        bs = None if n <= min(batch_size, SCRATCH_BATCH) else batch_size
        models = {}
        if n == 0:
            models["transfer"] = AdaptedModel(net, prior_params, T, task_vector=z)
            models["scratch"] = AdaptedModel(net, _fresh_params(net, T, seed), T, task_vector=z)  # untrained
            models["adapt"] = models["transfer"]
        else:
            models["transfer"] = AdaptedModel(net, fit_models(net, data, steps, bs, lr=lr, seed=seed + n,
                                                              init=prior_params, task_vector=z), T, task_vector=z)
            own = copy.deepcopy(net)  # scratch's own normalizers, on its own data
            own.fit_normalizers(Transitions(*(torch.cat([getattr(d, f) for d in data]) for f in Transitions._fields)))
            models["scratch"] = AdaptedModel(own, fit_models(own, data, steps, bs, lr=lr, seed=seed + n,
                                                             task_vector=z), T, task_vector=z)
            context = Transitions(*(torch.stack([getattr(d, f) for d in data]) for f in Transitions._fields))
            models["adapt"] = learner.adapt(context)
        line = []
        for arm in ARMS:
            vals = score(models[arm])
            if control is not None and arm != "adapt":
                c = act(models[arm])
                control_steps += int(c.get("eval_env_steps", 0))
                vals.update({k: c[k] for k in CONTROL_METRICS})
            rows += [{"amount": n, "arm": arm, "metric": k, "value": v, "target_env_steps": n * T}
                     for k, v in vals.items()]
            line.append(f"{arm} " + " ".join(f"{k}={v:.4g}" for k, v in vals.items()))
        if out is not None:
            out(f"  n={n}: " + "; ".join(line))
    info = {"target_env_steps": train_buf.env_steps if train_buf is not None else 0,
            "eval_env_steps": eval_buf.env_steps, "control_env_steps": control_steps, "tasks": [t.id for t in tasks],
            "windows": w, "seconds": time.perf_counter() - t0}
    return pd.DataFrame(rows), info
