"""Shared pieces of the sampling planners: bounds, argument checks, noise, objective evaluation.

A planner is stateless: ``plan(objective, init_mean) -> actions``. ``init_mean`` is ``(H, A)`` for
one environment (the objective then maps ``(N, H, A) -> (N,)``) or ``(B, H, A)`` for ``B``
environments planned at once (the objective maps ``(B, N, H, A) -> (B, N)``). Internally every
planner works on the batched layout; the unbatched case is ``B = 1`` with the env dim dropped at
the objective's boundary.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch

__all__ = ["Planner", "ObjectiveFn", "make_generator", "colored_noise"]

ObjectiveFn = Callable[[torch.Tensor], torch.Tensor]
"""An objective: action sequences ``(N, H, A)`` or ``(B, N, H, A)`` -> returns ``(N,)`` or ``(B, N)``."""


def check_int(name: str, value: object, minimum: int) -> int:
    """Returns ``value`` as an int, or raises ValueError if it is not an integer ``>= minimum``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name}: expected an integer >= {minimum}, got {value!r}")
    return int(value)


def check_float(name: str, value: object, low: float, high: float = math.inf, *, low_open: bool = False) -> float:
    """Returns ``value`` as a float, or raises ValueError if it is outside ``[low, high]`` (``(low, high]``)."""
    try:
        v = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ValueError(f"{name}: expected a number, got {value!r}") from None
    if not math.isfinite(v) or (v <= low if low_open else v < low) or v > high:
        lo = "(" if low_open else "["
        raise ValueError(f"{name}: expected a number in {lo}{low}, {high}], got {value!r}")
    return v


def make_generator(seed: int | torch.Generator | None, device: torch.device) -> torch.Generator:
    """A ``torch.Generator`` on ``device``: the one given, one seeded with ``seed``, or a randomly seeded one."""
    if isinstance(seed, torch.Generator):
        if seed.device.type != device.type:
            raise ValueError(f"seed: expected a torch.Generator on {device}, got one on {seed.device}")
        return seed
    g = torch.Generator(device=device)
    if seed is None:
        g.seed()
    else:
        g.manual_seed(check_int("seed", seed, 0))
    return g


def _as_bound(name: str, x: object, device: torch.device) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(x.cpu() if isinstance(x, torch.Tensor) else x, dtype=np.float32), device=device)
    if t.dim() != 1 or t.numel() == 0:
        raise ValueError(f"{name}: expected a 1-D array of shape (A,), got shape {tuple(t.shape)}")
    if not bool(torch.isfinite(t).all()):
        raise ValueError(f"{name}: expected finite values, got {t.tolist()}")
    return t


def colored_noise(beta: float, shape: tuple[int, ...], length: int, generator: torch.Generator,
                  device: torch.device) -> torch.Tensor:
    """Gaussian noise with power spectrum ``1 / f**beta`` along the last axis, unit variance per entry.

    ``beta=0`` is white noise, ``1`` pink, ``2`` red. The algorithm is that of the ``colorednoise``
    package (used by iCEM): random Fourier coefficients scaled by ``f**(-beta/2)`` (frequencies below
    ``1/length`` clamped), inverse real FFT, divided by the exact std of an entry (DC term included). Unlike the per-sequence
    standardization in :func:`meta_mbrl.data.policies.powerlaw_noise`, the sequence mean stays random,
    so a whole sequence can shift, which is what a planner wants.

    Shapes:
        returns ``(*shape, length)``.

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> colored_noise(1.0, (4096,), 15, g, torch.device("cpu")).std().round(decimals=1)
        tensor(1.)
    """
    if beta == 0.0 or length == 1:
        return torch.randn(*shape, length, generator=generator, device=device)
    f = torch.fft.rfftfreq(length, device=device, dtype=torch.float32)
    f = f.clamp_min(1.0 / length)
    scale = f.pow(-beta / 2.0)
    # variance of each output entry: DC and Nyquist coefficients are real (x sqrt 2), the others complex
    coef = torch.full_like(scale, 4.0)
    coef[0] = 2.0
    if length % 2 == 0:
        coef[-1] = 2.0
    sigma = torch.sqrt((coef * scale.square()).sum()) / length
    nf = f.numel()
    re = torch.randn(*shape, nf, generator=generator, device=device) * scale
    im = torch.randn(*shape, nf, generator=generator, device=device) * scale
    if length % 2 == 0:
        im[..., -1] = 0.0
        re[..., -1] *= math.sqrt(2.0)
    im[..., 0] = 0.0
    re[..., 0] *= math.sqrt(2.0)
    return torch.fft.irfft(torch.complex(re, im), n=length, dim=-1) / sigma


