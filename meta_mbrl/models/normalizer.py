"""Normalization statistics fit on training data and stored with the model."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

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
        self.min_std = float(min_std)
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("std", torch.ones(dim))

    def fit(self, x: torch.Tensor | np.ndarray) -> None:
        """Sets mean and std from samples ``x (N, dim)``."""
        x = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x, dtype=torch.float64)
        x = x.reshape(-1, self.mean.shape[0])
        if x.shape[0] < 2:
            raise ValueError(f"x: expected at least 2 samples to fit a Normalizer, got {x.shape[0]}")
        self.mean.copy_(x.mean(0).to(self.mean))
        self.std.copy_(x.std(0).clamp_min(self.min_std).to(self.std))

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std

    def denormalize(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.std + self.mean
