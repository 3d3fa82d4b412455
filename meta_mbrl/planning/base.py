"""Shared pieces of the sampling planners: bounds, argument checks, noise, objective evaluation.

A planner is stateless: ``plan(objective, init_mean, proposals=None) -> actions``. ``init_mean`` is
``(H, A)`` for one environment (the objective then maps ``(N, H, A) -> (N,)``) or ``(B, H, A)`` for ``B``
environments planned at once (the objective maps ``(B, N, H, A) -> (B, N)``). Internally every
planner works on the batched layout; the unbatched case is ``B = 1`` with the env dim dropped at
the objective's boundary. ``proposals`` (``(M, H, A)`` / ``(B, M, H, A)``, e.g. sequences from a policy
prior, TD-MPC2 style) join the planner's own samples in every iteration.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable

import numpy as np
import torch

from meta_mbrl.checks import check_bool, check_device, check_float, check_float_dtype, check_int

__all__ = ["Planner", "ObjectiveFn", "make_generator", "colored_noise", "check_int", "check_float", "check_bool"]

ObjectiveFn = Callable[[torch.Tensor], torch.Tensor]
"""An objective: action sequences ``(N, H, A)`` or ``(B, N, H, A)`` -> returns ``(N,)`` or ``(B, N)``."""


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
        g.manual_seed(check_int("seed", seed, 0, 2**64 - 1))
    return g


def _as_bound(name: str, x: object, device: torch.device) -> torch.Tensor:
    arr = np.asarray(x.detach().cpu() if isinstance(x, torch.Tensor) else x)
    if arr.dtype.kind not in "fiu":
        raise ValueError(f"{name}: expected a 1-D array of real numbers of shape (A,), got dtype {arr.dtype}")
    t = torch.as_tensor(arr.astype(np.float32), device=device)
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


def _objective_envs(objective) -> int | None:
    """How many envs an :class:`~meta_mbrl.planning.Objective` plans for: ``B``, 0 for one unbatched env, ``None``
    for a callable that does not say (``batched`` / ``num_envs`` attributes)."""
    batched, envs = getattr(objective, "batched", None), getattr(objective, "num_envs", None)
    if batched is False:
        return 0
    if batched is True and isinstance(envs, int) and not isinstance(envs, bool) and envs > 0:
        return envs
    return None


class Planner:
    """Base class of the sampling planners: action bounds, horizon, random generator, device.

    Subclasses implement ``_plan(objective, mean (B, H, A), batched, proposals=None) -> (B, H, A)`` and get
    argument checks, the ``init_mean=None`` default (mid-range actions), clipping to the bounds and
    ``torch.inference_mode`` from :meth:`plan`. ``proposals`` reach ``_plan`` checked, clipped, float32
    ``(B, M, H, A)`` on ``device``, or ``None`` (then ``_plan`` is called without them, so a subclass
    whose ``_plan`` takes no proposals still plans without).

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
        self.device = check_device("device", device)
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

    def _check_init_mean(self, init_mean, num_envs: int | None = None) -> tuple[torch.Tensor, bool]:
        """``init_mean`` as ``(B, H, A)`` float32 and whether it was batched; ``num_envs``: the objective's ``B``
        (0: an objective over one unbatched env; ``None``: unknown, a plain callable)."""
        if init_mean is None:
            return (self.initial_mean(1), False) if not num_envs else (self.initial_mean(num_envs), True)
        if isinstance(init_mean, np.ndarray):
            if init_mean.dtype.kind != "f":
                raise ValueError(f"init_mean: expected an array of floats, got dtype {init_mean.dtype}")
            init_mean = torch.from_numpy(init_mean.astype(np.float32))
        if not isinstance(init_mean, torch.Tensor):
            raise ValueError(f"init_mean: expected a tensor of shape (H, A) or (B, H, A), got {type(init_mean).__name__}")
        check_float_dtype("init_mean", init_mean, torch.float32, lossless=True)
        ha = (self.horizon, self.action_dim)
        if init_mean.dim() not in (2, 3) or tuple(init_mean.shape[-2:]) != ha or init_mean.shape[0] == 0:
            raise ValueError(f"init_mean: expected shape {ha} or (B, {ha[0]}, {ha[1]}) with horizon H={ha[0]} and "
                             f"action dim A={ha[1]}, got {tuple(init_mean.shape)}")
        mean = init_mean.to(device=self.device, dtype=torch.float32)
        if not bool(torch.isfinite(mean).all()):
            raise ValueError("init_mean: expected finite values, got NaN/Inf")
        batched = mean.dim() == 3
        if num_envs == 0 and batched:
            raise ValueError(f"init_mean: expected shape {ha} for an objective over one env (obs of shape (O,)), "
                             f"got {tuple(init_mean.shape)}")
        if num_envs and (not batched or mean.shape[0] != num_envs):
            raise ValueError(f"init_mean: expected shape ({num_envs}, {ha[0]}, {ha[1]}) for an objective over {num_envs} envs, "
                             f"got {tuple(init_mean.shape)}")
        return self.clip(mean if batched else mean.unsqueeze(0)), batched

    def _check_proposals(self, proposals, num_envs: int, batched: bool) -> torch.Tensor:
        """``proposals`` as clipped float32 ``(B, M, H, A)`` on ``device``: ``(M, H, A)`` for one unbatched env,
        ``(B, M, H, A)`` matching the ``B`` of ``init_mean`` otherwise; finite, ``M >= 1``."""
        if isinstance(proposals, np.ndarray):
            if proposals.dtype.kind != "f":
                raise ValueError(f"proposals: expected an array of floats, got dtype {proposals.dtype}")
            proposals = torch.from_numpy(proposals.astype(np.float32))
        h, a = self.horizon, self.action_dim
        want = f"(B={num_envs}, M, {h}, {a})" if batched else f"(M, {h}, {a})"
        if not isinstance(proposals, torch.Tensor):
            raise ValueError(f"proposals: expected a tensor of shape {want}, got {type(proposals).__name__}")
        check_float_dtype("proposals", proposals, torch.float32, lossless=True)
        lead = (num_envs,) if batched else ()
        if (proposals.dim() != len(lead) + 3 or tuple(proposals.shape[:len(lead)]) != lead
                or tuple(proposals.shape[-2:]) != (h, a) or proposals.shape[-3] == 0):
            raise ValueError(f"proposals: expected shape {want} (horizon H={h}, action dim A={a}, at least one "
                             f"sequence{', B of init_mean' if batched else ''}), got {tuple(proposals.shape)}")
        props = proposals.to(device=self.device, dtype=torch.float32)
        if not bool(torch.isfinite(props).all()):
            raise ValueError("proposals: expected finite values, got NaN/Inf")
        return self.clip(props if batched else props.unsqueeze(0))

    def plan(self, objective: ObjectiveFn, init_mean: torch.Tensor | np.ndarray | None = None,
             proposals: torch.Tensor | np.ndarray | None = None) -> torch.Tensor:
        """Plans action sequences that maximize ``objective``.

        Args:
            objective: maps candidate sequences to returns (see Shapes), e.g. from
                :func:`~meta_mbrl.planning.make_objective`.
            init_mean: initial guess ``(H, A)`` or ``(B, H, A)``; ``None`` means mid-range actions, ``(H, A)``, or
                ``(B, H, A)`` for an objective with ``num_envs=B`` (an :class:`~meta_mbrl.planning.Objective`, whose
                ``B`` the guess must then match). A float32 tensor (or one of a dtype that casts to float32
                exactly), or a numpy array of floats.
            proposals: optional candidate sequences, ``(M, H, A)`` for one env or ``(B, M, H, A)`` (the ``B`` of the
                planned envs), e.g. rolled out from a policy prior; clipped to the bounds and evaluated with
                the planner's own samples in every iteration (``population`` + ``M`` candidates per iteration).
                Same dtypes as ``init_mean``, finite. ``None``: the planner's own samples alone.

        Returns:
            The planned sequences, same shape as ``init_mean``, inside the action bounds.

        Raises:
            ValueError: on a bad ``init_mean`` or ``proposals``, or if the objective returns the wrong shape.
        """
        if not callable(objective):
            raise ValueError(f"objective: expected a callable mapping actions to returns, got {type(objective).__name__}")
        mean, batched = self._check_init_mean(init_mean, _objective_envs(objective))
        if proposals is not None:
            proposals = self._check_proposals(proposals, mean.shape[0], batched)
            if "proposals" not in inspect.signature(self._plan).parameters:
                raise ValueError(f"proposals: {type(self).__name__}._plan takes no proposals (expected "
                                 "_plan(objective, mean, batched, proposals=None)); plan without them")
        with torch.inference_mode():
            out = self._plan(objective, mean, batched) if proposals is None else self._plan(objective, mean, batched, proposals)
        out = out.clone()  # a normal tensor, usable outside inference mode
        return out if batched else out[0]

    def _plan(self, objective: ObjectiveFn, mean: torch.Tensor, batched: bool,
              proposals: torch.Tensor | None = None) -> torch.Tensor:
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
