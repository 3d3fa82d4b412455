"""MetaMBRLAgent: a meta-learned prior, adapted on what the agent sees, driving an MPC planner.

The agent is the piece a user drops into a control loop, and the piece Meta-World's own judge,
``metaworld.evaluation.metalearning_evaluation``, scores unchanged: it implements that harness's
``MetaLearningAgent`` protocol (``init / adapt_action / step / adapt / eval_action / reset``).

Two ways of adapting, combinable:

- **Episodic** (PEARL / MAML evaluation protocol): transitions seen during adaptation episodes are
  kept; ``adapt()`` adapts the prior on (the most recent ``max_context`` of) them, and evaluation
  episodes plan with that adapted model.
- **Online** (GrBAL, Nagabandi et al. 2019): with ``online=True`` the agent re-adapts the prior on
  the last ``context_size`` transitions every ``adapt_every`` steps, before planning. It needs
  rewards, so it runs wherever the agent is told transitions: ``observe`` in a user's loop, ``step``
  during Meta-World's adaptation episodes, and ``collect`` (which calls ``observe``). Meta-World's
  evaluation episodes pass observations only, so there the model adapted by ``adapt()`` is used.

Exploration during adaptation episodes: the planner on the current (adapted) model, plus
temporally correlated noise of std ``explore_noise`` (in units of the half action range). Pure
noise explores the arm's reachable space but rarely touches objects; pure exploitation of an
unadapted prior keeps repeating the prior's mistakes; planned actions plus noise visit states the
model thinks are rewarding while still covering their neighbourhood (PETS / GrBAL collect with the
planner too).

**Value-guided** (TD-MPC2-style, with ``actor_critic``): a task-conditioned value and policy prior
(:class:`~meta_mbrl.models.ActorCritic`) infer a task vector from the same history (re-inferred at every
episode start and on ``adapt()``); exploring actions are the policy's samples (its entropy explores;
the posterior sharpens episode by episode as PEARL's does), and scored actions are planned over the
adapted model with the policy's proposals and the value beyond the horizon (``mode="plan"``), or the
policy's mean action (``mode="policy"``).
"""

from __future__ import annotations

from collections import deque

import numpy as np
import torch

from meta_mbrl.data.policies import ColoredNoisePolicy
from meta_mbrl.planning import MPCController
from meta_mbrl.types import Transitions

__all__ = ["MetaMBRLAgent"]


