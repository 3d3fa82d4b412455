"""The value and policy prior of the value-guided agent: a task encoder, a Q ensemble with targets, a policy.

TD-MPC2 (Hansen et al. 2024) plans a few steps with its model and bootstraps the rest with a learned
``Q(s, pi(s))``; its policy prior also proposes action sequences to the planner. Here the goal is
hidden, so value and policy are conditioned on a **task vector** ``z`` inferred from the task's
transitions, as PEARL (Rakelly et al. 2019) does: a permutation-invariant encoder maps a context of
``(obs, act, reward, next_obs - obs)`` to ``z`` by a mean over transitions, and is trained through the
critic's TD loss. An empty context (the first steps of a new task) gets a learned ``z0``.

The encoder belongs to the actor-critic, not to the dynamics learner: value and policy then work with
every prior alike (MAML's adapted weights carry no task vector; a context learner's vector is trained
for dynamics, not for values), and the dynamics learner stays exactly as meta-trained.

Shapes: ``T`` tasks, ``K`` context transitions, ``Z`` the task vector, ``O``/``A`` observation and action dims.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from meta_mbrl.checks import check_float, check_int
from meta_mbrl.models.normalizer import Normalizer
from meta_mbrl.types import Transitions

__all__ = ["ActorCritic", "TaskActorCritic", "mlp"]


def mlp(inp: int, hidden: tuple[int, ...], out: int, layer_norm: bool = True) -> nn.Sequential:
    """Linear layers with LayerNorm and Mish between them (TD-MPC2's block), no activation on the output."""
    layers: list[nn.Module] = []
    d = inp
    for h in hidden:
        layers += [nn.Linear(d, h)] + ([nn.LayerNorm(h)] if layer_norm else []) + [nn.Mish()]
        d = h
    layers.append(nn.Linear(d, out))
    return nn.Sequential(*layers)


def _as_hidden(name: str, hidden) -> tuple[int, ...]:
    hidden = tuple(hidden)
    if not hidden or any(isinstance(h, bool) or not isinstance(h, int) or h < 1 for h in hidden):
        raise ValueError(f"{name}: expected a non-empty tuple of positive ints, got {hidden!r}")
    return hidden


class ActorCritic(nn.Module):
    """Task encoder, ``num_q`` Q heads (with target copies) and a tanh-Gaussian policy, all task-conditioned.

    Args:
        obs_dim, act_dim: dimensions ``O`` and ``A``.
        action_low, action_high: action bounds ``(A,)``; the policy's tanh output is scaled to them.
        hidden: hidden layers of the Q heads and the policy.
        latent_dim: size ``Z`` of the task vector.
        encoder_hidden: hidden layers of the per-transition encoder.
        num_q: Q heads (>= 2: targets and the policy use the minimum of two).
        discount: the TD discount (about 0.99 for 500-step episodes).
        reward_scale: rewards are multiplied by this before TD learning (Meta-World's up to 10 per step
            would give values near 1000); :meth:`value` divides it out again, so it returns values in
            reward units, comparable to an imagined return.
        log_std_min / log_std_max: bounds of the policy's log std (before tanh).

    Shapes:
        ``encode(context (T, K, ·)) -> (T, Z)``; ``q(obs (..., O), act (..., A), z (..., Z)) -> (num_q, ...)``;
        ``pi(obs (..., O), z (..., Z)) -> (action (..., A), log_prob (...))``; ``value(obs, z) -> (...)``.

    Example:
        >>> import torch
        >>> ac = ActorCritic(4, 2, [-1, -1], [1, 1], hidden=(32,), latent_dim=3, encoder_hidden=(16,))
        >>> z = ac.encode(None, num_tasks=5)  # no context yet: the learned prior vector
        >>> a, logp = ac.pi(torch.zeros(5, 4), z)
        >>> a.shape, logp.shape, ac.q(torch.zeros(5, 4), a, z).shape, bool(a.abs().max() <= 1)
        (torch.Size([5, 2]), torch.Size([5]), torch.Size([2, 5]), True)
    """

    def __init__(self, obs_dim: int, act_dim: int, action_low, action_high, *, hidden: tuple[int, ...] = (256, 256),
                 latent_dim: int = 16, encoder_hidden: tuple[int, ...] = (128, 128), num_q: int = 2,
                 discount: float = 0.99, reward_scale: float = 0.1, log_std_min: float = -5.0, log_std_max: float = 1.0):
        super().__init__()
        self.obs_dim, self.act_dim = check_int("obs_dim", obs_dim, 1), check_int("act_dim", act_dim, 1)
        self.latent_dim = check_int("latent_dim", latent_dim, 1)
        self.num_q = check_int("num_q", num_q, 2)
        self.hidden, self.encoder_hidden = _as_hidden("hidden", hidden), _as_hidden("encoder_hidden", encoder_hidden)
        self.discount = check_float("discount", discount, 0.0, 1.0)
        self.reward_scale = check_float("reward_scale", reward_scale, 0.0, low_open=True)
        self.log_std_min, self.log_std_max = float(log_std_min), float(log_std_max)
        if not self.log_std_min < self.log_std_max:
            raise ValueError(f"log_std_max: expected > log_std_min ({log_std_min}), got {log_std_max}")
        low = torch.as_tensor(action_low, dtype=torch.float32).reshape(-1)
        high = torch.as_tensor(action_high, dtype=torch.float32).reshape(-1)
        if low.shape != (self.act_dim,) or high.shape != (self.act_dim,) or not bool((high > low).all()):
            raise ValueError(f"action_low/action_high: expected two ({self.act_dim},) arrays with high > low, got "
                             f"{low.tolist()} and {high.tolist()}")
        self.register_buffer("act_mid", (high + low) / 2)
        self.register_buffer("act_half", (high - low) / 2)
        self.obs_norm = Normalizer(self.obs_dim)
        o, a, z = self.obs_dim, self.act_dim, self.latent_dim
        self.encoder = mlp(2 * o + a + 1, self.encoder_hidden, z)
        self.z0 = nn.Parameter(torch.zeros(z))
        self.qs = nn.ModuleList(mlp(o + a + z, self.hidden, 1) for _ in range(self.num_q))
        self.target_qs = nn.ModuleList(mlp(o + a + z, self.hidden, 1) for _ in range(self.num_q))
        self.target_qs.load_state_dict(self.qs.state_dict())
        self.target_qs.requires_grad_(False)
        self.policy = mlp(o + z, self.hidden, 2 * a)
        self.log_alpha = nn.Parameter(torch.zeros(()))

    def init_kwargs(self) -> dict:
        """The constructor's arguments, to rebuild this module from a checkpoint."""
        return dict(obs_dim=self.obs_dim, act_dim=self.act_dim,
                    action_low=(self.act_mid - self.act_half).tolist(), action_high=(self.act_mid + self.act_half).tolist(),
                    hidden=self.hidden, latent_dim=self.latent_dim, encoder_hidden=self.encoder_hidden,
                    num_q=self.num_q, discount=self.discount, reward_scale=self.reward_scale,
                    log_std_min=self.log_std_min, log_std_max=self.log_std_max)

    # ------------------------------------------------------------------ task inference
    def encode(self, context: Transitions | None, num_tasks: int | None = None) -> torch.Tensor:
        """Task vectors ``(T, Z)`` from contexts ``(T, K, ·)``: the mean of per-transition codes (plus ``z0``).

        ``context=None`` (or ``K = 0``) gives the learned prior vector ``z0`` for ``num_tasks`` tasks.
        The mean makes ``z`` invariant to the order of the context and defined for any ``K``.
        """
        if context is None or context.obs.shape[-2] == 0:
            t = num_tasks if context is None else context.obs.shape[0]
            if t is None:
                raise ValueError("num_tasks: expected the number of tasks when no context is given, got None")
            return self.z0.expand(check_int("num_tasks", t, 1), self.latent_dim)
        obs, act, rew, nxt = context
        if obs.dim() != 3 or obs.shape[-1] != self.obs_dim:
            raise ValueError(f"context.obs: expected shape (T, K, {self.obs_dim}), got {tuple(obs.shape)}")
        n_obs = self.obs_norm.normalize(obs)
        delta = (nxt - obs) / self.obs_norm.std
        x = torch.cat([n_obs, self._norm_act(act), rew.unsqueeze(-1) * self.reward_scale, delta], -1)
        return self.encoder(x).mean(-2) + self.z0

    # ------------------------------------------------------------------ heads
    def _norm_act(self, act: torch.Tensor) -> torch.Tensor:
        return (act - self.act_mid) / self.act_half

    def q(self, obs: torch.Tensor, act: torch.Tensor, z: torch.Tensor, target: bool = False) -> torch.Tensor:
        """Q values ``(num_q, ...)`` of ``(obs, act)`` in task ``z``, in scaled reward units."""
        x = torch.cat([self.obs_norm.normalize(obs), self._norm_act(act), z], -1)
        heads = self.target_qs if target else self.qs
        return torch.stack([h(x).squeeze(-1) for h in heads])

    def pi(self, obs: torch.Tensor, z: torch.Tensor, *, deterministic: bool = False,
           generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """A tanh-Gaussian action (in the bounds) and its log-probability ``(...)``; the mean's tanh if ``deterministic``."""
        out = self.policy(torch.cat([self.obs_norm.normalize(obs), z], -1))
        mu, log_std = out.chunk(2, -1)
        log_std = self.log_std_min + 0.5 * (self.log_std_max - self.log_std_min) * (torch.tanh(log_std) + 1)
        if deterministic:
            u = mu
        else:
            eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
            u = mu + eps * log_std.exp()
        logp = (-0.5 * ((u - mu) / log_std.exp()).square() - log_std - 0.5 * math.log(2 * math.pi)).sum(-1)
        # tanh change of variables, numerically stable form: log(1 - tanh(u)^2) = 2 (log 2 - u - softplus(-2u))
        logp = logp - (2 * (math.log(2.0) - u - nn.functional.softplus(-2 * u))).sum(-1) - torch.log(self.act_half).sum()
        return self.act_mid + self.act_half * torch.tanh(u), logp

    def value(self, obs: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """``V(s) = min over two heads of Q(s, pi_mean(s))`` in reward units (divided by ``reward_scale``)."""
        a, _ = self.pi(obs, z, deterministic=True)
        return self.q(obs, a, z)[:2].min(0).values / self.reward_scale

    @property
    def alpha(self) -> torch.Tensor:
        """The entropy temperature ``exp(log_alpha)``."""
        return self.log_alpha.exp()

    @torch.no_grad()
    def update_targets(self, tau: float) -> None:
        """Polyak averaging of the target Q heads: ``target <- (1 - tau) target + tau q``."""
        for t, s in zip(self.target_qs.parameters(), self.qs.parameters()):
            t.lerp_(s, tau)

    def bind(self, z: torch.Tensor, generator: torch.Generator | None = None) -> TaskActorCritic:
        """The value and policy of ``T`` tasks with task vectors ``z (T, Z)``, as callables for the planner."""
        return TaskActorCritic(self, z, generator)


class TaskActorCritic:
    """An :class:`ActorCritic` bound to ``T`` tasks' vectors: the terminal value and the policy prior of a planner.

    Inputs lead with the task dim ``T`` (one env per task); ``z (T, Z)`` is broadcast over the middle dims.

    Shapes:
        ``value(obs (T, ..., O)) -> (T, ...)``; ``policy(obs (T, ..., O)) -> actions (T, ..., A)`` (sampled);
        ``act(obs (T, O), deterministic) -> (T, A)``.

    Example:
        >>> import torch
        >>> ac = ActorCritic(4, 2, [-1, -1], [1, 1], hidden=(32,), latent_dim=3, encoder_hidden=(16,))
        >>> bound = ac.bind(ac.encode(None, num_tasks=3))
        >>> bound.value(torch.zeros(3, 7, 2, 4)).shape, bound.policy(torch.zeros(3, 7, 4)).shape
        (torch.Size([3, 7, 2]), torch.Size([3, 7, 2]))
    """

    def __init__(self, ac: ActorCritic, z: torch.Tensor, generator: torch.Generator | None = None):
        if z.dim() != 2 or z.shape[-1] != ac.latent_dim:
            raise ValueError(f"z: expected shape (T, {ac.latent_dim}), got {tuple(z.shape)}")
        self.ac, self.z, self.generator = ac, z.detach(), generator

    def _z(self, obs: torch.Tensor) -> torch.Tensor:
        if obs.shape[0] != self.z.shape[0]:
            raise ValueError(f"obs: expected a leading task dim of {self.z.shape[0]}, got shape {tuple(obs.shape)}")
        z = self.z.to(obs.dtype).reshape(self.z.shape[0], *([1] * (obs.dim() - 2)), self.z.shape[1])
        return z.expand(*obs.shape[:-1], self.z.shape[1])

    def value(self, obs: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.ac.value(obs, self._z(obs))

    def policy(self, obs: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.ac.pi(obs, self._z(obs), generator=self.generator)[0]

    def act(self, obs: torch.Tensor, deterministic: bool = False) -> torch.Tensor:
        with torch.no_grad():
            return self.ac.pi(obs, self._z(obs), deterministic=deterministic, generator=self.generator)[0]