class Planner:
    """Base class of the sampling planners: action bounds, horizon, random generator, device.

    Subclasses implement ``_plan(objective, mean (B, H, A), batched) -> (B, H, A)`` and get argument
    checks, the ``init_mean=None`` default (mid-range actions), clipping to the bounds and
    ``torch.inference_mode`` from :meth:`plan`.

    Args:
        action_low, action_high: action bounds, arrays of shape ``(A,)``.
        horizon: planning horizon ``H``.
        seed: an int seed, a ``torch.Generator`` on ``device``, or ``None`` (random seed).
        device: where samples are drawn; the objective must accept tensors on it.

    Shapes:
        ``plan(objective, init_mean (H, A)) -> (H, A)``, objective ``(N, H, A) -> (N,)``;
        ``plan(objective, init_mean (B, H, A)) -> (B, H, A)``, objective ``(B, N, H, A) -> (B, N)``.

    Example:
        >>> from meta_mbrl.planning import CEM
        >>> planner = CEM([-1.0, 0.0], [1.0, 2.0], horizon=3)
        >>> planner.initial_mean(2)[0]  # mid-range actions, for B=2 envs
        tensor([[0., 1.],
                [0., 1.],
                [0., 1.]])
    """

    def __init__(self, action_low, action_high, horizon: int, *, seed: int | torch.Generator | None = None,
                 device: torch.device | str = "cpu"):
        self.device = torch.device(device)
        self.action_low = _as_bound("action_low", action_low, self.device)
        self.action_high = _as_bound("action_high", action_high, self.device)
        if self.action_low.shape != self.action_high.shape:
            raise ValueError(f"action_high: expected shape {tuple(self.action_low.shape)} (that of action_low), "
                             f"got {tuple(self.action_high.shape)}")
        if bool((self.action_low > self.action_high).any()):
            raise ValueError(f"action_high: expected >= action_low {self.action_low.tolist()}, got {self.action_high.tolist()}")
        self.horizon = check_int("horizon", horizon, 1)
        self.generator = make_generator(seed, self.device)
        self.mid = (self.action_low + self.action_high) / 2
        self.half_range = (self.action_high - self.action_low) / 2

    @property
    def action_dim(self) -> int:
        """The action dimension ``A``."""
        return int(self.action_low.shape[0])

    def initial_mean(self, num_envs: int | None = None) -> torch.Tensor:
        """Mid-range action sequences: ``(H, A)``, or ``(B, H, A)`` with ``num_envs=B``."""
        shape = (self.horizon, self.action_dim) if num_envs is None else (num_envs, self.horizon, self.action_dim)
        return self.mid.expand(shape).clone()

    def clip(self, actions: torch.Tensor) -> torch.Tensor:
        """Clips ``actions (..., A)`` to the bounds."""
        return torch.maximum(torch.minimum(actions, self.action_high), self.action_low)

    def _check_init_mean(self, init_mean) -> tuple[torch.Tensor, bool]:
        if init_mean is None:
            return self.initial_mean(1), False
        if isinstance(init_mean, np.ndarray):
            init_mean = torch.from_numpy(init_mean)
        if not isinstance(init_mean, torch.Tensor):
            raise ValueError(f"init_mean: expected a tensor of shape (H, A) or (B, H, A), got {type(init_mean).__name__}")
        ha = (self.horizon, self.action_dim)
        if init_mean.dim() not in (2, 3) or tuple(init_mean.shape[-2:]) != ha or init_mean.shape[0] == 0:
            raise ValueError(f"init_mean: expected shape {ha} or (B, {ha[0]}, {ha[1]}) with horizon H={ha[0]} and "
                             f"action dim A={ha[1]}, got {tuple(init_mean.shape)}")
        mean = init_mean.to(device=self.device, dtype=torch.float32)
        if not bool(torch.isfinite(mean).all()):
            raise ValueError("init_mean: expected finite values, got NaN/Inf")
        batched = mean.dim() == 3
        return self.clip(mean if batched else mean.unsqueeze(0)), batched

    def plan(self, objective: ObjectiveFn, init_mean: torch.Tensor | np.ndarray | None = None) -> torch.Tensor:
        """Plans action sequences that maximize ``objective``.

        Args:
            objective: maps candidate sequences to returns (see Shapes), e.g. from
                :func:`~meta_mbrl.planning.make_objective`.
            init_mean: initial guess ``(H, A)`` or ``(B, H, A)``; ``None`` means mid-range actions, ``(H, A)``.

        Returns:
            The planned sequences, same shape as ``init_mean``, inside the action bounds.

        Raises:
            ValueError: on a bad ``init_mean`` or if the objective returns the wrong shape.
        """
        if not callable(objective):
            raise ValueError(f"objective: expected a callable mapping actions to returns, got {type(objective).__name__}")
        mean, batched = self._check_init_mean(init_mean)
        with torch.inference_mode():
            out = self._plan(objective, mean, batched)
        out = out.clone()  # a normal tensor, usable outside inference mode
        return out if batched else out[0]

    def _plan(self, objective: ObjectiveFn, mean: torch.Tensor, batched: bool) -> torch.Tensor:
        raise NotImplementedError

    def _evaluate(self, objective: ObjectiveFn, samples: torch.Tensor, batched: bool) -> torch.Tensor:
        """Returns ``(B, N)`` of ``samples (B, N, H, A)``; NaN returns count as ``-inf``."""
        b, n = samples.shape[:2]
        ret = objective(samples) if batched else objective(samples[0])
        want = (b, n) if batched else (n,)
        if not isinstance(ret, torch.Tensor) or tuple(ret.shape) != want:
            got = tuple(ret.shape) if isinstance(ret, torch.Tensor) else type(ret).__name__
            raise ValueError(f"objective: expected returns of shape {want} for actions {tuple(samples.shape[int(not batched):])}, "
                             f"got {got}")
        ret = ret.to(device=self.device, dtype=torch.float32).reshape(b, n)
        return torch.nan_to_num(ret, nan=-math.inf)

    def __repr__(self) -> str:
        keys = [k for k in vars(self) if k not in {"generator", "action_low", "action_high", "mid", "half_range", "device"}]
        args = ", ".join(f"{k}={getattr(self, k)!r}" for k in keys)
        return f"{type(self).__name__}(A={self.action_dim}, {args}, device={self.device})"
