"""FunctionModel: any torch function ``(obs, act) -> (next_obs, reward)`` as a DynamicsModel."""

from __future__ import annotations

from collections.abc import Callable

import torch

from meta_mbrl.checks import check_device, check_int
from meta_mbrl.types import Prediction

__all__ = ["FunctionModel"]


class FunctionModel:
    """Wraps a torch function as a DynamicsModel, e.g. known true dynamics to plan with.

    Args:
        fn: ``fn(obs (..., O), act (..., A)) -> (next_obs (..., O), reward (...))``, a plain torch
            function (batched over any leading dims, broadcasting its own parameters).
        obs_dim: observation dimension ``O``.
        act_dim: action dimension ``A``.
        dtype, device: optional; when given, :func:`~meta_mbrl.planning.make_objective` converts
            observations to them. ``predict`` itself does not convert.

    Shapes:
        ``predict(obs (..., O), act (..., A)) -> Prediction(next_obs (..., O), reward (...))``.

    Example:
        >>> import torch
        >>> model = FunctionModel(lambda o, a: (o + a, -o.square().sum(-1)), obs_dim=2, act_dim=2)
        >>> pred = model.predict(torch.ones(5, 2), torch.ones(5, 2))
        >>> pred.next_obs[0], pred.reward[0]
        (tensor([2., 2.]), tensor(-2.))
    """

    def __init__(self, fn: Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]], obs_dim: int,
                 act_dim: int, dtype: torch.dtype | None = None, device: torch.device | str | None = None):
        if not callable(fn):
            raise ValueError(f"fn: expected a callable (obs, act) -> (next_obs, reward), got {type(fn).__name__}")
        obs_dim, act_dim = check_int("obs_dim", obs_dim, 1), check_int("act_dim", act_dim, 1)
        if dtype is not None and (not isinstance(dtype, torch.dtype) or not dtype.is_floating_point):
            raise ValueError(f"dtype: expected None or a floating torch.dtype, got {dtype!r}")
        self.fn, self.obs_dim, self.act_dim = fn, obs_dim, act_dim
        self.dtype = dtype
        self.device = check_device("device", device) if device is not None else None

    def predict(self, obs: torch.Tensor, act: torch.Tensor) -> Prediction:
        """Calls ``fn`` and checks the shapes of its inputs and outputs (no data-dependent checks)."""
        for name, x, d in (("obs", obs, self.obs_dim), ("act", act, self.act_dim)):
            if not isinstance(x, torch.Tensor) or x.dim() == 0 or x.shape[-1] != d:
                got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
                raise ValueError(f"{name}: expected a tensor with last dimension {d}, got {got}")
        if obs.shape[:-1] != act.shape[:-1]:
            raise ValueError(f"act: expected batch dims {tuple(obs.shape[:-1])} (those of obs), got {tuple(act.shape[:-1])}")
        out = self.fn(obs, act)
        if not isinstance(out, (tuple, list)) or len(out) != 2:
            raise ValueError(f"fn: expected to return (next_obs, reward), got {type(out).__name__}")
        next_obs, reward = out
        if next_obs.shape != obs.shape or reward.shape != obs.shape[:-1]:
            raise ValueError(f"fn: expected next_obs {tuple(obs.shape)} and reward {tuple(obs.shape[:-1])}, "
                             f"got {tuple(next_obs.shape)} and {tuple(reward.shape)}")
        return Prediction(next_obs, reward)

    def __repr__(self) -> str:
        return f"FunctionModel({getattr(self.fn, '__name__', type(self.fn).__name__)}, obs_dim={self.obs_dim}, act_dim={self.act_dim})"
