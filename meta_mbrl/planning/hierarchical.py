"""Hierarchical planning: subgoals every ``k`` steps, scored through the model, reached by a low-level MPC.

**High level.** A cross-entropy search over sequences of ``M`` subgoals in a chosen subspace of the
observation (``subgoal_dims``: a point mass's position, a gripper's or an object's position). Subgoal
``m`` is the start's subspace coordinates plus the sum of ``m + 1`` offsets, so a sequence is a chain
of waypoints ``k`` steps apart. Each sequence is scored by **rolling the fine model out** for ``M k``
steps under a cheap tracking controller that heads for the current waypoint: at every imagined step
it tries ``track_samples`` actions (mid-range, each axis at its bounds, then random ones drawn once
per plan) and keeps the one whose predicted next state is nearest the waypoint. The score is the
task's own imagined return along that path, ``sum_t discount**t r_t``, plus ``discount**(M k) V(s_{Mk})``
with a terminal value. Subgoals therefore only shape the route; what is scored is the task, under
the same adapted model (reward and dynamics) every planner uses -- which is what lets the high level
see past a wall that the distance reward alone would have it push against (walls show up in the
model's rollout: the tracker is stopped, and the path scores badly).

**Low level.** The first ``horizon`` actions of the best path are the plan, or, with ``low`` (a
:class:`~meta_mbrl.planning.Planner` such as CEM over the same horizon), the warm start of an MPC
that reaches the first waypoint under a goal-conditioned reward ``-||s_{t+1}[dims] - g_1||`` (the
path itself and any ``proposals`` join its candidates).

The planner honours the planner contract (``plan(objective, init_mean, proposals=None) -> (H, A)`` /
``(B, H, A)``, stateless) and consumes any DynamicsModel through the objective: it needs an
:class:`~meta_mbrl.planning.Objective` (from :func:`~meta_mbrl.planning.make_objective`), whose model,
start observations, discount and value it reads. ``last_subgoals`` keeps the most recent waypoints
for inspection (drawing them). With the default ``subgoal_every=1`` nothing of one plan carries into
the next; ``subgoal_every=n`` keeps the subgoals for ``n`` plans (the high level "every k steps").

Compute: ``iterations * population * M * k * track_samples`` model rows per high-level search, once every
``subgoal_every`` plans, plus the low planner's rollouts; :meth:`HierarchicalPlanner.rows_per_plan` gives the
average per plan (equal to the rows a counting model sees: tested).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

from meta_mbrl.planning.base import ObjectiveFn, Planner, check_float, check_int
from meta_mbrl.types import Prediction

__all__ = ["HierarchicalPlanner", "SubgoalModel"]


class SubgoalModel:
    """A DynamicsModel whose reward is the distance to a subgoal: ``-||next_obs[..., dims] - goal||``.

    The low level's goal-conditioned model: next observations are the wrapped model's, the reward is
    replaced. ``goal`` is ``(D,)`` for one env or ``(B, D)`` for ``B`` envs (task-batched inputs
    ``(B, ..., O)``).

    Example:
        >>> import torch
        >>> from meta_mbrl.models import FunctionModel
        >>> model = FunctionModel(lambda o, a: (o + a, torch.zeros(o.shape[:-1])), obs_dim=2, act_dim=2)
        >>> SubgoalModel(model, [0, 1], torch.tensor([1.0, 4.0])).predict(torch.zeros(3, 2), torch.ones(3, 2)).reward
        tensor([-3., -3., -3.])
    """

    def __init__(self, model, dims: Sequence[int], goal: torch.Tensor):
        self.model, self.dims, self.goal = model, list(dims), goal
        self.obs_dim, self.act_dim = getattr(model, "obs_dim", None), getattr(model, "act_dim", None)
        self.dtype, self.device = getattr(model, "dtype", None), getattr(model, "device", None)

    def predict(self, obs: torch.Tensor, act: torch.Tensor) -> Prediction:
        pred = self.model.predict(obs, act)
        goal = self.goal.to(device=pred.next_obs.device, dtype=pred.next_obs.dtype)
        if goal.dim() == 2:  # (B, D) -> (B, 1, ..., D)
            goal = goal.reshape(goal.shape[0], *([1] * (pred.next_obs.dim() - 2)), goal.shape[1])
        reward = -(pred.next_obs[..., self.dims] - goal).norm(dim=-1)
        return Prediction(pred.next_obs, reward)


class HierarchicalPlanner(Planner):
    """Subgoal planner: a CEM over waypoint sequences scored through the model, and an optional low-level MPC.

    Args:
        action_low, action_high: action bounds ``(A,)``.
        horizon: ``H`` of the returned plan (and of ``low``).
        subgoal_dims: the observation indices subgoals live in (``D`` of them), e.g. ``(0, 1)`` for a point
            mass's position, ``(0, 1, 2)`` for Meta-World's gripper, ``(4, 5, 6)`` for its first object.
        subgoal_scale: std of each waypoint offset at the first iteration, in observation units (a float,
            or ``D`` of them); offsets are clipped to ``3 * subgoal_scale``.
        segment: ``k``, imagined steps between waypoints.
        num_subgoals: ``M``, waypoints per sequence (the high level looks ``M * k`` steps ahead).
        population: waypoint sequences per high-level iteration.
        iterations: high-level CEM iterations.
        elite_frac: fraction of the population kept as elites.
        track_samples: actions the tracking controller tries at every imagined step (>= 1).
        track_lookahead: the tracker compares ``s' + track_lookahead * (s' - s)`` (in the subgoal dims) with the
            waypoint instead of ``s'``: where the move would carry on to, so that momentum is braked in time
            (0: greedy on the next state). The maze measured 3 best of 0 / 2 / 4 / 8.
        subgoal_every: plans between high-level searches. 1 (the default) searches at every plan, and the
            planner is stateless; with ``n > 1`` the subgoals are kept for ``n`` plans (the waypoint of plan ``i``
            is number ``i // k``) and only the low level runs in between, which divides the high level's compute
            by ``n``. :class:`~meta_mbrl.planning.MPCController` ``reset`` clears them (:meth:`reset`).
        low: ``None`` (play the best path's actions) or a Planner with the same horizon and bounds that
            refines them towards the first waypoint (goal-conditioned reward).
        seed: int seed, ``torch.Generator`` on ``device``, or ``None``.
        device: where sampling happens.

    Shapes:
        ``plan(objective, init_mean (H, A)) -> (H, A)``; ``plan(objective, init_mean (B, H, A)) -> (B, H, A)``;
        ``last_subgoals``: ``(B, M, D)``.

    Example:
        >>> import torch
        >>> from meta_mbrl.models import FunctionModel
        >>> from meta_mbrl.planning import make_objective
        >>> model = FunctionModel(lambda o, a: (o + 0.1 * a, -(o + 0.1 * a - 1).norm(dim=-1)), obs_dim=2, act_dim=2)
        >>> planner = HierarchicalPlanner([-1.0, -1.0], [1.0, 1.0], horizon=3, subgoal_dims=(0, 1), seed=0)
        >>> plan = planner.plan(make_objective(model, torch.zeros(2)))
        >>> plan.shape, bool((plan > 0).all())  # heads up and right, towards (1, 1)
        (torch.Size([3, 2]), True)
    """

    def __init__(self, action_low, action_high, horizon: int, *, subgoal_dims: Sequence[int],
                 subgoal_scale: float | Sequence[float] = 0.5, segment: int = 10, num_subgoals: int = 3,
                 population: int = 64, iterations: int = 3, elite_frac: float = 0.125, track_samples: int = 16,
                 track_lookahead: float = 0.0, subgoal_every: int = 1, low: Planner | None = None,
                 seed: int | torch.Generator | None = None,
                 device: torch.device | str = "cpu"):
        super().__init__(action_low, action_high, horizon, seed=seed, device=device)
        dims = list(subgoal_dims) if isinstance(subgoal_dims, (list, tuple, range, np.ndarray)) else None
        if not dims or len(set(dims)) != len(dims):
            raise ValueError(f"subgoal_dims: expected a non-empty sequence of distinct observation indices, got {subgoal_dims!r}")
        self.subgoal_dims = [check_int("subgoal_dims", d, 0) for d in dims]
        try:
            scale = np.asarray(subgoal_scale, dtype=np.float64)
        except (TypeError, ValueError):
            scale = np.array([np.nan])
        scale = np.full(len(dims), float(scale)) if scale.ndim == 0 else scale
        if scale.shape != (len(dims),) or not np.isfinite(scale).all() or (scale <= 0).any():
            raise ValueError(f"subgoal_scale: expected a number > 0 or {len(dims)} of them (one per subgoal dim), "
                             f"got {subgoal_scale!r}")
        self.subgoal_scale = torch.as_tensor(scale, dtype=torch.float32, device=self.device)
        self.segment = check_int("segment", segment, 1)
        self.num_subgoals = check_int("num_subgoals", num_subgoals, 1)
        self.population = check_int("population", population, 2)
        self.iterations = check_int("iterations", iterations, 1)
        frac = check_float("elite_frac", elite_frac, 0.0, 1.0, low_open=True)
        self.num_elites = max(1, math.ceil(frac * self.population - 1e-9))
        self.track_samples = check_int("track_samples", track_samples, 1)
        self.track_lookahead = check_float("track_lookahead", track_lookahead, 0.0)
        self.subgoal_every = check_int("subgoal_every", subgoal_every, 1)
        self._goals: torch.Tensor | None = None  # (B, M, D): the subgoals kept between high-level plans
        self._age: torch.Tensor | None = None  # (B,): plans since they were chosen
        if low is not None:
            if not isinstance(low, Planner):
                raise ValueError(f"low: expected None or a Planner, got {type(low).__name__}")
            if low.horizon != self.horizon or not torch.equal(low.action_low.cpu(), self.action_low.cpu()) \
                    or not torch.equal(low.action_high.cpu(), self.action_high.cpu()):
                raise ValueError(f"low: expected a planner with horizon {self.horizon} and the same action bounds, got "
                                 f"horizon {low.horizon}")
        self.low = low
        self.last_subgoals: torch.Tensor | None = None

    @property
    def lookahead(self) -> int:
        """``M * k``: imagined steps of the high level."""
        return self.num_subgoals * self.segment

    def rows_per_plan(self, num_proposals: int = 0) -> float:
        """Model rows one ``plan`` predicts per env, on average over ``subgoal_every`` plans: the high level's search
        (``iterations * population * M k * track_samples``) once, the kept subgoals' tracking path (``H *
        track_samples``) on the other ``subgoal_every - 1`` plans, and the low planner's rollouts (``iterations *
        (population + 2 + num_proposals) * H``: the best path and the warm start join its candidates)."""
        high = self.iterations * self.population * self.lookahead * self.track_samples
        kept = max(self.horizon, 1) * self.track_samples
        rows = (high + (self.subgoal_every - 1) * kept) / self.subgoal_every
        if self.low is not None:
            rows += self.low.iterations * (getattr(self.low, "population", 0) + 2 + num_proposals) * self.horizon
        return rows

    def _track_actions(self) -> torch.Tensor:
        """``(S, A)``: mid-range, each axis at either bound, then uniform random actions (drawn now)."""
        a = self.action_dim
        fixed = [self.mid]
        for i in range(a):
            for sign in (-1.0, 1.0):
                v = self.mid.clone()
                v[i] = self.mid[i] + sign * self.half_range[i]
                fixed.append(v)
        fixed = torch.stack(fixed)[: self.track_samples]
        rand = self.mid + self.half_range * (2 * torch.rand(max(0, self.track_samples - len(fixed)), a,
                                                            generator=self.generator, device=self.device) - 1)
        return torch.cat([fixed, rand])

    def _rollout(self, objective, o0: torch.Tensor, goals: torch.Tensor, track: torch.Tensor,
                 offset: torch.Tensor | None = None, steps: int | None = None):
        """Scores waypoint sequences ``goals (B, P, M, D)`` from ``o0 (B, O)``: returns ``(B, P)`` and the first ``H``
        tracked actions ``(B, P, H, A)``. ``offset (B,)``: steps already spent on the sequence (the subgoal of imagined
        step ``t`` is number ``(offset + t) // k``, the last one after the end); ``steps``: how far to roll out."""
        model, dims = objective.model, self.subgoal_dims
        b, p = goals.shape[:2]
        s, a = track.shape
        dtype, dev = o0.dtype, o0.device
        acts = track.to(device=dev, dtype=dtype)
        g = goals.to(device=dev, dtype=dtype)
        o = o0[:, None, :].expand(b, p, o0.shape[-1])
        ret = torch.zeros(b, p, dtype=dtype, device=dev)
        chosen = torch.empty(b, p, self.horizon, a, dtype=torch.float32, device=self.device)
        w, batched = 1.0, objective.batched
        offset = torch.zeros(b, dtype=torch.long, device=dev) if offset is None else offset.to(dev)
        env = torch.arange(b, device=dev)
        steps = self.lookahead if steps is None else steps
        aa = acts.expand(b, p, s, a).reshape(b, p * s, a)  # the same tried actions at every step
        if not batched:
            aa = aa[0]
        for t in range(steps):
            oo = o[:, :, None, :].expand(b, p, s, o.shape[-1]).reshape(b, p * s, -1)
            pred = model.predict(oo, aa) if batched else model.predict(oo[0], aa)
            nxt = pred.next_obs.reshape(b, p, s, -1)
            rew = pred.reward.reshape(b, p, s)
            here = nxt[..., dims]  # (B, P, S, D); with momentum, where the move would carry on to:
            ahead = here + self.track_lookahead * (here - o[:, :, None, dims])
            k = ((offset + t) // self.segment).clamp(max=g.shape[2] - 1)  # (B,)
            dist = (ahead - g[env, :, k][:, :, None, :]).norm(dim=-1)  # (B, P, S)
            idx = torch.nan_to_num(dist, nan=math.inf).argmin(-1)  # (B, P)
            o = nxt.gather(2, idx[..., None, None].expand(b, p, 1, nxt.shape[-1]))[:, :, 0]
            ret += w * rew.gather(2, idx[..., None])[..., 0]
            if t < self.horizon:
                chosen[:, :, t] = track[idx].to(self.device)
            w *= objective.discount
        if objective.value is not None:
            v = objective.value(o if batched else o[0])
            ret += w * (v if batched else v[None]).to(dtype)
        if self.horizon > steps:  # the path is shorter than the plan: hold mid-range
            chosen[:, :, steps:] = self.mid
        return torch.nan_to_num(ret.to(device=self.device, dtype=torch.float32), nan=-math.inf), chosen

    def _high_level(self, objective, o0: torch.Tensor, mean: torch.Tensor, track: torch.Tensor):
        """The CEM over subgoal sequences: the best ``(B, M, D)`` and its tracked actions ``(B, H, A)``."""
        b, m, d = mean.shape[0], self.num_subgoals, len(self.subgoal_dims)
        start = o0[:, self.subgoal_dims].to(device=self.device, dtype=torch.float32)  # (B, D)
        limit = 3 * self.subgoal_scale
        mu = torch.zeros(b, m, d, device=self.device)
        std = self.subgoal_scale.expand(b, m, d).clone()
        rows = torch.arange(b, device=self.device)
        best_ret = torch.full((b,), -math.inf, device=self.device)
        best_acts = mean.clone()
        best_goals = start[:, None, :].expand(b, m, d).clone()
        for _ in range(self.iterations):
            off = mu[:, None] + std[:, None] * torch.randn(b, self.population, m, d, generator=self.generator,
                                                           device=self.device)
            off[:, 0] = mu  # the current mean is always a candidate
            off = torch.maximum(torch.minimum(off, limit), -limit)
            goals = start[:, None, None, :] + off  # (B, P, M, D)
            ret, acts = self._rollout(objective, o0, goals, track)
            top, idx = torch.topk(ret, self.num_elites, dim=1)
            better = top[:, 0] > best_ret
            best_ret = torch.where(better, top[:, 0], best_ret)
            best_acts = torch.where(better[:, None, None], acts[rows, idx[:, 0]], best_acts)
            best_goals = torch.where(better[:, None, None], goals[rows, idx[:, 0]], best_goals)
            elites = off[rows[:, None], idx]  # (B, E, M, D)
            mu = elites.mean(1)
            std = (elites.var(1, unbiased=False).sqrt() if self.num_elites > 1 else std).maximum(0.05 * self.subgoal_scale)
        return best_goals, best_acts

    def _plan(self, objective: ObjectiveFn, mean: torch.Tensor, batched: bool,
              proposals: torch.Tensor | None = None) -> torch.Tensor:
        for attr in ("model", "obs", "discount", "value", "batched"):
            if not hasattr(objective, attr):
                raise ValueError("objective: the hierarchical planner rolls the model out itself, so it needs an "
                                 f"Objective from make_objective (with model, obs, discount, value), got "
                                 f"{type(objective).__name__}")
        o0 = objective.obs if objective.batched else objective.obs[None]
        if max(self.subgoal_dims) >= o0.shape[-1]:
            raise ValueError(f"subgoal_dims: expected indices < the observation dim {o0.shape[-1]}, got {self.subgoal_dims}")
        b, m, d = mean.shape[0], self.num_subgoals, len(self.subgoal_dims)
        track = self._track_actions()
        rows = torch.arange(b, device=self.device)
        if (self._goals is None or tuple(self._goals.shape) != (b, m, d)
                or bool((self._age >= self.subgoal_every).any())):
            best_goals, best_acts = self._high_level(objective, o0, mean, track)
            self._goals, self._age = best_goals, torch.zeros(b, dtype=torch.long, device=self.device)
        else:  # keep the subgoals: track them from here, one path per env
            best_goals = self._goals
            _, acts = self._rollout(objective, o0, best_goals[:, None], track, offset=self._age,
                                    steps=max(self.horizon, 1))
            best_acts = acts[:, 0]
        current = best_goals[rows, (self._age // self.segment).clamp(max=m - 1)]  # (B, D)
        self._age = self._age + 1
        self.last_subgoals = best_goals.clone()
        if self.low is None:
            return self.clip(best_acts)
        from meta_mbrl.planning.objective import Objective

        low_obj = Objective(SubgoalModel(objective.model, self.subgoal_dims, current if batched else current[0]),
                            objective.obs, discount=objective.discount)
        cands = [best_acts[:, None], mean[:, None]] + ([] if proposals is None else [proposals])
        props = torch.cat(cands, dim=1)
        out = self.low._plan(low_obj, self.clip(best_acts), batched, props)
        return self.clip(out)

    def reset(self, mask: np.ndarray | torch.Tensor | None = None) -> None:
        """Forgets the kept subgoals (all envs; ``mask`` is accepted for :class:`~meta_mbrl.planning.MPCController`'s
        ``reset(mask)``: any masked env makes the next plan choose new subgoals for all)."""
        if mask is None or bool(np.asarray(mask.cpu() if isinstance(mask, torch.Tensor) else mask).any()):
            self._goals, self._age = None, None

    def __repr__(self) -> str:
        return (f"HierarchicalPlanner(horizon={self.horizon}, subgoal_dims={self.subgoal_dims}, segment={self.segment}, "
                f"num_subgoals={self.num_subgoals}, population={self.population}, iterations={self.iterations}, "
                f"track_samples={self.track_samples}, low={type(self.low).__name__ if self.low else None})")
