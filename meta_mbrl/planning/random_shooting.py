"""Random shooting: the best of uniformly sampled action sequences (GrBAL's planner)."""

from __future__ import annotations

import torch

from meta_mbrl.planning.base import ObjectiveFn, Planner, check_int

__all__ = ["RandomShooting"]


class RandomShooting(Planner):
    """Samples ``population`` sequences uniformly in the bounds and returns the best one.

    The first candidate is ``init_mean`` itself (the warm start of an MPC controller), so the result
    is never worse than the initial guess under the objective. ``proposals`` (``plan(..., proposals=)``)
    are candidates too: the best of all ``population + M`` is returned.

    Args:
        action_low, action_high: action bounds ``(A,)``.
        horizon: planning horizon ``H``.
        population: candidate sequences ``N`` (including ``init_mean``).
        seed: int seed, ``torch.Generator`` on ``device``, or ``None``.
        device: where sampling happens.

    Shapes:
        ``plan(objective, init_mean (H, A)) -> (H, A)`` with objective ``(N, H, A) -> (N,)``;
        ``plan(objective, init_mean (B, H, A)) -> (B, H, A)`` with objective ``(B, N, H, A) -> (B, N)``.

    Example:
        >>> import torch
        >>> rs = RandomShooting([-1.0], [1.0], horizon=2, population=1000, seed=0)
        >>> plan = rs.plan(lambda a: -((a - 0.3) ** 2).sum((-2, -1)))
        >>> bool((plan - 0.3).abs().max() < 0.1)
        True
    """

    def __init__(self, action_low, action_high, horizon: int, population: int = 1000, *,
                 seed: int | torch.Generator | None = None, device: torch.device | str = "cpu"):
        super().__init__(action_low, action_high, horizon, seed=seed, device=device)
        self.population = check_int("population", population, 1)

    def _plan(self, objective: ObjectiveFn, mean: torch.Tensor, batched: bool,
              proposals: torch.Tensor | None = None) -> torch.Tensor:
        b, h, a = mean.shape
        u = torch.rand(b, self.population, h, a, generator=self.generator, device=self.device)
        samples = torch.addcmul(self.action_low, u, self.action_high - self.action_low)
        samples[:, 0] = mean
        if proposals is not None:
            samples = torch.cat([samples, proposals], dim=1)  # (B, N + M, H, A)
        ret = self._evaluate(objective, samples, batched)
        idx = ret.argmax(dim=1)
        return samples[torch.arange(b, device=self.device), idx]
