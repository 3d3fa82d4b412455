"""Naive few-shot predictors: what an adapted model has to beat before it can be said to have adapted.

Each is fit on the same context a learner adapts on — ``Transitions (W, K, ·)``, one context per
evaluation window — and predicts for that window's inputs ``(W, L, ·)``, like a task-batched
:class:`~meta_mbrl.adaptation.AdaptedModel`:

- :class:`Persistence`: nothing moves (``next_obs = obs``) and the reward stays the last reward seen in
  the context. Meta-World's rewards change slowly, so this is a strong reward baseline.
- :class:`ContextMean`: the context's mean observation change and mean reward, whatever the input.
- :class:`Ridge`: a linear model of ``[obs, act, 1]`` to ``[Δobs, reward]`` fit on the K transitions by
  ridge regression, its penalty chosen per window by leave-one-out error (closed form) from a grid.

Inputs and targets are scaled with the prior network's normalizers (fixed, from the training data),
so the penalty means the same thing for every dimension.
"""

from __future__ import annotations

import torch

from meta_mbrl.types import Prediction, Transitions

__all__ = ["Persistence", "ContextMean", "Ridge", "NAIVE_BASELINES", "fit_baselines", "RIDGE_PENALTIES"]

RIDGE_PENALTIES = (1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0, 1000.0)
"""Penalties tried by :class:`Ridge`, in units of the normalized features (one per window wins by leave-one-out)."""


def _check_context(context: Transitions) -> int:
    if not isinstance(context, Transitions) or context.obs.dim() != 3 or context.obs.shape[1] < 1:
        shape = tuple(context.obs.shape) if isinstance(context, Transitions) else type(context).__name__
        raise ValueError(f"context: expected Transitions with obs of shape (W, K, O), K >= 1, got {shape}")
    return context.obs.shape[0]


def _broadcast(x: torch.Tensor, obs: torch.Tensor) -> torch.Tensor:
    """``x (W, D)`` broadcast to ``obs``'s batch shape ``(W, ..., D)``."""
    return x.reshape(x.shape[0], *([1] * (obs.dim() - 2)), x.shape[-1]).expand(*obs.shape[:-1], x.shape[-1])


class Persistence:
    """``next_obs = obs``; reward = the last reward of each window's context.

    Args:
        context: ``Transitions (W, K, ·)``.

    Example:
        >>> import torch
        >>> ctx = Transitions(torch.zeros(2, 3, 4), torch.zeros(2, 3, 1), torch.tensor([[0., 1., 2.], [5., 5., 7.]]),
        ...                   torch.ones(2, 3, 4))
        >>> p = Persistence(ctx).predict(torch.ones(2, 6, 4), torch.zeros(2, 6, 1))
        >>> p.reward[:, 0].tolist(), bool((p.next_obs == 1).all())
        ([2.0, 7.0], True)
    """

    name = "persistence"

    def __init__(self, context: Transitions):
        _check_context(context)
        self.last_reward = context.reward[:, -1]

    def predict(self, obs: torch.Tensor, act: torch.Tensor) -> Prediction:
        return Prediction(obs.clone(), _broadcast(self.last_reward[:, None], obs)[..., 0])


class ContextMean:
    """``next_obs = obs + mean Δobs of the context``; reward = the context's mean reward.

    Args:
        context: ``Transitions (W, K, ·)``.

    Example:
        >>> import torch
        >>> ctx = Transitions(torch.zeros(1, 2, 3), torch.zeros(1, 2, 1), torch.tensor([[1., 3.]]), torch.ones(1, 2, 3))
        >>> p = ContextMean(ctx).predict(torch.zeros(1, 4, 3), torch.zeros(1, 4, 1))
        >>> p.reward.tolist(), p.next_obs[0, 0].tolist()
        ([[2.0, 2.0, 2.0, 2.0]], [1.0, 1.0, 1.0])
    """

    name = "context_mean"

    def __init__(self, context: Transitions):
        _check_context(context)
        self.delta = (context.next_obs - context.obs).mean(1)
        self.reward = context.reward.mean(1)

    def predict(self, obs: torch.Tensor, act: torch.Tensor) -> Prediction:
        return Prediction(obs + _broadcast(self.delta, obs), _broadcast(self.reward[:, None], obs)[..., 0])


