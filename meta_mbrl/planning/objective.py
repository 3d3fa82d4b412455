"""Objectives: imagined returns of action sequences under a dynamics model.

An objective is any callable from candidate action sequences to returns, ``(N, H, A) -> (N,)`` for
one environment or ``(B, N, H, A) -> (B, N)`` for ``B`` environments at once; planners consume
nothing else. :func:`make_objective` builds one from a :class:`~meta_mbrl.protocols.DynamicsModel`
and the current observations, by :func:`imagine` -- a deterministic rollout of the model.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from meta_mbrl.checks import check_float, check_float_dtype, check_int, check_tensor, max_abs
from meta_mbrl.planning.base import ObjectiveFn
from meta_mbrl.protocols import DynamicsModel

__all__ = ["imagine", "Objective", "ObjectiveFn", "make_objective", "PROPAGATIONS", "ValueFn"]


def _model_dims(model) -> tuple[int | None, int | None]:
    obs_dim, act_dim = getattr(model, "obs_dim", None), getattr(model, "act_dim", None)
    return (obs_dim if isinstance(obs_dim, int) else None), (act_dim if isinstance(act_dim, int) else None)


def _model_dtype_device(model) -> tuple[torch.dtype | None, torch.device | None]:
    dtype, device = getattr(model, "dtype", None), getattr(model, "device", None)
    dtype = dtype if isinstance(dtype, torch.dtype) else None
    device = torch.device(device) if isinstance(device, (torch.device, str)) else None
    if dtype is None and device is None and isinstance(model, torch.nn.Module):
        p = next(model.parameters(), None)
        if p is not None:
            return p.dtype, p.device
    return dtype, device


def _check_obs(model, obs: torch.Tensor) -> None:
    """``obs`` of shape ``(O,)`` / ``(B, O)``, finite, with the model's dtype (a floating one if it names none)."""
    obs_dim, _ = _model_dims(model)
    check_float_dtype("obs", obs, _model_dtype_device(model)[0])
    check_tensor("obs", obs, last_dim=obs_dim)
    if obs.dim() not in (1, 2) or obs.shape[-1] == 0:
        raise ValueError(f"obs: expected shape (O,) or (B, O), got {tuple(obs.shape)}")
    if obs.dim() == 2 and obs.shape[0] == 0:
        raise ValueError(f"obs: expected at least one env, got shape {tuple(obs.shape)}")


def _model_obs(model, obs: torch.Tensor | np.ndarray) -> torch.Tensor:
    """``obs`` converted to the model's dtype and device and checked (see :class:`Objective`'s ``obs``)."""
    if not callable(getattr(model, "predict", None)):
        raise ValueError(f"model: expected a DynamicsModel with a predict(obs, act) method, got {type(model).__name__}")
    dtype, device = _model_dtype_device(model)
    if isinstance(obs, np.ndarray):
        if obs.dtype.kind != "f":
            raise ValueError(f"obs: expected an array of floats, got dtype {obs.dtype}")
        obs = torch.from_numpy(np.ascontiguousarray(obs)).to(dtype or torch.float32)
    check_float_dtype("obs", obs, dtype, lossless=True)
    if dtype is not None or device is not None:
        obs = obs.to(device=device, dtype=dtype)
    _check_obs(model, obs)
    return obs


def _check_actions(model, obs: torch.Tensor, actions: object, lossless: bool = False) -> None:
    """``actions`` of shape ``(N, H, A)`` / ``(B, N, H, A)`` matching ``obs``, finite, of ``obs``'s dtype.

    With ``lossless`` a dtype that casts to ``obs``'s exactly is accepted too (an objective takes the
    planners' float32 samples for a float64 model).
    """
    _, act_dim = _model_dims(model)
    check_float_dtype("actions", actions, obs.dtype, lossless=lossless)
    check_tensor("actions", actions, last_dim=act_dim)
    assert isinstance(actions, torch.Tensor)
    if obs.dim() == 1:
        if actions.dim() != 3:
            raise ValueError(f"actions: expected shape (N, H, A) for obs of shape {tuple(obs.shape)}, got {tuple(actions.shape)}")
    elif actions.dim() != 4 or actions.shape[0] != obs.shape[0]:
        raise ValueError(f"actions: expected shape ({obs.shape[0]}, N, H, A) for obs of shape {tuple(obs.shape)} "
                         f"(B={obs.shape[0]} envs), got {tuple(actions.shape)}")
    if actions.shape[-3] == 0 or actions.shape[-2] == 0:
        raise ValueError(f"actions: expected at least one candidate and one step, got shape {tuple(actions.shape)}")


