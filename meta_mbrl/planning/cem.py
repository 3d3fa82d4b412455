"""Cross-entropy method (CEM) planner, mbrl-lib / PETS style."""

from __future__ import annotations

import math

import torch

from meta_mbrl.planning.base import ObjectiveFn, Planner, check_bool, check_float, check_int

__all__ = ["CEM"]


class CEM(Planner):
    """Cross-entropy method over action sequences, for one env or ``B`` envs at once.

    Each iteration samples ``population`` sequences from a Gaussian (clipped to the bounds), keeps the
    ``num_elites`` best by return, and moves the mean / std toward the elites' mean / std with
    smoothing ``alpha`` (mbrl-lib: ``mu = alpha * mu + (1 - alpha) * elite_mean``, same for the
    variance). The std never falls below ``min_std``. ``proposals`` (``plan(..., proposals=)``, e.g. from a
    policy prior) are evaluated with the Gaussian samples in every iteration and the elites are chosen
    among all ``population + M`` candidates.

    Args:
        action_low, action_high: action bounds ``(A,)``.
        horizon: planning horizon ``H``.
        population: candidate sequences per iteration ``N``.
        elite_frac: fraction of the population kept as elites (ignored if ``num_elites`` is given).
        num_elites: number of elites; ``1 <= num_elites <= population``.
        iterations: CEM iterations.
        init_std: initial std, relative to the half range of each action dim.
        alpha: smoothing of mean and variance between iterations (0: no smoothing).
        min_std: floor on the std, relative to the half range.
        return_mean: return the final mean (True) or the best sequence sampled in any iteration.
        seed: int seed, ``torch.Generator`` on ``device``, or ``None``.
        device: where sampling happens.

    Shapes:
        ``plan(objective, init_mean (H, A)) -> (H, A)`` with objective ``(N, H, A) -> (N,)``;
        ``plan(objective, init_mean (B, H, A)) -> (B, H, A)`` with objective ``(B, N, H, A) -> (B, N)``.

    Example:
        >>> import torch
        >>> cem = CEM([-1.0], [1.0], horizon=3, population=200, seed=0)
        >>> target = torch.tensor([[0.5], [-0.2], [0.1]])
        >>> plan = cem.plan(lambda a: -((a - target) ** 2).sum((-2, -1)))
        >>> bool((plan - target).abs().max() < 0.05)
        True
        >>> tiny = CEM([-1.0], [1.0], horizon=3, population=4, iterations=1, num_elites=1, return_mean=False, seed=0)
        >>> bool(torch.equal(tiny.plan(lambda a: -((a - target) ** 2).sum((-2, -1)), proposals=target[None]), target))
        True
    """

    def __init__(self, action_low, action_high, horizon: int, population: int = 500, elite_frac: float = 0.1,
                 num_elites: int | None = None, iterations: int = 5, init_std: float = 0.5, alpha: float = 0.1,
                 min_std: float = 1e-3, return_mean: bool = True, *, seed: int | torch.Generator | None = None,
                 device: torch.device | str = "cpu"):
        super().__init__(action_low, action_high, horizon, seed=seed, device=device)
        self.population = check_int("population", population, 1)
        if num_elites is None:
            frac = check_float("elite_frac", elite_frac, 0.0, 1.0, low_open=True)
            num_elites = max(1, math.ceil(frac * self.population - 1e-9))
        self.num_elites = check_int("num_elites", num_elites, 1)
        if self.num_elites > self.population:
            raise ValueError(f"num_elites: expected <= population ({self.population}), got {self.num_elites}")
        self.iterations = check_int("iterations", iterations, 1)
        self.init_std = check_float("init_std", init_std, 0.0, low_open=True)
        self.alpha = check_float("alpha", alpha, 0.0, 1.0)
        if self.alpha == 1.0:
            raise ValueError("alpha: expected a number in [0, 1) (1 would never move the mean), got 1.0")
        self.min_std = check_float("min_std", min_std, 0.0)
        self.return_mean = check_bool("return_mean", return_mean)

    def _plan(self, objective: ObjectiveFn, mean: torch.Tensor, batched: bool,
              proposals: torch.Tensor | None = None) -> torch.Tensor:
        b, h, a = mean.shape
        n, e = self.population, self.num_elites
        min_std = self.min_std * self.half_range
        std = (self.init_std * self.half_range).expand(b, h, a).clone()
        best = mean.clone()
        best_ret = torch.full((b,), -math.inf, device=self.device)
        rows = torch.arange(b, device=self.device)
        noise = torch.empty(b, n, h, a, device=self.device)
        for _ in range(self.iterations):
            torch.randn(noise.shape, generator=self.generator, device=self.device, out=noise)
            samples = self.clip(torch.addcmul(mean.unsqueeze(1), std.unsqueeze(1), noise))
            if proposals is not None:
                samples = torch.cat([samples, proposals], dim=1)  # (B, N + M, H, A)
            ret = self._evaluate(objective, samples, batched)
            top, idx = torch.topk(ret, e, dim=1)  # (B, E), sorted
            elites = samples[rows.unsqueeze(1), idx]  # (B, E, H, A)
            improved = top[:, 0] > best_ret
            best = torch.where(improved[:, None, None], elites[:, 0], best)
            best_ret = torch.maximum(best_ret, top[:, 0])
            var = elites.var(dim=1, unbiased=False) if e > 1 else torch.zeros_like(std)
            mean = self.alpha * mean + (1 - self.alpha) * elites.mean(dim=1)
            std = torch.sqrt(self.alpha * std.square() + (1 - self.alpha) * var).maximum(min_std)
        return self.clip(mean) if self.return_mean else best