class Ridge:
    """Per-window ridge regression of ``[Δobs, reward]`` on ``[obs, act, 1]``, penalty by leave-one-out error.

    The penalty is chosen separately for the observation change and for the reward, per window, from
    ``penalties``, by the closed-form leave-one-out error ``sum_i (e_i / (1 - H_ii))^2`` of the fit on the
    K context transitions. Features are normalized; the bias is a constant 1 feature, penalized like the rest.

    Args:
        context: ``Transitions (W, K, ·)``.
        model: the prior network, whose ``obs_norm``, ``delta_norm`` and ``reward_norm`` scale the
            features and targets (a :class:`~meta_mbrl.models.DynamicsMLP`).
        penalties: the penalties tried.

    Example:
        >>> import torch
        >>> from meta_mbrl.models import DynamicsMLP
        >>> net = DynamicsMLP(2, 1, hidden=(8,))
        >>> obs, act = torch.randn(1, 64, 2), torch.randn(1, 64, 1)
        >>> nxt, rew = obs + 0.5 * act, 2.0 * obs[..., 0]               # linear: ridge recovers it
        >>> r = Ridge(Transitions(obs, act, rew, nxt), net)
        >>> p = r.predict(obs, act)
        >>> bool(torch.allclose(p.next_obs, nxt, atol=1e-2)), bool(torch.allclose(p.reward, rew, atol=1e-2))
        (True, True)
    """

    name = "ridge"

    def __init__(self, context: Transitions, model, penalties=RIDGE_PENALTIES):
        _check_context(context)
        if not penalties or any(not float(p) > 0 for p in penalties):
            raise ValueError(f"penalties: expected positive numbers, got {penalties!r}")
        self.model = model
        x = self._features(context.obs, context.act).double()                      # (W, K, F)
        y_dyn = model.delta_norm.normalize(context.next_obs - context.obs).double()  # (W, K, O)
        y_rew = model.reward_norm.normalize(context.reward.unsqueeze(-1)).double()  # (W, K, 1)
        self.w_dyn = self._fit(x, y_dyn, penalties)
        self.w_rew = self._fit(x, y_rew, penalties)

    def _features(self, obs: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
        ones = torch.ones(*obs.shape[:-1], 1, dtype=obs.dtype, device=obs.device)
        return torch.cat([self.model.obs_norm.normalize(obs), act, ones], -1)

    @staticmethod
    def _fit(x: torch.Tensor, y: torch.Tensor, penalties) -> torch.Tensor:
        """Weights ``(W, F, D)`` of the penalty with the lowest leave-one-out error, per window.

        Works in the K x K kernel form (``w = X^T (X X^T + λI)^{-1} y``), exact for any K and F.
        """
        w_count, k, f = x.shape
        gram = x @ x.transpose(1, 2)                                            # (W, K, K)
        eye = torch.eye(k, dtype=x.dtype, device=x.device)
        best_err = torch.full((w_count,), float("inf"), dtype=x.dtype, device=x.device)
        best_w = torch.zeros(w_count, f, y.shape[-1], dtype=x.dtype, device=x.device)
        for lam in penalties:
            inv = torch.linalg.inv(gram + float(lam) * eye)                     # (W, K, K)
            alpha = inv @ y                                                       # (W, K, D)
            hat = gram @ inv                                                      # (W, K, K)
            resid = y - hat @ y
            loo = resid / (1 - torch.diagonal(hat, dim1=1, dim2=2)).clamp_min(1e-6).unsqueeze(-1)
            err = (loo ** 2).mean((1, 2))
            better = err < best_err
            best_err = torch.where(better, err, best_err)
            best_w = torch.where(better[:, None, None], x.transpose(1, 2) @ alpha, best_w)
        return best_w

    def predict(self, obs: torch.Tensor, act: torch.Tensor) -> Prediction:
        x = self._features(obs, act).double()
        flat = x.reshape(x.shape[0], -1, x.shape[-1])                             # (W, N, F)
        m = self.model
        delta = m.delta_norm.denormalize((flat @ self.w_dyn).to(obs.dtype).reshape(*obs.shape))
        reward = m.reward_norm.denormalize((flat @ self.w_rew).to(obs.dtype)).reshape(*obs.shape[:-1])
        return Prediction(obs + delta, reward)


NAIVE_BASELINES = ("persistence", "context_mean", "ridge")
"""The naive methods every few-shot table shows beside the learners."""


def fit_baselines(context: Transitions, model) -> dict[str, object]:
    """Every naive baseline fit on ``context (W, K, ·)``, by name (:data:`NAIVE_BASELINES`)."""
    return {"persistence": Persistence(context), "context_mean": ContextMean(context), "ridge": Ridge(context, model)}
