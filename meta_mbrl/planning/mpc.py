"""MPCController: receding-horizon control with a planner, warm start and replanning -- the one stateful piece."""

from __future__ import annotations

import inspect
from collections.abc import Callable

import numpy as np
import torch

from meta_mbrl.checks import check_device, check_float_dtype
from meta_mbrl.planning.base import Planner, check_float, check_int, make_generator
from meta_mbrl.planning.objective import PROPAGATIONS, ValueFn, _model_dtype_device, _model_obs, make_objective
from meta_mbrl.protocols import DynamicsModel

__all__ = ["MPCController", "PolicyFn"]

PolicyFn = Callable[[torch.Tensor], torch.Tensor]
"""A policy prior: observations ``(B, M, O)`` -> sampled actions ``(B, M, A)`` (it owns its randomness)."""


def _plan_takes_proposals(planner) -> bool:
    try:
        params = inspect.signature(planner.plan).parameters
    except (TypeError, ValueError):
        return False
    return "proposals" in params or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


class MPCController:
    """Model-predictive control for ``B`` environments at once.

    On a replanning step, ``act`` builds the objective ``make_objective(model, obs)`` and calls
    ``planner.plan(objective, init_mean (B, H, A))`` once for all envs. Each env's ``init_mean`` is
    its previous plan shifted by the number of steps played since (the freed last steps filled with
    mid-range actions), or mid-range actions after :meth:`reset`. Between replanning steps (with
    ``replan_every > 1``) it plays the cached plan. A :meth:`reset` of any env forces a replan at the
    next ``act`` (for all envs, since they are planned together).

    **Value-guided planning** (TD-MPC2). ``act(obs, model, value=, policy=)``: a terminal ``value`` makes
    the objective ``sum_{h<H} discount**h * reward_h + discount**H * value(s_H)``; a ``policy`` prior is
    rolled through the model from each env's observation as ``policy_samples`` action sequences
    (:meth:`policy_proposals`) that the planner evaluates with its own samples in every iteration.

    Args:
        planner: a :class:`~meta_mbrl.planning.base.Planner` (CEM, MPPI, RandomShooting) or anything
            with ``plan(objective, init_mean)``, ``horizon``, ``action_low`` and ``action_high``.
        num_envs: number of environments ``B``.
        replan_every: replan every this many steps (``1 <= replan_every <= H``).
        discount: per-step discount of the imagined returns.
        device: where observations are sent (float32) before the model converts them; should match
            the planner's and the model's device.
        particles / propagation: trajectory sampling of the imagined rollouts (see
            :func:`~meta_mbrl.planning.imagine`): for an ensemble, ``particles`` (default ``E``) split
            across members by ``"ts1"`` / ``"tsinf"``, or the members' ``"mean"``.
        seed: seeds TS-1's member draws and Gaussian sampling.
        bonus_weight: weight (>= 0) of the ensemble-disagreement information bonus in the objective
            (Plan2Explore / MAX; see :func:`~meta_mbrl.planning.imagine`); > 0 needs an ensemble model.
        reward_weight: weight (>= 0) of the imagined return.
        policy_samples: action sequences ``M`` (>= 0) rolled out from the policy prior when ``act`` is given a
            ``policy`` (TD-MPC2: 24); 0 plans without them.
        reward_fn: ``None`` (the model's reward) or a known reward ``(obs, act, next_obs) -> reward`` that replaces
            the model's in every imagined step (:class:`~meta_mbrl.models.KnownRewardModel`; CaDM and PETS plan
            with the env's reward function).

    Shapes:
        ``act(obs (B, O), model) -> actions (B, A)`` (numpy float32); ``last_plan``: ``(B, H, A)``;
        ``policy(obs (B, M, O)) -> actions (B, M, A)``; ``value(states (..., O)) -> (...)``.

    Example:
        >>> import numpy as np
        >>> from meta_mbrl.models import FunctionModel
        >>> from meta_mbrl.planning import CEM
        >>> model = FunctionModel(lambda o, a: (o + a, -(o + a).square().sum(-1)), obs_dim=1, act_dim=1)
        >>> mpc = MPCController(CEM([-1.0], [1.0], horizon=5, population=100, seed=0), num_envs=2)
        >>> mpc.act(np.array([[0.5], [-0.5]]), model).round(1)  # move each env back to 0
        array([[-0.5],
               [ 0.5]], dtype=float32)
        >>> policy = lambda o: -o  # a policy prior: back to 0 in one step
        >>> mpc.policy_proposals(np.array([[0.5], [-0.5]]), model, policy).shape  # (B, M, H, A)
        torch.Size([2, 24, 5, 1])
        >>> mpc.reset()
        >>> mpc.act(np.array([[0.5], [-0.5]]), model, value=lambda s: -s[..., 0].abs(), policy=policy).round(2)
        array([[-0.5],
               [ 0.5]], dtype=float32)
    """

    def __init__(self, planner: Planner, num_envs: int = 1, replan_every: int = 1, discount: float = 1.0,
                 device: torch.device | str = "cpu", particles: int | None = None, propagation: str = "ts1",
                 seed: int | None = None, bonus_weight: float = 0.0, reward_weight: float = 1.0,
                 policy_samples: int = 24, reward_fn=None):
        if reward_fn is not None and not callable(reward_fn):
            raise ValueError(f"reward_fn: expected None or a callable (obs, act, next_obs) -> reward, got "
                             f"{type(reward_fn).__name__}")
        self.reward_fn = reward_fn
        for attr in ("plan", "horizon", "action_low", "action_high"):
            if not hasattr(planner, attr):
                raise ValueError(f"planner: expected a Planner with a {attr!r} attribute, got {type(planner).__name__}")
        self.planner = planner
        self.num_envs = check_int("num_envs", num_envs, 1)
        self.horizon = check_int("planner.horizon", planner.horizon, 1)
        self.replan_every = check_int("replan_every", replan_every, 1)
        if self.replan_every > self.horizon:
            raise ValueError(f"replan_every: expected <= planner.horizon ({self.horizon}), got {self.replan_every}")
        self.discount = check_float("discount", discount, 0.0, 1.0)
        self.device = check_device("device", device)
        if particles is not None:
            check_int("particles", particles, 1)
        if not isinstance(propagation, str) or propagation not in PROPAGATIONS:
            raise ValueError(f"propagation: expected one of {'|'.join(PROPAGATIONS)}, got {propagation!r}")
        self.particles, self.propagation = particles, propagation
        self.bonus_weight = check_float("bonus_weight", bonus_weight, 0.0)
        self.reward_weight = check_float("reward_weight", reward_weight, 0.0)
        if self.bonus_weight == 0.0 and self.reward_weight == 0.0:
            raise ValueError("reward_weight/bonus_weight: expected at least one of them > 0 (the objective would be "
                             "constant), got 0.0 and 0.0")
        self.policy_samples = check_int("policy_samples", policy_samples, 0)
        self._gen = make_generator(seed, self.device)
        self._low = torch.as_tensor(planner.action_low, dtype=torch.float32, device=self.device)
        self._high = torch.as_tensor(planner.action_high, dtype=torch.float32, device=self.device)
        self._low_np, self._high_np = self._low.cpu().numpy(), self._high.cpu().numpy()
        self._mid = (self._low + self._high) / 2
        self._plan: torch.Tensor | None = None  # (B, H, A), the last plan
        self._t = 0  # steps of the last plan played so far
        self._fresh = torch.ones(self.num_envs, dtype=torch.bool, device=self.device)  # envs to start from mid-range
        self.num_plans = 0

    @property
    def action_dim(self) -> int:
        return int(self._low.shape[0])

    @property
    def last_plan(self) -> torch.Tensor | None:
        """The most recent plan ``(B, H, A)``, or ``None`` before the first ``act``."""
        return self._plan

    def warm_start(self) -> torch.Tensor:
        """The ``init_mean (B, H, A)`` the next replanning would use."""
        b, h, a = self.num_envs, self.horizon, self.action_dim
        mid = self._mid.expand(b, h, a)
        if self._plan is None:
            return mid.clone()
        k = self._t
        shifted = torch.cat([self._plan[:, k:], mid[:, :k]], dim=1) if k else self._plan.clone()
        return torch.where(self._fresh[:, None, None], mid, shifted)

    def policy_proposals(self, obs: np.ndarray | torch.Tensor, model: DynamicsModel, policy: PolicyFn) -> torch.Tensor:
        """``policy_samples`` action sequences per env, rolled out from ``policy`` through ``model``.

        From ``o_0 = obs`` expanded to ``(B, M, O)``: ``a_h = clip(policy(o_h))``, ``o_{h+1} = model.predict(o_h,
        a_h).next_obs`` for ``h < H`` (the model's mean prediction, in its dtype and device, under
        ``torch.inference_mode``). The policy samples its own actions (its randomness is its own).

        Args:
            obs: observations ``(B, O)``, converted as in :meth:`act`.
            model: the DynamicsModel to roll the policy through.
            policy: ``policy(obs (B, M, O)) -> actions (B, M, A)``, any float dtype (cast to the model's).

        Returns:
            Proposals ``(B, M, H, A)``, float32 on the controller's device, inside the planner's bounds
            (``M = policy_samples``; ``(B, 0, H, A)`` if it is 0).

        Raises:
            ValueError: on a bad ``obs``, a ``policy`` that is not callable or returns actions of the wrong
                shape or non-finite ones.
        """
        if not callable(policy):
            raise ValueError(f"policy: expected a callable mapping observations (B, M, O) to actions (B, M, A), "
                             f"got {type(policy).__name__}")
        obs = self._obs(obs, model)
        o0 = _model_obs(model, obs)
        b, m, h, a = self.num_envs, self.policy_samples, self.horizon, self.action_dim
        out = torch.empty(b, m, h, a, device=self.device)
        if m == 0:
            return out
        low, high = self._low.to(device=o0.device, dtype=o0.dtype), self._high.to(device=o0.device, dtype=o0.dtype)
        with torch.inference_mode():
            o = o0.unsqueeze(1).expand(b, m, o0.shape[-1])
            for step in range(h):
                act = policy(o)
                if not isinstance(act, torch.Tensor) or tuple(act.shape) != (b, m, a):
                    got = f"shape {tuple(act.shape)}" if isinstance(act, torch.Tensor) else type(act).__name__
                    raise ValueError(f"policy: expected actions of shape {(b, m, a)} for observations of shape "
                                     f"{tuple(o.shape)}, got {got}")
                check_float_dtype("policy", act)
                if not bool(torch.isfinite(act).all()):
                    raise ValueError(f"policy: expected finite actions, got NaN/Inf at step {step}")
                act = torch.maximum(torch.minimum(act.to(device=o.device, dtype=o.dtype), high), low)
                out[:, :, step] = act.to(device=self.device, dtype=torch.float32)
                if step + 1 < h:  # the last state is never used
                    o = model.predict(o, act).next_obs
        return out.clone()  # a normal tensor, usable outside inference mode

    def _obs(self, obs: np.ndarray | torch.Tensor, model: DynamicsModel) -> torch.Tensor:
        """``obs (B, O)`` as a float tensor (numpy converted to the model's dtype) on the controller's device."""
        if isinstance(obs, np.ndarray):
            if obs.dtype.kind != "f":
                raise ValueError(f"obs: expected an array of floats, got dtype {obs.dtype}")
            obs = torch.from_numpy(np.ascontiguousarray(obs)).to(_model_dtype_device(model)[0] or torch.float32)
        if not isinstance(obs, torch.Tensor):
            raise ValueError(f"obs: expected a numpy array or tensor of shape ({self.num_envs}, O), got {type(obs).__name__}")
        check_float_dtype("obs", obs)
        if obs.dim() != 2 or obs.shape[0] != self.num_envs:
            raise ValueError(f"obs: expected shape ({self.num_envs}, O) (num_envs={self.num_envs}), got {tuple(obs.shape)}")
        return obs.to(device=self.device)

    def act(self, obs: np.ndarray | torch.Tensor, model: DynamicsModel, value: ValueFn | None = None,
            policy: PolicyFn | None = None) -> np.ndarray:
        """The next action of each env.

        Args:
            obs: current observations ``(B, O)``: a numpy array of floats (an environment's, any float width,
                converted to the model's dtype, float32 if it names none), or a tensor of the model's dtype
                (or one that casts to it exactly).
            model: the DynamicsModel to plan with (e.g. an adapted model, task-batched with ``num_tasks=B``).
            value: ``None`` or a terminal value ``states (..., O) -> (...)`` in the model's dtype (e.g. a
                critic's ``Q(s, pi(s))``), passed to :func:`~meta_mbrl.planning.make_objective`.
            policy: ``None`` or a policy prior ``obs (B, M, O) -> actions (B, M, A)``; with ``policy_samples > 0``
                its rollouts (:meth:`policy_proposals`) are the planner's ``proposals`` on a replanning step.

        Returns:
            Actions ``(B, A)``, numpy float32, inside the planner's bounds.

        Raises:
            ValueError: if ``obs`` is not ``(B, O)``, not floats, or does not match the model; on a bad ``value``
                or ``policy``; with a policy, if the planner's ``plan`` takes no ``proposals`` (naming ``planner``).
        """
        if self.reward_fn is not None:
            from meta_mbrl.models.known_reward import KnownRewardModel

            model = KnownRewardModel(model, self.reward_fn)
        obs = self._obs(obs, model)
        if policy is not None and not callable(policy):
            raise ValueError(f"policy: expected None or a callable mapping observations (B, M, O) to actions (B, M, A), "
                             f"got {type(policy).__name__}")
        use_policy = policy is not None and self.policy_samples > 0
        if use_policy and not _plan_takes_proposals(self.planner):
            raise ValueError(f"planner: expected a plan(objective, init_mean, proposals=None) that takes the policy's "
                             f"proposals, got {type(self.planner).__name__}.plan without a proposals argument "
                             f"(pass policy=None or set policy_samples=0)")
        if self._plan is None or self._t >= self.replan_every or bool(self._fresh.any()):
            objective = make_objective(model, obs, self.discount,
                                       particles=self.particles, propagation=self.propagation, generator=self._gen,
                                       bonus_weight=self.bonus_weight, reward_weight=self.reward_weight, value=value)
            if use_policy:
                plan = self.planner.plan(objective, self.warm_start(),
                                         proposals=self.policy_proposals(objective.obs, model, policy))
            else:
                plan = self.planner.plan(objective, self.warm_start())
            if tuple(plan.shape) != (self.num_envs, self.horizon, self.action_dim):
                raise ValueError(f"planner: expected a plan of shape {(self.num_envs, self.horizon, self.action_dim)}, "
                                 f"got {tuple(plan.shape)}")
            self._plan = plan.to(device=self.device, dtype=torch.float32)
            self._t = 0
            self._fresh.zero_()
            self.num_plans += 1
        action = self._plan[:, self._t]
        self._t += 1
        return np.clip(action.cpu().numpy().astype(np.float32, copy=False), self._low_np, self._high_np)

    def reset(self, mask: np.ndarray | torch.Tensor | None = None) -> None:
        """Forgets the warm start of the envs in the boolean ``mask (B,)`` (all if ``None``).

        The next ``act`` replans, starting those envs from mid-range actions. A planner that keeps state of its
        own between plans (:class:`~meta_mbrl.planning.HierarchicalPlanner`'s subgoals) has its ``reset(mask)``
        called too.
        """
        planner_reset = getattr(self.planner, "reset", None)
        if mask is None:
            self._fresh.fill_(True)
            if callable(planner_reset):
                planner_reset(None)
            return
        m = torch.as_tensor(np.asarray(mask.cpu() if isinstance(mask, torch.Tensor) else mask))
        if m.dtype != torch.bool or tuple(m.shape) != (self.num_envs,):
            raise ValueError(f"mask: expected a boolean array of shape ({self.num_envs},), got dtype {m.dtype} "
                             f"shape {tuple(m.shape)}")
        self._fresh |= m.to(self.device)
        if callable(planner_reset):
            planner_reset(m)

    def __repr__(self) -> str:
        return (f"MPCController({self.planner!r}, num_envs={self.num_envs}, replan_every={self.replan_every}, "
                f"policy_samples={self.policy_samples})")