class MetaMBRLAgent:
    """Adapts a meta-learned prior to the task at hand and acts with model-predictive control.

    Args:
        learner: a MetaLearner (``adapt(context) -> AdaptedModel``; ``learner.model`` is the prior).
        planner: a planner (``plan(objective, init_mean)``), e.g. ``CEM(...)``.
        num_envs: environments acted in at once (``B``), one task each.
        online: GrBAL-style re-adaptation on the last ``context_size`` transitions before acting.
        adapt_every: steps between online re-adaptations.
        context_size: transitions of the online context (GrBAL: 16; more is steadier).
        max_context: most recent transitions kept per env for ``adapt()`` (episodic adaptation).
        adapt_opts: extra keyword arguments of ``learner.adapt`` (e.g. ``{"steps": 5}``).
        explore_noise: std of the exploration noise added in ``adapt_action``, relative to the half
            action range (0: plan greedily).
        replan_every: replan every k steps (in between, the cached plan is played).
        particles / propagation: trajectory sampling across an ensemble's members (PETS TS-1 / TS-inf,
            see :class:`~meta_mbrl.planning.MPCController`); ``None`` particles: one per member.
        seed: seeds the exploration noise and the trajectory sampling.
        bonus_weight: weight (>= 0) of the information bonus in the planner's objective: the
            disagreement of an ensemble's members about the next observation (Plan2Explore / MAX, see
            :func:`~meta_mbrl.planning.imagine`); > 0 needs an ensemble learner. Used to explore
            training tasks; 0 (the default) plans on the predicted return alone.
        reward_weight: weight (>= 0) of the predicted return in the objective (0 with a bonus: pure exploration).
        actor_critic: an :class:`~meta_mbrl.models.ActorCritic` (value and policy prior); ``None`` (the default) is
            the flat planner on imagined rewards alone.
        mode: with ``actor_critic``: ``"plan"`` (planner + terminal value + policy proposals) or ``"policy"``
            (the policy's mean action, no planning) for scored actions.
        plan_share: with ``actor_critic``: the share of exploring steps (``adapt_action``) that are planned
            (with the policy's proposals) instead of sampled from the policy.
        reward_fn: ``None`` or a known reward ``(obs, act, next_obs) -> reward`` the planner uses instead of the
            model's (see :class:`~meta_mbrl.planning.MPCController`), e.g. ``suite.reward_fn``.

    Example:
        >>> import numpy as np, torch
        >>> from meta_mbrl import MAML, DynamicsMLP
        >>> from meta_mbrl.planning import CEM
        >>> learner = MAML(DynamicsMLP(4, 2, hidden=(16,)))
        >>> agent = MetaMBRLAgent(learner, CEM(-np.ones(2), np.ones(2), horizon=5, population=20, iterations=2), num_envs=3)
        >>> agent.act(np.zeros((3, 4))).shape
        (3, 2)
    """

    def __init__(
        self,
        learner,
        planner,
        num_envs: int = 1,
        *,
        online: bool = False,
        adapt_every: int = 1,
        context_size: int = 32,
        max_context: int = 2000,
        adapt_opts: dict | None = None,
        explore_noise: float = 0.3,
        replan_every: int = 1,
        particles: int | None = None,
        propagation: str = "ts1",
        seed: int | None = None,
        bonus_weight: float = 0.0,
        reward_weight: float = 1.0,
        actor_critic=None,
        mode: str = "plan",
        plan_share: float = 0.0,
        policy_samples: int = 24,
        reward_fn=None,
    ):
        if num_envs < 1:
            raise ValueError(f"num_envs: expected >= 1, got {num_envs}")
        if adapt_every < 1 or context_size < 1 or max_context < 1:
            raise ValueError(
                f"adapt_every/context_size/max_context: expected >= 1, got {adapt_every}/{context_size}/{max_context}"
            )
        if explore_noise < 0:
            raise ValueError(f"explore_noise: expected >= 0, got {explore_noise}")
        self.learner, self.planner, self.num_envs = learner, planner, int(num_envs)
        self.online, self.adapt_every, self.context_size = bool(online), int(adapt_every), int(context_size)
        self.max_context, self.adapt_opts, self.explore_noise = int(max_context), dict(adapt_opts or {}), float(explore_noise)
        model = learner.model
        self.obs_dim, self.act_dim = model.obs_dim, model.act_dim
        ref = next(model.parameters())
        self.device, self.dtype = ref.device, ref.dtype
        self.low, self.high = (np.asarray(torch.as_tensor(b).cpu(), np.float32) for b in (planner.action_low, planner.action_high))
        if mode not in ("plan", "policy"):
            raise ValueError(f"mode: expected 'plan' or 'policy', got {mode!r}")
        if not 0.0 <= plan_share <= 1.0:
            raise ValueError(f"plan_share: expected a share in [0, 1], got {plan_share}")
        if actor_critic is not None and (actor_critic.obs_dim, actor_critic.act_dim) != (model.obs_dim, model.act_dim):
            raise ValueError(f"actor_critic: expected obs/act dims {(model.obs_dim, model.act_dim)} (the prior's), got "
                             f"{(actor_critic.obs_dim, actor_critic.act_dim)}")
        self.actor_critic, self.mode, self.plan_share = actor_critic, mode, float(plan_share)
        self.controller = MPCController(planner, num_envs=self.num_envs, replan_every=replan_every, device=self.device,
                                        particles=particles, propagation=propagation, seed=seed,
                                        bonus_weight=bonus_weight, reward_weight=reward_weight,
                                        policy_samples=policy_samples if actor_critic is not None else 0,
                                        reward_fn=reward_fn)
        self._gen = torch.Generator(device=self.device)
        self._gen.manual_seed(int(seed) if seed is not None else int(np.random.SeedSequence().entropy % 2**63))
        self._rng = np.random.default_rng(seed)
        self.bonus_weight, self.reward_weight = self.controller.bonus_weight, self.controller.reward_weight
        self._noise = ColoredNoisePolicy(self.low, self.high, beta=1.0, scale=1.0, seed=seed)
        self.env_steps = {"adapt": 0, "eval": 0, "act": 0}
        self.init()
        e = getattr(self.model, "ensemble_size", None)
        if self.bonus_weight > 0 and not (isinstance(e, int) and e >= 2):
            got = type(learner).__name__ + (f" of {e} member" if isinstance(e, int) else "")
            raise ValueError(f"bonus_weight: the information bonus is the disagreement of an ensemble's members, so it "
                             f"needs an ensemble learner of >= 2 members (e.g. Ensemble(..., size=3)); got "
                             f"bonus_weight={self.bonus_weight} with {got}")

    # ------------------------------------------------------------------ state
    def init(self) -> None:
        """Forgets the current task: empty context, the unadapted prior, fresh warm starts."""
        self._history = [deque(maxlen=self.max_context) for _ in range(self.num_envs)]
        self._pending: list[tuple | None] = [None] * self.num_envs
        self._since_adapt = 0
        self.model = self.learner.prior(self.num_envs)
        self.controller.reset()
        self._noise.reset(np.ones(self.num_envs, dtype=bool))
        self._infer_task()

    def prime(self, contexts) -> None:
        """Adds earlier transitions of each env's task to its history, then re-infers the task vectors.

        ``contexts``: one entry per env, ``None`` or rows ``(obs, act, reward, next_obs)`` (e.g. a task's replay,
        so that collection on a training task acts on its posterior).
        """
        if len(contexts) != self.num_envs:
            raise ValueError(f"contexts: expected one entry per env ({self.num_envs}), got {len(contexts)}")
        for h, rows in zip(self._history, contexts):
            h.extend(rows or [])
        self._infer_task()

    def _infer_task(self) -> None:
        """The actor-critic's task vectors from each env's history (its prior vector while a history is empty)."""
        if self.actor_critic is None:
            self.task = None
            return
        ac = self.actor_critic
        with torch.no_grad():
            z = ac.encode(None, num_tasks=self.num_envs).clone()
            for i, h in enumerate(self._history):
                if h:
                    ctx = Transitions(*(torch.as_tensor(np.stack([r[f] for r in h]), device=self.device,
                                                        dtype=self.dtype)[None] for f in range(4)))
                    z[i] = ac.encode(ctx)[0]
        self.task = ac.bind(z, self._gen)

    def reset(self, env_mask=None) -> None:
        """Starts new episodes in the envs of ``env_mask`` (all if None): fresh warm starts and noise."""
        mask = np.ones(self.num_envs, dtype=bool) if env_mask is None else np.asarray(env_mask, dtype=bool)
        if mask.shape != (self.num_envs,):
            raise ValueError(f"env_mask: expected shape ({self.num_envs},), got {mask.shape}")
        if mask.any():
            self.controller.reset(mask)
            self._noise.reset(mask)
            self._infer_task()  # the posterior after the episodes seen so far

    @property
    def num_context(self) -> list[int]:
        """Transitions held per env for adaptation."""
        return [len(h) for h in self._history]

    # ------------------------------------------------------------------ observing
    def observe(self, transition: Transitions) -> None:
        """Records one step of every env: a Transitions of ``(B, ·)`` arrays (numpy or torch)."""
        fields = [np.asarray(x.detach().cpu() if torch.is_tensor(x) else x, dtype=np.float32) for x in transition]
        obs, act, rew, nxt = fields
        for name, x, shape in (("obs", obs, (self.num_envs, self.obs_dim)), ("act", act, (self.num_envs, self.act_dim)),
                               ("reward", rew, (self.num_envs,)), ("next_obs", nxt, (self.num_envs, self.obs_dim))):
            if x.shape != shape:
                raise ValueError(f"transition.{name}: expected shape {shape}, got {x.shape}")
        for i in range(self.num_envs):
            self._history[i].append((obs[i], act[i], rew[i], nxt[i]))
        self._since_adapt += 1

    def step(self, timestep) -> None:
        """Meta-World's ``Timestep(observation, action, reward, terminated, truncated, ...)`` hook.

        A Timestep carries no next observation: a step's transition is completed by the next
        step's observation. The last step of each episode (whose next observation the harness does
        not pass on) is dropped.
        """
        obs = np.asarray(timestep.observation, dtype=np.float32)
        ended = np.logical_or(timestep.terminated, timestep.truncated)
        for i in range(self.num_envs):
            p = self._pending[i]
            if p is not None and not p[3]:
                self._history[i].append((p[0], p[1], p[2], obs[i]))
            self._pending[i] = (obs[i], np.asarray(timestep.action[i], np.float32), np.float32(timestep.reward[i]), bool(ended[i]))
        self._since_adapt += 1
        if self.actor_critic is not None and np.any(ended):
            # Meta-World's adaptation episodes call no reset: the posterior is refreshed when an episode ends
            self._infer_task()

    def _context(self, last: int | None) -> Transitions | None:
        n = min(len(h) for h in self._history)
        if last is not None:
            n = min(n, last)
        if n == 0:
            return None
        rows = [list(h)[-n:] for h in self._history]
        fields = [np.stack([np.stack([r[f] for r in env_rows]) for env_rows in rows]) for f in range(4)]
        return Transitions(*(torch.as_tensor(x, device=self.device, dtype=self.dtype) for x in fields))

    def adapt(self) -> None:
        """Adapts the prior on the transitions recorded so far (the most recent ``max_context`` per env)."""
        ctx = self._context(None)
        self.model = self.learner.adapt(ctx, **self.adapt_opts) if ctx is not None else self.learner.prior(self.num_envs)
        self._since_adapt = 0
        self._infer_task()

    def _maybe_adapt_online(self) -> None:
        if self.online and self._since_adapt >= self.adapt_every:
            ctx = self._context(self.context_size)
            if ctx is not None:
                self.model = self.learner.adapt(ctx, **self.adapt_opts)
                self._since_adapt = 0

    # ------------------------------------------------------------------ acting
    def act(self, obs) -> np.ndarray:
        """Planned actions ``(B, A)`` for observations ``(B, O)`` with the current adapted model."""
        self._maybe_adapt_online()
        self.env_steps["act"] += self.num_envs
        return self._scored(obs)

    def _plan(self, obs) -> np.ndarray:
        if self.task is None:
            return self.controller.act(obs, self.model)
        return self.controller.act(obs, self.model, value=self.task.value, policy=self.task.policy)

    def _policy(self, obs, deterministic: bool) -> np.ndarray:
        o = torch.as_tensor(np.asarray(obs), dtype=self.dtype, device=self.device)
        return self.task.act(o, deterministic).cpu().numpy().astype(np.float32)

    def _scored(self, obs) -> np.ndarray:
        if self.task is not None and self.mode == "policy":
            return self._policy(obs, deterministic=True)
        return self._plan(obs)

    def __call__(self, obs) -> np.ndarray:
        """As a ``collect`` policy the agent gathers data: the exploring action of ``adapt_action``."""
        return self.adapt_action(obs)[0]

    def adapt_action(self, obs) -> tuple[np.ndarray, dict]:
        """Exploration action during adaptation episodes: the plan plus correlated noise."""
        self._maybe_adapt_online()
        self.env_steps["adapt"] += self.num_envs
        if self.task is not None:  # the policy's samples explore; a share of steps is planned
            if self.plan_share > 0 and self._rng.random() < self.plan_share:
                return self._plan(obs), {}
            return self._policy(obs, deterministic=False), {}
        action = self.controller.act(obs, self.model)
        if self.explore_noise > 0:
            noise = self._noise(np.asarray(obs)) - (self.high + self.low) / 2
            action = np.clip(action + self.explore_noise * noise, self.low, self.high)
        return action.astype(np.float32), {}

    def eval_action(self, obs) -> np.ndarray:
        """Evaluation action: the plan on the adapted model, no exploration noise."""
        self.env_steps["eval"] += self.num_envs
        return self._scored(obs)