def _check_returns(ret: torch.Tensor, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    """Returns ``ret``, or raises ValueError naming ``obs`` / ``actions`` if a return is not finite.

    Inputs were checked finite, so a non-finite return means the rollout left the model's numeric
    range (states growing step by step until a layer overflows); the rollout's later steps skip
    ``predict``'s output check, and this one check (on ``(B, N)`` returns) covers them all.
    """
    if bool(torch.isfinite(ret).all()):
        return ret
    bad = int((~torch.isfinite(ret)).sum())
    o, a = max_abs(obs), max_abs(actions)
    name = "actions" if a > o else "obs"
    raise ValueError(
        f"{name}: the imagined returns are not finite for {bad} of {ret.numel()} candidate(s) although obs and actions "
        f"are finite (|obs| up to {o:.3g}, |actions| up to {a:.3g}): the model's rollout from these inputs left its "
        "numeric range"
    )


ValueFn = Callable[[torch.Tensor], torch.Tensor]
"""A terminal value: observations ``(..., O)`` -> values ``(...)``, any leading dims (e.g. TD-MPC2's
``Q(s, pi(s))`` as a state value)."""


def _check_value(value: object) -> None:
    if value is not None and not callable(value):
        raise ValueError(f"value: expected None or a callable mapping observations (..., O) to values (...), "
                         f"got {type(value).__name__}")


def _terminal_value(value: ValueFn, o: torch.Tensor, ret: torch.Tensor) -> torch.Tensor:
    """``value(o)`` for the final states ``o (*L, O)`` as ``(*L)`` in ``ret``'s dtype; raises ValueError naming ``value``
    on a wrong shape or non-finite values (the rollout's returns are checked separately)."""
    v = value(o)
    want = tuple(o.shape[:-1])
    if not isinstance(v, torch.Tensor) or tuple(v.shape) != want:
        got = f"shape {tuple(v.shape)}" if isinstance(v, torch.Tensor) else type(v).__name__
        raise ValueError(f"value: expected values of shape {want} for final observations of shape {tuple(o.shape)}, "
                         f"got {got}")
    if not bool(torch.isfinite(v).all()):
        bad = int((~torch.isfinite(v)).sum())
        raise ValueError(f"value: expected finite values, got {bad} non-finite of {v.numel()}")
    return v.to(device=ret.device, dtype=ret.dtype)


CPU_MAX_ROWS = 2048
"""Default cap on the rows ``B * n`` of one model call on CPU: larger populations are rolled out in
chunks of candidates so that a call's activations stay in the CPU cache (a 3x200 MLP ran ~1.3x faster
at ~2,000 rows per call than at 5,000). Accelerators get no chunking by default."""


PROPAGATIONS = ("ts1", "tsinf", "mean")
"""How particles move through an ensemble (PETS, Chua et al. 2018): ``"ts1"`` re-draws each particle's
member at every step, ``"tsinf"`` fixes it for the whole rollout, ``"mean"`` uses the members' mean."""


def _ensemble_size(model) -> int | None:
    e = getattr(model, "ensemble_size", None)
    return e if isinstance(e, int) and callable(getattr(model, "predict_members_unchecked", None)) else None


def _checked(model, members: bool = False):
    """The first rollout step's predict: the model's input checks, then its unchecked predict.

    A model with ``check_inputs`` and ``predict_unchecked`` (an adapted model) has its inputs validated
    (task dim, dtype, device) but not its outputs: a non-finite prediction is caught by the final returns
    check, whose message names ``imagine``'s own arguments (``obs`` / ``actions``, not ``predict``'s ``act``).
    Any other model's ``predict`` is used as it is.
    """
    check = getattr(model, "check_inputs", None)
    unchecked = getattr(model, "predict_members_unchecked" if members else "predict_unchecked", None)
    if not (callable(check) and callable(unchecked)):
        return model.predict_members if members else model.predict

    def first(o, a, **kw):
        check(o, a, **kw)
        return unchecked(o, a, **kw)

    return first


def _ts_predict(model, o: torch.Tensor, a: torch.Tensor, e: int, check: bool):
    """One step of trajectory sampling: particle ``p`` of ``o (*L, P, O)`` goes to member ``p % E``.

    The particles are regrouped member-major, ``(E, *L[:-1], L[-1] * P / E, ·)``, so each member
    predicts only its own particles, all members in one stacked call (the task dim ``B`` stays first
    after ``E``).
    """
    lead, p = o.shape[:-2], o.shape[-2]

    def split(x: torch.Tensor) -> torch.Tensor:
        x = x.reshape(*lead, p // e, e, x.shape[-1]).movedim(-2, 0)
        return x.reshape(e, *lead[:-1], lead[-1] * (p // e), x.shape[-1])

    def merge(x: torch.Tensor) -> torch.Tensor:
        tail = x.shape[len(lead) + 1:]
        x = x.reshape(e, *lead, p // e, *tail).movedim(0, len(lead) + 1)
        return x.reshape(*lead, p, *tail)

    fn = _checked(model, members=True) if check else model.predict_members_unchecked
    pred = fn(split(o), split(a), per_member=True)
    out = [None if t is None else merge(t) for t in pred]
    return type(pred)(*out)


def _flat_predict(model, o: torch.Tensor, a: torch.Tensor, check: bool):
    """Particles folded into the candidate dim, ``(*L[:-1], L[-1] * P, ·)``, for a single model."""
    lead, p = o.shape[:-2], o.shape[-2]
    fn = _checked(model) if check else getattr(model, "predict_unchecked", model.predict)
    pred = fn(o.reshape(*lead[:-1], lead[-1] * p, o.shape[-1]), a.reshape(*lead[:-1], lead[-1] * p, a.shape[-1]))
    if pred.reward.shape != (*lead[:-1], lead[-1] * p) or pred.next_obs.shape[:-1] != pred.reward.shape:
        raise ValueError(f"model: expected predict to return next_obs {(*lead[:-1], lead[-1] * p, o.shape[-1])} and reward "
                         f"{(*lead[:-1], lead[-1] * p)}, got {tuple(pred.next_obs.shape)} and {tuple(pred.reward.shape)}")
    return type(pred)(*(None if t is None else t.reshape(*lead, p, *t.shape[len(lead):]) for t in pred))


def _rollout_particles(model, obs: torch.Tensor, actions: torch.Tensor, discount: float, particles: int,
                       propagation: str, generator: torch.Generator | None, value: ValueFn | None = None) -> torch.Tensor:
    """Mean over ``particles`` of each candidate's return, propagating them as ``propagation`` says.

    Gaussian predictions (``next_obs_std``) are sampled, so particles also carry aleatoric noise. A ``value``
    is applied to each particle's final state (``(*L, P, O)``) before the mean.
    """
    lead = actions.shape[:-2]
    o = obs.unsqueeze(-2).expand(*lead, obs.shape[-1]).unsqueeze(-2).expand(*lead, particles, obs.shape[-1])
    acts = actions.movedim(-2, 0).unsqueeze(-2).expand(actions.shape[-2], *lead, particles, actions.shape[-1])
    ret = torch.zeros(*lead, particles, dtype=obs.dtype, device=obs.device)
    e = _ensemble_size(model) if propagation != "mean" else None
    w = 1.0
    for h in range(acts.shape[0]):
        if e is not None and propagation == "ts1" and h > 0:
            perm = torch.rand(*lead, particles, generator=generator, device=obs.device).argsort(-1)
            o = o.gather(-2, perm.unsqueeze(-1).expand_as(o))
            ret = ret.gather(-1, perm)
        pred = (_ts_predict(model, o, acts[h], e, h == 0) if e is not None
                else _flat_predict(model, o, acts[h], h == 0))
        ret.add_(pred.reward, alpha=w)
        o = pred.next_obs
        if pred.next_obs_std is not None:
            o = o + pred.next_obs_std * torch.randn(o.shape, generator=generator, device=o.device, dtype=o.dtype)
        w *= discount
    if value is not None:
        ret.add_(_terminal_value(value, o, ret), alpha=w)
    return ret.mean(-1)


def _rollout_chunk(model, obs: torch.Tensor, actions: torch.Tensor, discount: float,
                   value: ValueFn | None = None) -> torch.Tensor:
    lead = actions.shape[:-2]  # (N,) or (B, N)
    o = obs.unsqueeze(-2).expand(*lead, obs.shape[-1])
    acts = actions.movedim(-2, 0).contiguous()  # (H, ..., A): one copy, then each step is a contiguous view
    ret = torch.zeros(lead, dtype=obs.dtype, device=obs.device)
    w = 1.0
    # the first step goes through the model's input validation; later steps feed the model its own outputs and
    # the planner's (already checked) actions, so a model that offers it skips re-validating (5-8% of a rollout);
    # outputs are checked once, on the returns (imagine / Objective)
    first, unchecked = _checked(model), getattr(model, "predict_unchecked", model.predict)
    for h in range(acts.shape[0]):
        pred = (first if h == 0 else unchecked)(o, acts[h])
        if pred.reward.shape != lead or pred.next_obs.shape != o.shape:
            raise ValueError(f"model: expected predict to return next_obs {tuple(o.shape)} and reward {tuple(lead)}, "
                             f"got {tuple(pred.next_obs.shape)} and {tuple(pred.reward.shape)}")
        ret.add_(pred.reward, alpha=w)
        o = pred.next_obs
        w *= discount
    if value is not None:
        ret.add_(_terminal_value(value, o, ret), alpha=w)
    return ret


def _disagreement(next_obs: torch.Tensor, scale: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Members' mean ``(..., O)`` and disagreement ``(...)`` of stacked predictions ``next_obs (E, ..., O)``.

    The disagreement is the variance across members (population variance, by hand: ``torch.var`` over
    the leading dim measured far slower on CPU), divided by ``scale**2`` (the prior's Δobs std, so the
    units are the normalized Δobs the members were trained on) and averaged over the ``O`` dims.
    """
    mean = next_obs.mean(0)
    var = (next_obs - mean).square_().mean(0)
    if scale is not None:
        var = var / scale.square()
    return mean, var.mean(-1)


def _bonus_scale(model, obs: torch.Tensor) -> torch.Tensor | None:
    """The model's ``delta_scale`` (per-dim std of its Δobs normalizer, ``(O,)``) on ``obs``'s device, or None."""
    scale = getattr(model, "delta_scale", None)
    if not isinstance(scale, torch.Tensor):
        return None
    return scale.to(device=obs.device, dtype=obs.dtype)


def _rollout_bonus(model, obs: torch.Tensor, actions: torch.Tensor, discount: float, particles: int,
                   propagation: str, generator: torch.Generator | None, bonus_weight: float,
                   reward_weight: float, value: ValueFn | None = None) -> torch.Tensor:
    """``reward_weight * return + bonus_weight * sum_h discount**h * disagreement_h``, mean over particles.

    The return includes ``discount**H * value(s_H)`` of each particle's final state if ``value`` is given.

    Every member predicts every particle once per step (one ``predict_members`` call, ``E`` times the rows
    of trajectory sampling's per-member call); the disagreement comes from those predictions, and each
    particle moves on with its own member's (``"ts1"`` / ``"tsinf"``: member ``p % E`` after TS-1's
    permutation, as :func:`_ts_predict`) or with the members' mean (``"mean"``; sampled from the
    members' spread with more than one particle).
    """
    lead = actions.shape[:-2]
    e = _ensemble_size(model)
    scale = _bonus_scale(model, obs)
    o = obs.unsqueeze(-2).expand(*lead, obs.shape[-1]).unsqueeze(-2).expand(*lead, particles, obs.shape[-1])
    acts = actions.movedim(-2, 0).unsqueeze(-2).expand(actions.shape[-2], *lead, particles, actions.shape[-1])
    ret = torch.zeros(*lead, particles, dtype=obs.dtype, device=obs.device)
    pick = torch.arange(particles, device=obs.device)
    member = pick % e
    first, unchecked = _checked(model, members=True), model.predict_members_unchecked
    w = 1.0
    for h in range(acts.shape[0]):
        if propagation == "ts1" and h > 0:
            perm = torch.rand(*lead, particles, generator=generator, device=obs.device).argsort(-1)
            o = o.gather(-2, perm.unsqueeze(-1).expand_as(o))
            ret = ret.gather(-1, perm)
        pred = (first if h == 0 else unchecked)(o, acts[h])  # (E, *lead, P, ·)
        if pred.next_obs.shape != (e, *o.shape) or pred.reward.shape != (e, *o.shape[:-1]):
            raise ValueError(f"model: expected predict_members to return next_obs {(e, *o.shape)} and reward "
                             f"{(e, *o.shape[:-1])}, got {tuple(pred.next_obs.shape)} and {tuple(pred.reward.shape)}")
        mean, bonus = _disagreement(pred.next_obs, scale)
        if propagation == "mean":
            reward, nxt = pred.reward.mean(0), mean
            std = None
            if particles > 1:
                var = (pred.next_obs - mean).square().mean(0)
                if pred.next_obs_std is not None:
                    var = var + pred.next_obs_std.square().mean(0)
                std = var.sqrt()
        else:
            reward = pred.reward.movedim(0, -1)[..., pick, member]
            nxt = pred.next_obs.movedim(0, -2)[..., pick, member, :]
            std = None if pred.next_obs_std is None else pred.next_obs_std.movedim(0, -2)[..., pick, member, :]
        ret.add_(reward, alpha=w * reward_weight).add_(bonus, alpha=w * bonus_weight)
        o = nxt
        if std is not None:
            o = o + std * torch.randn(o.shape, generator=generator, device=o.device, dtype=o.dtype)
        w *= discount
    if value is not None:
        ret.add_(_terminal_value(value, o, ret), alpha=w * reward_weight)
    return ret.mean(-1)


def _rollout(model, obs: torch.Tensor, actions: torch.Tensor, discount: float, max_rows: int | None,
             particles: int = 1, propagation: str = "ts1", generator: torch.Generator | None = None,
             bonus_weight: float = 0.0, reward_weight: float = 1.0, value: ValueFn | None = None) -> torch.Tensor:
    """The unchecked rollout: ``obs (B, O)``, ``actions (B, N, H, A)`` -> ``(B, N)`` (or without ``B``).

    Candidates are independent, so rolling them out in chunks along ``N`` gives the same returns.
    Without a bonus the rollout is the plain one (scaled by ``reward_weight`` if it is not 1). A ``value`` is
    called on each chunk's final states.
    """
    n = actions.shape[-3]
    if max_rows is None and obs.device.type != "cpu":
        chunk = n
    else:
        # rows of one model call per candidate: its particles, or every member of an ensemble's mean
        e = _ensemble_size(model)
        # the bonus has every member predict every particle
        per_candidate = particles * (e if e is not None and (propagation == "mean" or bonus_weight > 0) else 1)
        chunk = max(1, (max_rows or CPU_MAX_ROWS) // ((obs.shape[0] if obs.dim() == 2 else 1) * per_candidate))

    def run(acts: torch.Tensor) -> torch.Tensor:
        if bonus_weight > 0:
            return _rollout_bonus(model, obs, acts, discount, particles, propagation, generator, bonus_weight,
                                  reward_weight, value)
        if reward_weight != 1.0:
            return run_plain(acts) * reward_weight
        return run_plain(acts)

    def run_plain(acts: torch.Tensor) -> torch.Tensor:
        if particles == 1 and (propagation == "mean" or _ensemble_size(model) is None):
            return _rollout_chunk(model, obs, acts, discount, value)
        return _rollout_particles(model, obs, acts, discount, particles, propagation, generator, value)

    if chunk >= n:
        return run(actions)
    return torch.cat([run(actions[..., i:i + chunk, :, :]) for i in range(0, n, chunk)], dim=-1)


def _check_generator(generator: object, obs: torch.Tensor) -> None:
    if generator is not None and (not isinstance(generator, torch.Generator) or generator.device.type != obs.device.type):
        got = f"one on {generator.device}" if isinstance(generator, torch.Generator) else type(generator).__name__
        raise ValueError(f"generator: expected None or a torch.Generator on {obs.device}, got {got}")


def _check_particles(model, particles: object, propagation: object) -> int:
    """``particles`` checked against the model; ``None``: one per member for an ensemble, else 1."""
    if not isinstance(propagation, str) or propagation not in PROPAGATIONS:
        raise ValueError(f"propagation: expected one of {'|'.join(PROPAGATIONS)}, got {propagation!r}")
    e = _ensemble_size(model)
    if particles is None:
        return e if e is not None and propagation != "mean" else 1
    p = check_int("particles", particles, 1)
    if e is not None and propagation != "mean" and p % e:
        raise ValueError(f"particles: expected a multiple of the ensemble size {e} for propagation {propagation!r} "
                         f"(each member takes particles/E of them), got {p}")
    return p


def _check_weights(model, bonus_weight: object, reward_weight: object) -> tuple[float, float]:
    """``(bonus_weight, reward_weight)`` as floats >= 0, not both 0; a bonus needs an ensemble model."""
    b = check_float("bonus_weight", bonus_weight, 0.0)
    r = check_float("reward_weight", reward_weight, 0.0)
    if b == 0.0 and r == 0.0:
        raise ValueError("reward_weight/bonus_weight: expected at least one of them > 0 (the objective would be "
                         "constant), got 0.0 and 0.0")
    e = _ensemble_size(model)
    if b > 0.0 and (e is None or e < 2):
        got = f"a single {type(model).__name__}" if e is None else f"an ensemble of {e} member"
        raise ValueError(f"bonus_weight: the information bonus is the disagreement of an ensemble's members, so it "
                         f"needs an ensemble model of >= 2 members (ensemble_size and predict_members, e.g. an Ensemble "
                         f"learner with size > 1); got bonus_weight={b} with {got}")
    return b, r


def imagine(model: DynamicsModel, obs: torch.Tensor, actions: torch.Tensor, *, discount: float = 1.0,
            max_rows: int | None = None, particles: int | None = None, propagation: str = "ts1",
            generator: torch.Generator | None = None, bonus_weight: float = 0.0,
            reward_weight: float = 1.0, value: ValueFn | None = None) -> torch.Tensor:
    """Discounted return of each action sequence, rolling ``model`` forward from ``obs``.

    ``returns = sum_h discount**h * reward_h`` where ``reward_h`` is the model's predicted reward for
    step ``h``, and the next observation is the model's ``next_obs``. With one particle (the default)
    a Gaussian model's mean is used, no sampling: the rollout is deterministic.

    **Terminal value** (TD-MPC2). With ``value`` the return bootstraps from the state after the last
    imagined step: ``sum_{h<H} discount**h * reward_h + discount**H * value(s_H)`` (TD-MPC2 uses
    ``Q(s_H, pi(s_H))``; pass that as a state value). With particles the value is taken of each
    particle's final state before the mean over particles; it is part of the return, so
    ``reward_weight`` scales it too.

    **Trajectory sampling** (PETS). Each candidate is rolled out as ``particles`` particles and its
    return is their mean. For an ensemble (a model with ``ensemble_size`` ``E`` and
    ``predict_members``, e.g. :class:`~meta_mbrl.adaptation.EnsembleAdaptedModel`) particle ``p`` is
    propagated by member ``p % E`` (``"tsinf"``), or by a member re-drawn at every step (``"ts1"``: a
    random permutation of each candidate's particles per step, so every member still takes ``P / E``
    of them in one stacked call); ``"mean"`` uses the members' mean. With more than one particle,
    Gaussian predictions are sampled (``generator``), and so is ``"mean"`` from the members' spread.

    In the batched case the model is always called with inputs ``(B, N, ·)`` (never flattened to
    ``B * N``), so a task-batched :class:`~meta_mbrl.adaptation.AdaptedModel` with ``num_tasks=B``
    rolls each env under its own adapted model.

    Args:
        model: a DynamicsModel, ``predict(obs (..., O), act (..., A)) -> Prediction``.
        obs: start observation(s), on the model's device and dtype.
        actions: candidate sequences, same dtype and device as ``obs``.
        discount: per-step discount in ``[0, 1]``.
        max_rows: cap on the rows of one model call, ``B * n * particles`` (``B * n * E`` for an ensemble's
            ``"mean"``); the ``N`` candidates are rolled out in chunks of ``n`` (same returns, better cache
            use). ``None``: :data:`CPU_MAX_ROWS` on CPU, no chunking on other devices.
        particles: particles per candidate ``P`` (a multiple of ``E`` for an ensemble under TS); ``None``:
            ``E`` for an ensemble (one particle per member), else 1.
        propagation: one of :data:`PROPAGATIONS` (used by ensembles).
        generator: the randomness of TS-1's draws and of Gaussian sampling.
        bonus_weight: weight (>= 0) of the information bonus (see below); 0 leaves the returns exactly
            those of the plain rollout. Needs an ensemble model.
        reward_weight: weight (>= 0) of the predicted return.
        value: ``None`` or a callable ``value(states (..., O)) -> (...)`` (any leading dims: it is called on
            each chunk's final states, ``(n, O)``, ``(B, n, O)`` or with particles ``(B, n, P, O)``), in
            the model's dtype and device (its output is cast to them).

    **Information bonus** (Plan2Explore, Sekar et al. 2020; MAX, Shyam et al. 2019). With
    ``bonus_weight > 0`` the objective is ``reward_weight * sum_h discount**h * reward_h +
    bonus_weight * sum_h discount**h * bonus_h``, where ``bonus_h`` is the members' disagreement about
    the next observation of step ``h``: the variance across members of their ``next_obs``, in the
    model's normalized Δobs units (divided by the square of its ``delta_scale``, the prior's Δobs std,
    when it has one), averaged over the observation dims. Every member predicts every particle once per
    step (``E`` times the rows of trajectory sampling), and the particles move on as ``propagation``
    says; with one particle and ``"mean"`` that is the members' mean (deterministic).

    Returns:
        The returns, ``(N,)`` or ``(B, N)``.

    Shapes:
        ``obs (O,)``, ``actions (N, H, A)`` -> ``(N,)``; ``obs (B, O)``, ``actions (B, N, H, A)`` -> ``(B, N)``.

    Raises:
        ValueError: on mismatched shapes (obs vs model dims, ``B`` of obs vs actions), a dtype other than the
            model's (no silent casts: ``obs`` must have the model's dtype, ``actions`` ``obs``'s), non-finite input,
            non-finite returns (naming ``obs`` / ``actions``: the rollout overflowed), bad discount, or particles
            that are not a multiple of the ensemble size; negative ``bonus_weight`` / ``reward_weight`` (or both 0),
            or ``bonus_weight > 0`` with a model that is not an ensemble; a ``value`` that is not callable or
            returns values of the wrong shape or non-finite ones (naming ``value``).

    Example:
        >>> import torch
        >>> from meta_mbrl.models import FunctionModel
        >>> model = FunctionModel(lambda o, a: (o + a, -(o + a).square().sum(-1)), obs_dim=1, act_dim=1)
        >>> imagine(model, torch.tensor([1.0]), -torch.ones(2, 3, 1))  # positions 0, -1, -2
        tensor([-5., -5.])
        >>> value = lambda s: 10 * s[..., 0]  # a terminal value: 0 - 0.5 * 1 - 0.25 * 4 + 0.125 * (10 * -2)
        >>> imagine(model, torch.tensor([1.0]), -torch.ones(2, 3, 1), discount=0.5, value=value)
        tensor([-4., -4.])
    """
    _check_obs(model, obs)
    _check_actions(model, obs, actions)
    discount = check_float("discount", discount, 0.0, 1.0)
    if max_rows is not None:
        check_int("max_rows", max_rows, 1)
    particles = _check_particles(model, particles, propagation)
    _check_generator(generator, obs)
    bonus_weight, reward_weight = _check_weights(model, bonus_weight, reward_weight)
    _check_value(value)
    ret = _rollout(model, obs, actions, discount, max_rows, particles, propagation, generator, bonus_weight,
                   reward_weight, value)
    return _check_returns(ret, obs, actions)


class Objective:
    """The imagined-return objective of a model from fixed start observations: ``actions -> returns``.

    Built by :func:`make_objective`; the observations are checked once here, the actions on each call.

    Args:
        model: a DynamicsModel.
        obs: start observations ``(O,)`` or ``(B, O)``: a numpy array of floats (an environment's, any float
            width) is converted to the model's dtype; a tensor must have the model's dtype or one that
            casts to it exactly (float32 for a float64 model), and is moved to the model's device. The
            model's dtype and device come from its ``dtype``/``device`` attributes or parameters.
        discount: per-step discount in ``[0, 1]``.
        max_rows: cap on the rows of one model call (see :func:`imagine`).
        particles / propagation / generator: trajectory sampling (see :func:`imagine`).
        bonus_weight / reward_weight: the information bonus of an ensemble and the return's weight (see :func:`imagine`).
        value: ``None`` or a terminal value ``states (..., O) -> (...)`` added as ``discount**H * value(s_H)``
            (see :func:`imagine`).

    Shapes:
        ``obs (O,)``: ``(N, H, A) -> (N,)``; ``obs (B, O)``: ``(B, N, H, A) -> (B, N)``.
        Returns come back on the device of the actions.

    Example:
        >>> import torch
        >>> from meta_mbrl.models import FunctionModel
        >>> model = FunctionModel(lambda o, a: (o + a, -(o + a).square().sum(-1)), obs_dim=1, act_dim=1)
        >>> objective = Objective(model, torch.zeros(3, 1))
        >>> objective(torch.zeros(3, 5, 2, 1)).shape
        torch.Size([3, 5])
    """

    def __init__(self, model: DynamicsModel, obs: torch.Tensor | np.ndarray, discount: float = 1.0,
                 max_rows: int | None = None, particles: int | None = None, propagation: str = "ts1",
                 generator: torch.Generator | None = None, bonus_weight: float = 0.0, reward_weight: float = 1.0,
                 *, value: ValueFn | None = None):
        obs = _model_obs(model, obs)
        self.model, self.obs = model, obs
        self.discount = check_float("discount", discount, 0.0, 1.0)
        self.max_rows = None if max_rows is None else check_int("max_rows", max_rows, 1)
        self.particles, self.propagation = _check_particles(model, particles, propagation), propagation
        _check_generator(generator, obs)
        self.generator = generator
        self.bonus_weight, self.reward_weight = _check_weights(model, bonus_weight, reward_weight)
        _check_value(value)
        self.value = value

    @property
    def batched(self) -> bool:
        """Whether the objective plans for ``B`` envs (``obs (B, O)``)."""
        return self.obs.dim() == 2

    @property
    def num_envs(self) -> int | None:
        """``B``, or ``None`` for one unbatched env."""
        return self.obs.shape[0] if self.batched else None

    def __call__(self, actions: torch.Tensor) -> torch.Tensor:
        """Returns of ``actions`` (see Shapes).

        ``actions`` must have the observations' dtype or one that casts to it exactly (the planners'
        float32 samples for a float64 model).

        Raises:
            ValueError: on bad shapes or dtype, non-finite actions, or non-finite returns (naming
                ``obs`` / ``actions``, as :func:`imagine`).
        """
        _check_actions(self.model, self.obs, actions, lossless=True)
        acts = actions.to(device=self.obs.device, dtype=self.obs.dtype)
        ret = _rollout(self.model, self.obs, acts, self.discount, self.max_rows, self.particles, self.propagation,
                       self.generator, self.bonus_weight, self.reward_weight, self.value)
        return _check_returns(ret, self.obs, acts).to(actions.device)

    def __repr__(self) -> str:
        bonus = f", bonus_weight={self.bonus_weight}, reward_weight={self.reward_weight}" if self.bonus_weight else ""
        value = "" if self.value is None else f", value={getattr(self.value, '__name__', type(self.value).__name__)}"
        return f"Objective({type(self.model).__name__}, obs={tuple(self.obs.shape)}, discount={self.discount}{bonus}{value})"


def make_objective(model: DynamicsModel, obs: torch.Tensor | np.ndarray, discount: float = 1.0,
                   max_rows: int | None = None, particles: int | None = None, propagation: str = "ts1",
                   generator: torch.Generator | None = None, bonus_weight: float = 0.0,
                   reward_weight: float = 1.0, *, value: ValueFn | None = None) -> Objective:
    """Builds the objective ``actions -> imagine(model, obs, actions, discount=discount, ...)``.

    Args:
        model: a DynamicsModel (e.g. an :class:`~meta_mbrl.adaptation.AdaptedModel`).
        obs: current observations, ``(O,)`` for one env or ``(B, O)`` for ``B`` envs.
        discount: per-step discount in ``[0, 1]``.
        max_rows: cap on the rows of one model call (see :func:`imagine`).
        particles / propagation / generator: trajectory sampling across an ensemble's members (see :func:`imagine`).
        bonus_weight / reward_weight: the ensemble-disagreement bonus and the return's weight (see :func:`imagine`).
        value: ``None`` or a terminal value ``states (..., O) -> (...)``, e.g. a critic's ``Q(s, pi(s))``; the
            returns become ``sum_{h<H} discount**h * reward_h + discount**H * value(s_H)`` (see :func:`imagine`).

    Returns:
        An :class:`Objective`, the callable the planners consume.

    Example:
        >>> import torch
        >>> from meta_mbrl.models import FunctionModel
        >>> model = FunctionModel(lambda o, a: (o + a, -(o + a).square().sum(-1)), obs_dim=1, act_dim=1)
        >>> make_objective(model, torch.tensor([1.0]))(-torch.ones(4, 2, 1))
        tensor([-1., -1., -1., -1.])
    """
    return Objective(model, obs, discount, max_rows, particles, propagation, generator, bonus_weight, reward_weight,
                     value=value)
