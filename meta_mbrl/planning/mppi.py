"""Model-predictive path integral (MPPI) planner with time-correlated (colored) sampling noise."""

from __future__ import annotations

import torch

from meta_mbrl.planning.base import ObjectiveFn, Planner, check_bool, check_float, check_int, colored_noise

__all__ = ["MPPI"]


class MPPI(Planner):
    """MPPI: a return-weighted average of perturbed action sequences, iterated.

    Each iteration perturbs the current mean with colored Gaussian noise (power spectrum
    ``1 / f**noise_beta`` along the horizon, see :func:`~meta_mbrl.planning.base.colored_noise`; 0 is
    white noise, 1 pink, 2 red), clips to the bounds, and sets the mean to the weighted average of the
    samples with weights ``softmax(z / temperature)``. ``z`` are the returns standardized per env
    (minus their max, divided by their std over the ``N`` candidates), so ``temperature`` is unitless
    and does not depend on the reward scale: with 0.5 the weight of a sample one std better is
    ``e**2`` times larger. With ``adapt_std`` the noise std follows the weighted std of the samples
    (TD-MPC2 style), floored at ``min_std``; otherwise it stays at ``noise_std`` (classic MPPI).
    ``proposals`` (``plan(..., proposals=)``, e.g. ``M`` sequences rolled out from a policy prior, TD-MPC2's
    24) join the ``N`` perturbed samples in every iteration; the weights are over all ``N + M``.

    Args:
        action_low, action_high: action bounds ``(A,)``.
        horizon: planning horizon ``H``.
        population: candidate sequences per iteration ``N``.
        iterations: MPPI iterations.
        temperature: softmax temperature on standardized returns (> 0).
        noise_std: std of the perturbations, relative to the half range of each action dim.
        noise_beta: spectral exponent of the noise along the horizon (>= 0).
        adapt_std: update the std from the weighted samples each iteration.
        min_std: floor on the std when ``adapt_std``, relative to the half range.
        seed: int seed, ``torch.Generator`` on ``device``, or ``None``.
        device: where sampling happens.

    Shapes:
        ``plan(objective, init_mean (H, A)) -> (H, A)`` with objective ``(N, H, A) -> (N,)``;
        ``plan(objective, init_mean (B, H, A)) -> (B, H, A)`` with objective ``(B, N, H, A) -> (B, N)``.

    Example:
        >>> import torch
        >>> mppi = MPPI([-1.0], [1.0], horizon=3, seed=0)
        >>> target = torch.tensor([[0.5], [-0.2], [0.1]])
        >>> plan = mppi.plan(lambda a: -((a - target) ** 2).sum((-2, -1)))
        >>> bool((plan - target).abs().max() < 0.05)
        True
    """

    def __init__(self, action_low, action_high, horizon: int, population: int = 512, iterations: int = 6,
                 temperature: float = 0.5, noise_std: float = 0.5, noise_beta: float = 1.0, adapt_std: bool = True,
                 min_std: float = 0.05, *, seed: int | torch.Generator | None = None, device: torch.device | str = "cpu"):
        super().__init__(action_low, action_high, horizon, seed=seed, device=device)
        self.population = check_int("population", population, 1)
        self.iterations = check_int("iterations", iterations, 1)
        self.temperature = check_float("temperature", temperature, 0.0, low_open=True)
        self.noise_std = check_float("noise_std", noise_std, 0.0, low_open=True)
        self.noise_beta = check_float("noise_beta", noise_beta, 0.0)
        self.adapt_std = check_bool("adapt_std", adapt_std)
        self.min_std = check_float("min_std", min_std, 0.0)

    def _plan(self, objective: ObjectiveFn, mean: torch.Tensor, batched: bool,
              proposals: torch.Tensor | None = None) -> torch.Tensor:
        b, h, a = mean.shape
        n = self.population + (0 if proposals is None else proposals.shape[1])
        std = (self.noise_std * self.half_range).expand(b, h, a).clone()
        min_std = self.min_std * self.half_range
        for _ in range(self.iterations):
            noise = colored_noise(self.noise_beta, (b, self.population, a), h, self.generator, self.device).transpose(-1, -2)
            samples = self.clip(torch.addcmul(mean.unsqueeze(1), std.unsqueeze(1), noise))  # (B, N, H, A)
            if proposals is not None:
                samples = torch.cat([samples, proposals], dim=1)  # (B, N + M, H, A)
            ret = self._evaluate(objective, samples, batched)
            z = ret - ret.max(dim=1, keepdim=True).values
            if n > 1:
                z = z / ret.std(dim=1, keepdim=True).nan_to_num(0.0).clamp_min(1e-8)
            w = torch.softmax(torch.nan_to_num(z, nan=-torch.inf) / self.temperature, dim=1)  # (B, N)
            w = torch.nan_to_num(w, nan=1.0 / n)  # an env whose returns are all -inf: plain average
            w4 = w[:, :, None, None]
            mean = (w4 * samples).sum(dim=1)
            if self.adapt_std:
                std = torch.sqrt((w4 * (samples - mean.unsqueeze(1)).square()).sum(dim=1)).maximum(min_std)
        return self.clip(mean)
