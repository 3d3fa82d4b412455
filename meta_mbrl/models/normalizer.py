"""Normalization statistics fit on training data and stored with the model (part of its state_dict)."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from meta_mbrl.checks import check_int, check_positive_float

__all__ = ["Normalizer"]


class Normalizer(nn.Module):
    """Per-dimension mean and std held as buffers, so they travel in the model's state_dict.

    Args:
        dim: feature dimension.
        min_std: floor on the std, so constant features do not blow up normalized values.

    Shapes:
        ``normalize(x)``: ``(..., dim) -> (..., dim)``.

    Example:
        >>> import torch
        >>> n = Normalizer(3)
        >>> n.fit(torch.randn(100, 3) * 5 + 2)
        >>> n.normalize(torch.full((1, 3), 2.0)).abs().max() < 1
        tensor(True)
    """

    def __init__(self, dim: int, min_std: float = 1e-3):
        super().__init__()
        dim = check_int("dim", dim, 1)
        self.min_std = check_positive_float("min_std", min_std)
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("std", torch.ones(dim))

    def fit(self, x: torch.Tensor | np.ndarray) -> None:
        """Sets mean and std from samples ``x (..., dim)`` (finite values; statistics within the buffers' dtype)."""
        x = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x, dtype=torch.float64)
        dim = self.mean.shape[0]
        if x.dim() == 0 or x.shape[-1] != dim:
            raise ValueError(f"x: expected samples with last dimension {dim}, got shape {tuple(x.shape)}")
        x = x.reshape(-1, dim)
        if x.shape[0] < 2:
            raise ValueError(f"x: expected at least 2 samples to fit a Normalizer, got {x.shape[0]}")
        if not bool(torch.isfinite(x).all()):
            raise ValueError(f"x: expected finite values to fit a Normalizer, got {int((~torch.isfinite(x)).sum())} NaN/Inf entries")
        mean, std = x.mean(0).to(self.mean), x.std(0).clamp_min(self.min_std).to(self.std)
        if not bool(torch.isfinite(mean).all() & torch.isfinite(std).all()):
            raise ValueError(f"x: expected values whose mean and std fit {self.mean.dtype}, got values up to "
                             f"|x|={float(x.abs().max()):.3g}")
        self.mean.copy_(mean)
        self.std.copy_(std)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """``(x - mean) / std``; can overflow to ``inf`` for ``|x|`` near the dtype's range (callers check)."""
        return (x - self.mean) / self.std

    def denormalize(self, x: torch.Tensor) -> torch.Tensor:
        """``x * std + mean``, the inverse of :meth:`normalize`."""
        return x * self.std + self.mean
