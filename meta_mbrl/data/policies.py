"""Exploration policies for data collection, batched over environments.

A policy is any callable ``policy(obs (B, O)) -> act (B, A)``; if it has ``reset(mask (B,))`` it is
told which environments start a new episode. Uniform random actions rarely move Meta-World's arm
far enough to touch objects, so the default is temporally correlated (colored) noise.
"""

from __future__ import annotations

import numpy as np

__all__ = ["UniformPolicy", "ColoredNoisePolicy", "OUPolicy", "make_policy", "powerlaw_noise", "POLICIES"]

POLICIES = ("uniform", "colored-noise", "ou")


def powerlaw_noise(beta: float, shape: tuple[int, ...], length: int, rng: np.random.Generator) -> np.ndarray:
    """Gaussian noise with power spectrum ``1 / f**beta`` along the last axis, unit std.

    ``beta=0`` is white noise, ``1`` pink, ``2`` red (Brownian-like). Shapes: ``(*shape, length)``.

    Example:
        >>> x = powerlaw_noise(2.0, (3,), 100, np.random.default_rng(0))
        >>> x.shape, bool(np.allclose(x.std(-1), 1.0))
        ((3, 100), True)
    """
    freqs = np.fft.rfftfreq(length)
    freqs[0] = 1.0 / length
    scale = freqs ** (-beta / 2.0)
    spec = rng.normal(size=(*shape, freqs.size)) + 1j * rng.normal(size=(*shape, freqs.size))
    x = np.fft.irfft(spec * scale, n=length, axis=-1)
    x -= x.mean(-1, keepdims=True)
    return x / np.maximum(x.std(-1, keepdims=True), 1e-8)


class UniformPolicy:
    """Uniform random actions in ``[low, high]``.

    Args:
        low, high: action bounds ``(A,)``.
        seed: seed of the policy's generator (``None``: fresh entropy).

    Example:
        >>> pol = UniformPolicy(-np.ones(2), np.ones(2), seed=0)
        >>> pol(np.zeros((5, 4))).shape
        (5, 2)
    """

    name = "uniform"

    def __init__(self, low: np.ndarray, high: np.ndarray, seed: int | None = None):
        self.low, self.high = np.asarray(low), np.asarray(high)
        self.rng = np.random.default_rng(seed)

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        return self.rng.uniform(self.low, self.high, size=(obs.shape[0], self.low.shape[0])).astype(np.float32)


class ColoredNoisePolicy:
    """Colored-noise actions (iCEM's exploration noise): one correlated sequence per env and episode.

    Args:
        low, high: action bounds; actions are ``center + half_range * scale * noise``, clipped.
        beta: spectral exponent (0 white, 1 pink, 2 red).
        episode_length: length of the generated sequence (longer episodes wrap around).
        scale: noise std relative to the half range.
        seed: seed of the policy's generator (``None``: fresh entropy).

    Example:
        >>> pol = ColoredNoisePolicy(-np.ones(2), np.ones(2), episode_length=50, seed=0)
        >>> pol.reset(np.ones(3, dtype=bool))  # three envs start an episode
        >>> acts = np.stack([pol(np.zeros((3, 4))) for _ in range(50)])
        >>> acts.shape, bool(np.abs(acts).max() <= 1)
        ((50, 3, 2), True)
    """

    name = "colored-noise"

    def __init__(self, low, high, beta: float = 2.0, episode_length: int = 500, scale: float = 1.0,
                 seed: int | None = None):
        self.low, self.high = np.asarray(low, np.float32), np.asarray(high, np.float32)
        self.beta, self.length, self.scale = float(beta), int(episode_length), float(scale)
        self.rng = np.random.default_rng(seed)
        self.noise: np.ndarray | None = None
        self.t: np.ndarray | None = None

    def _draw(self, n: int) -> np.ndarray:
        return powerlaw_noise(self.beta, (n, self.low.shape[0]), self.length, self.rng).transpose(0, 2, 1)

    def reset(self, mask: np.ndarray) -> None:
        mask = np.asarray(mask, dtype=bool)
        if self.noise is None or self.noise.shape[0] != mask.shape[0]:
            self.noise, self.t = self._draw(mask.shape[0]), np.zeros(mask.shape[0], dtype=np.int64)
        elif mask.any():
            self.noise[mask] = self._draw(int(mask.sum()))
            self.t[mask] = 0

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        if self.noise is None or self.noise.shape[0] != obs.shape[0]:
            self.reset(np.ones(obs.shape[0], dtype=bool))
        eps = self.noise[np.arange(obs.shape[0]), self.t % self.length]
        self.t += 1
        mid, half = (self.high + self.low) / 2, (self.high - self.low) / 2
        return np.clip(mid + half * self.scale * eps, self.low, self.high).astype(np.float32)


class OUPolicy:
    """Ornstein-Uhlenbeck noise: ``x += theta * (-x) + sigma * N(0, 1)`` per step, clipped.

    Args:
        low, high: action bounds ``(A,)``; actions are ``center + half_range * x``, clipped.
        theta: pull toward zero per step.
        sigma: noise std per step.
        seed: seed of the policy's generator (``None``: fresh entropy).

    Example:
        >>> pol = OUPolicy(-np.ones(2), np.ones(2), seed=0)
        >>> pol(np.zeros((4, 3))).shape
        (4, 2)
    """

    name = "ou"

    def __init__(self, low, high, theta: float = 0.15, sigma: float = 0.3, seed: int | None = None):
        self.low, self.high = np.asarray(low, np.float32), np.asarray(high, np.float32)
        self.theta, self.sigma = float(theta), float(sigma)
        self.rng = np.random.default_rng(seed)
        self.x: np.ndarray | None = None

    def reset(self, mask: np.ndarray) -> None:
        mask = np.asarray(mask, dtype=bool)
        if self.x is None or self.x.shape[0] != mask.shape[0]:
            self.x = np.zeros((mask.shape[0], self.low.shape[0]))
        self.x[mask] = 0.0

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        if self.x is None or self.x.shape[0] != obs.shape[0]:
            self.reset(np.ones(obs.shape[0], dtype=bool))
        self.x += -self.theta * self.x + self.sigma * self.rng.normal(size=self.x.shape)
        mid, half = (self.high + self.low) / 2, (self.high - self.low) / 2
        return np.clip(mid + half * self.x, self.low, self.high).astype(np.float32)


def make_policy(policy, low, high, episode_length: int, seed: int | None = None):
    """Returns ``policy`` if callable (it seeds itself), else builds the named one from :data:`POLICIES`.

    Example:
        >>> make_policy("ou", -np.ones(2), np.ones(2), episode_length=50, seed=0).name
        'ou'
    """
    if callable(policy):
        return policy
    if policy == "uniform":
        return UniformPolicy(low, high, seed)
    if policy == "colored-noise":
        return ColoredNoisePolicy(low, high, episode_length=episode_length, seed=seed)
    if policy == "ou":
        return OUPolicy(low, high, seed=seed)
    raise ValueError(f"policy: expected a callable or one of {POLICIES}, got {policy!r}")
