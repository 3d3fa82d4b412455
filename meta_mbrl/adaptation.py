"""AdaptedModel: a frozen prior plus adapted parameters -- the one "adapted" type."""

from __future__ import annotations

import torch

from meta_mbrl.checks import check_obs_act
from meta_mbrl.types import Prediction

__all__ = ["AdaptedModel"]


class AdaptedModel:
    """A DynamicsModel for one task, or a batch of ``T`` tasks, produced by ``learner.adapt``.

    It holds a reference to the prior network (never modified) and its own parameter dict; for a
    batch of tasks every parameter has a leading task dim ``T`` and inputs must lead with ``T``.

    Args:
        model: the prior network (e.g. :class:`~meta_mbrl.models.DynamicsMLP`).
        params: adapted parameters (plain, or task-batched with leading dim ``T``).
        num_tasks: ``None`` for a single task, else ``T``.

    Shapes:
        single task: ``predict(obs (..., O), act (..., A))``;
        batch of tasks: ``predict(obs (T, ..., O), act (T, ..., A))``.

    Example:
        >>> import torch
        >>> from meta_mbrl.models import DynamicsMLP
        >>> m = DynamicsMLP(3, 1, hidden=(16,))
        >>> am = AdaptedModel(m, {k: v.detach() for k, v in m.named_parameters()})
        >>> am.predict(torch.zeros(5, 3), torch.zeros(5, 1)).reward.shape
        torch.Size([5])
    """

    def __init__(self, model, params: dict[str, torch.Tensor], num_tasks: int | None = None):
        self.model = model
        self.params = params
        self.num_tasks = num_tasks
        ref = next(iter(params.values()))
        self.dtype, self.device = ref.dtype, ref.device

    @property
    def obs_dim(self) -> int:
        return self.model.obs_dim

    @property
    def act_dim(self) -> int:
        return self.model.act_dim

    def predict(self, obs: torch.Tensor, act: torch.Tensor) -> Prediction:
        """Predicts next observation and reward (see Shapes); raises ValueError on bad input."""
        check_obs_act(obs, act, obs_dim=self.obs_dim, act_dim=self.act_dim, dtype=self.dtype, device=self.device)
        if self.num_tasks is not None and (obs.dim() < 2 or obs.shape[0] != self.num_tasks):
            raise ValueError(
                f"obs: expected a leading task dim of {self.num_tasks} (one per adapted task), "
                f"got shape {tuple(obs.shape)}"
            )
        return self.model.predict_params(self.params, obs, act)

    def __getitem__(self, i: int) -> AdaptedModel:
        """The adapted model of task ``i`` of a batch."""
        if self.num_tasks is None:
            raise ValueError("index: this AdaptedModel holds a single task, not a batch")
        return AdaptedModel(self.model, {k: v[i] for k, v in self.params.items()})

    def __len__(self) -> int:
        return 1 if self.num_tasks is None else self.num_tasks

    def __repr__(self) -> str:
        return f"AdaptedModel({type(self.model).__name__}, num_tasks={self.num_tasks})"
