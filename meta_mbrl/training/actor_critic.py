"""TD learning of the task-conditioned value and policy prior (SAC with n-step returns, PEARL-style encoder).

A batch holds ``T`` tasks; for each, a context (a random set of that task's transitions, of a random
size, sometimes empty, so the encoder learns from as little as test time gives it) and ``S`` windows
of ``n`` consecutive transitions inside one trajectory for the n-step target

    ``G = sum_{i<n} discount**i * reward_i * reward_scale
          + discount**n * (min_j Qtarget_j(s_n, a') - alpha * log pi(a' | s_n)),  a' ~ pi(s_n)``.

Meta-World's episodes end by truncation (500 steps), never by termination, so every target bootstraps.
The critics regress on ``G`` and train the encoder (PEARL: the critic's loss shapes ``z``); the policy
maximizes ``min_j Q_j(s, a) - alpha * log pi(a | s)`` with ``z`` detached; ``alpha`` is tuned to a target
entropy of ``-A`` (SAC, Haarnoja et al. 2018).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch

from meta_mbrl.checks import check_float, check_int
from meta_mbrl.data.buffer import TaskBuffer
from meta_mbrl.models.actor_critic import ActorCritic
from meta_mbrl.types import Transitions

__all__ = ["ValueBatch", "sample_value_batch", "ActorCriticTrainer"]


class ValueBatch(NamedTuple):
    """Context and n-step windows of ``T`` tasks.

    Shapes: ``context`` fields ``(T, K, ·)`` (``K`` may be 0) ; ``obs (T, S, O)``, ``act (T, S, A)``,
    ``rewards (T, S, n)``, ``next_obs (T, S, O)`` (the observation ``n`` steps later).
    """

    context: Transitions
    obs: torch.Tensor
    act: torch.Tensor
    rewards: torch.Tensor
    next_obs: torch.Tensor


def sample_value_batch(buffer: TaskBuffer, rng: np.random.Generator, *, tasks: int, per_task: int, context: int,
                       nstep: int = 1, empty_context: float = 0.1, task_ids=None,
                       device: torch.device | str = "cpu") -> ValueBatch:
    """Samples a :class:`ValueBatch` from ``buffer``.

    Args:
        tasks: tasks ``T`` (drawn without replacement when the buffer holds enough).
        per_task: n-step windows ``S`` per task.
        context: the largest context ``K``; each batch draws ``K`` log-uniformly from ``[1, context]``
            (one ``K`` for all tasks), or ``K = 0`` with probability ``empty_context``.
        nstep: ``n`` of the n-step return.
        task_ids: restrict to these tasks of the buffer.

    Example:
        >>> import numpy as np
        >>> buf = TaskBuffer(3, 1)
        >>> for task in ("a", "b"):
        ...     buf.add_trajectory(task, np.zeros((20, 3)), np.zeros((20, 1)), np.ones(20), np.zeros((20, 3)))
        >>> b = sample_value_batch(buf, np.random.default_rng(0), tasks=2, per_task=5, context=8, nstep=3)
        >>> b.obs.shape, b.rewards.shape, b.context.obs.shape[0]
        (torch.Size([2, 5, 3]), torch.Size([2, 5, 3]), 2)
    """
    tasks, per_task = check_int("tasks", tasks, 1), check_int("per_task", per_task, 1)
    context, nstep = check_int("context", context, 0), check_int("nstep", nstep, 1)
    empty_context = check_float("empty_context", empty_context, 0.0, 1.0)
    flat = buffer._flatten()
    windows, single = buffer._valid_starts(nstep), buffer._valid_starts(1)
    allowed = range(len(buffer.task_ids)) if task_ids is None else [buffer.task_ids.index(t) for t in task_ids]
    eligible = np.array([t for t in allowed if windows[t].size], dtype=np.int64)
    if eligible.size == 0:
        raise ValueError(f"nstep: no trajectory of the buffer holds {nstep} transitions")
    chosen = rng.choice(eligible, size=tasks, replace=tasks > eligible.size)
    starts = np.stack([windows[t][rng.integers(windows[t].size, size=per_task)] for t in chosen])  # (T, S)
    k = 0
    if context > 0 and rng.random() >= empty_context:
        k = int(np.exp(rng.uniform(0.0, np.log(context + 1))))
        k = min(max(k, 1), context)
    ctx_idx = np.stack([single[t][rng.integers(single[t].size, size=k)] for t in chosen])  # (T, K)

    def get(field: str, idx: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(flat[field][idx], device=device)

    ctx = Transitions(*(get(f, ctx_idx) for f in ("obs", "act", "reward", "next_obs")))
    steps = starts[..., None] + np.arange(nstep)  # (T, S, n)
    return ValueBatch(ctx, get("obs", starts), get("act", starts), get("reward", steps), get("next_obs", steps[..., -1]))


class ActorCriticTrainer:
    """Optimizers and one update step of an :class:`ActorCritic`; its ``state_dict`` resumes a run exactly.

    Args:
        ac: the actor-critic.
        lr: Adam learning rate of critics + encoder, policy and temperature.
        tau: Polyak rate of the target critics.
        nstep: ``n`` of the n-step target (must match the batches).
        grad_clip: global-norm clip of each loss's gradients.
        target_entropy: the temperature's target; ``None``: ``-A``.
        alpha: a fixed temperature (not tuned); ``None``: tuned toward ``target_entropy``.

    Example:
        >>> import numpy as np, torch
        >>> from meta_mbrl.data.buffer import TaskBuffer
        >>> buf = TaskBuffer(3, 1)
        >>> buf.add_trajectory("a", np.zeros((20, 3)), np.zeros((20, 1)), np.ones(20), np.zeros((20, 3)))
        >>> ac = ActorCritic(3, 1, [-1], [1], hidden=(16,), latent_dim=2, encoder_hidden=(8,))
        >>> trainer = ActorCriticTrainer(ac, nstep=2)
        >>> info = trainer.update(sample_value_batch(buf, np.random.default_rng(0), tasks=1, per_task=8, context=4, nstep=2))
        >>> info["alpha"], trainer.updates  # SAC's temperature starts at 1
        (1.0, 1)
    """

    def __init__(self, ac: ActorCritic, *, lr: float = 3e-4, tau: float = 0.01, nstep: int = 1,
                 grad_clip: float = 20.0, target_entropy: float | None = None, alpha: float | None = None):
        self.ac = ac
        self.lr = check_float("lr", lr, 0.0, low_open=True)
        self.tau = check_float("tau", tau, 0.0, 1.0, low_open=True)
        self.nstep = check_int("nstep", nstep, 1)
        self.grad_clip = check_float("grad_clip", grad_clip, 0.0, low_open=True)
        self.target_entropy = -float(ac.act_dim) if target_entropy is None else float(target_entropy)
        self.fixed_alpha = None if alpha is None else check_float("alpha", alpha, 0.0)
        self.critic_params = [*ac.qs.parameters(), *ac.encoder.parameters(), ac.z0]
        self.policy_params = list(ac.policy.parameters())
        self.critic_opt = torch.optim.Adam(self.critic_params, lr=self.lr)
        self.policy_opt = torch.optim.Adam(self.policy_params, lr=self.lr)
        self.alpha_opt = torch.optim.Adam([ac.log_alpha], lr=self.lr)
        self.updates = 0

    def _step(self, opt, params, loss: torch.Tensor) -> float:
        opt.zero_grad(set_to_none=True)
        loss.backward()
        gnorm = torch.nn.utils.clip_grad_norm_(params, self.grad_clip)
        if not bool(torch.isfinite(loss.detach())) or not bool(torch.isfinite(gnorm)):
            raise FloatingPointError(f"actor-critic: a non-finite loss or gradient ({float(loss.detach())}, "
                                     f"{float(gnorm)}) at update {self.updates}; lower lr (now {self.lr:g})")
        opt.step()
        return float(gnorm)

    def update(self, batch: ValueBatch, generator: torch.Generator | None = None) -> dict[str, float]:
        """One critic, policy and temperature step on ``batch``; returns the losses and statistics."""
        ac, n = self.ac, self.nstep
        if batch.rewards.shape[-1] != n:
            raise ValueError(f"batch.rewards: expected {n} rewards per window (nstep), got {batch.rewards.shape[-1]}")
        t, s = batch.obs.shape[:2]
        z = ac.encode(batch.context, num_tasks=t)[:, None].expand(t, s, ac.latent_dim)
        zd = z.detach()
        alpha = ac.alpha.detach() if self.fixed_alpha is None else torch.tensor(self.fixed_alpha)
        with torch.no_grad():
            a2, logp2 = ac.pi(batch.next_obs, zd, generator=generator)
            q2 = ac.q(batch.next_obs, a2, zd, target=True).min(0).values - alpha * logp2
            disc = ac.discount ** torch.arange(n, dtype=batch.rewards.dtype, device=batch.rewards.device)
            target = (batch.rewards * disc).sum(-1) * ac.reward_scale + ac.discount ** n * q2
        q = ac.q(batch.obs, batch.act, z)
        critic_loss = (q - target).square().mean(dim=(1, 2)).sum()
        critic_gn = self._step(self.critic_opt, self.critic_params, critic_loss)

        a, logp = ac.pi(batch.obs, zd, generator=generator)
        ac.qs.requires_grad_(False)
        try:
            q_pi = ac.q(batch.obs, a, zd).min(0).values
        finally:
            ac.qs.requires_grad_(True)
        policy_loss = (alpha * logp - q_pi).mean()
        policy_gn = self._step(self.policy_opt, self.policy_params, policy_loss)
        if self.fixed_alpha is None:
            alpha_loss = -(ac.log_alpha * (logp.detach() + self.target_entropy)).mean()
            self._step(self.alpha_opt, [ac.log_alpha], alpha_loss)
        ac.update_targets(self.tau)
        self.updates += 1
        return {"critic_loss": float(critic_loss.detach()), "policy_loss": float(policy_loss.detach()),
                "q_mean": float(q.detach().mean()) / ac.reward_scale, "target_mean": float(target.mean()) / ac.reward_scale,
                "entropy": float(-logp.detach().mean()), "alpha": float(alpha),
                "critic_grad_norm": critic_gn, "policy_grad_norm": policy_gn, "context_size": int(batch.context.obs.shape[1])}

    def state_dict(self) -> dict:
        return {"critic_opt": self.critic_opt.state_dict(), "policy_opt": self.policy_opt.state_dict(),
                "alpha_opt": self.alpha_opt.state_dict(), "updates": self.updates}

    def load_state_dict(self, state: dict) -> None:
        self.critic_opt.load_state_dict(state["critic_opt"])
        self.policy_opt.load_state_dict(state["policy_opt"])
        self.alpha_opt.load_state_dict(state["alpha_opt"])
        self.updates = int(state["updates"])
