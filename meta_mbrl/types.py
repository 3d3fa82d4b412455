"""Core data types shared by every module.

Shape letters, used in every docstring of the package:

- ``T``: tasks in a meta-batch (or adapted models in a batch).
- ``N``: transitions (samples) per task; ``M`` support / ``K`` query or context size.
- ``O``: observation dimension; ``A``: action dimension.
- ``B``: environments planned for at once; ``H``: planning horizon.
- ``...``: any number of leading batch dimensions.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch

__all__ = ["Transitions", "TaskBatch", "Prediction", "as_tensor_transitions"]


class Transitions(NamedTuple):
    """A batch of transitions ``(obs, act, reward, next_obs)`` with any leading batch dims.

    Shapes:
        obs: ``(..., O)``; act: ``(..., A)``; reward: ``(...)``; next_obs: ``(..., O)``.

    Example:
        >>> import torch
        >>> tr = Transitions(torch.zeros(5, 4), torch.zeros(5, 2), torch.zeros(5), torch.zeros(5, 4))
        >>> tr.obs.shape
        torch.Size([5, 4])
    """

    obs: torch.Tensor
    act: torch.Tensor
    reward: torch.Tensor
    next_obs: torch.Tensor

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> Transitions:
        """Moves every field to ``device`` / ``dtype``."""
        return Transitions(*(x.to(device=device, dtype=dtype) for x in self))

    def index(self, idx) -> Transitions:
        """Indexes every field with the same index along the leading dims."""
        return Transitions(*(x[idx] for x in self))

    @property
    def batch_shape(self) -> torch.Size:
        """The leading batch shape ``(...)`` shared by all fields."""
        return self.reward.shape


class TaskBatch(NamedTuple):
    """A meta-batch: per task a support window and the query window that follows it.

    Shapes:
        support: Transitions with batch shape ``(T, M)``; query: batch shape ``(T, K)``.

    Example:
        >>> import torch
        >>> tr = Transitions(torch.zeros(3, 8, 4), torch.zeros(3, 8, 2), torch.zeros(3, 8), torch.zeros(3, 8, 4))
        >>> TaskBatch(tr, tr).support.obs.shape[0]
        3
    """

    support: Transitions
    query: Transitions


class Prediction(NamedTuple):
    """A model's prediction of the next observation and the reward.

    Shapes:
        next_obs: ``(..., O)``; reward: ``(...)``.
        next_obs_std, reward_std: same shapes, or ``None`` for deterministic models.
    """

    next_obs: torch.Tensor
    reward: torch.Tensor
    next_obs_std: torch.Tensor | None = None
    reward_std: torch.Tensor | None = None


def as_tensor_transitions(tr, device=None, dtype: torch.dtype = torch.float32) -> Transitions:
    """Converts a Transitions of numpy arrays (or tensors) to float tensors.

    Example:
        >>> import numpy as np
        >>> t = as_tensor_transitions(Transitions(np.zeros((2, 3)), np.zeros((2, 1)), np.zeros(2), np.zeros((2, 3))))
        >>> t.obs.dtype
        torch.float32
    """
    fields = []
    for x in tr:
        if isinstance(x, np.ndarray):
            x = torch.from_numpy(np.ascontiguousarray(x))
        fields.append(torch.as_tensor(x).to(device=device, dtype=dtype))
    return Transitions(*fields)
