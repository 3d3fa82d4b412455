"""AdaptedModel: a frozen prior plus adapted parameters and/or a task vector -- the one "adapted" type."""

from __future__ import annotations

import torch

from meta_mbrl.checks import check_obs_act
from meta_mbrl.types import Prediction

__all__ = ["AdaptedModel"]


class AdaptedModel:
    """A DynamicsModel for one task, or a batch of ``T`` tasks, produced by ``learner.adapt``.

    It holds a reference to the prior network (never modified), its own parameter dict and, for
    context-conditioned networks (CaDM, PEARL, task embeddings), a task vector ``z``. For a batch of
    tasks, inputs must lead with ``T``; the parameters either carry a leading task dim ``T`` (MAML,
    Reptile, fine-tuning) or are shared by all tasks while ``z`` is ``(T, Z)`` (context learners).

    Args:
        model: the prior network (e.g. :class:`~meta_mbrl.models.DynamicsMLP`).
        params: adapted parameters (plain, or task-batched with leading dim ``T``).
        num_tasks: ``None`` for a single task, else ``T``.
        task_vector: ``None``, or the task vector ``z`` passed to ``model.predict_params(..., z=z)``:
            ``(Z,)`` for one task, ``(T, Z)`` for a batch. It is broadcast over the inputs' middle
            batch dims (``obs (T, N, O)`` with ``z (T, Z)``).

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
        >>> c = DynamicsMLP(3, 1, hidden=(16,), context_dim=2)
        >>> batch = AdaptedModel(c, {k: v.detach() for k, v in c.named_parameters()}, 4, task_vector=torch.zeros(4, 2))
        >>> batch.predict(torch.zeros(4, 5, 3), torch.zeros(4, 5, 1)).next_obs.shape, batch[1].task_vector.shape
        (torch.Size([4, 5, 3]), torch.Size([2]))
    """

    def __init__(self, model, params: dict[str, torch.Tensor], num_tasks: int | None = None,
                 task_vector: torch.Tensor | None = None):
        self.model = model
        self.params = params
        self.num_tasks = num_tasks
        self.task_vector = task_vector
        ref = next(iter(params.values()))
        self.dtype, self.device = ref.dtype, ref.device
        want = 1 if num_tasks is None else 2
        if task_vector is not None:
            if not isinstance(task_vector, torch.Tensor) or task_vector.dim() != want or (
                    num_tasks is not None and task_vector.shape[0] != num_tasks):
                shape = tuple(task_vector.shape) if isinstance(task_vector, torch.Tensor) else type(task_vector).__name__
                expected = "(Z,) for a single task" if num_tasks is None else f"({num_tasks}, Z) for {num_tasks} tasks"
                raise ValueError(f"task_vector: expected shape {expected}, got {shape}")
        # parameters carry a task dim unless they are the shared prior of a context-conditioned batch
        self.params_batched = num_tasks is not None and (task_vector is None or self._has_task_dim(model, params))

    @classmethod
    def from_prior(cls, model, num_tasks: int | None = None) -> AdaptedModel:
        """The unadapted network as an AdaptedModel: one task, or ``num_tasks`` copies (expanded, no memory copy)."""
        params = {k: v.detach() for k, v in model.param_dict().items()}
        if num_tasks is not None:
            params = {k: v.expand(num_tasks, *v.shape) for k, v in params.items()}
        return cls(model, params, num_tasks)

    @staticmethod
    def _has_task_dim(model, params: dict[str, torch.Tensor]) -> bool:
        own = dict(model.named_parameters()) if hasattr(model, "named_parameters") else {}
        k, v = next(iter(params.items()))
        return k in own and v.dim() == own[k].dim() + 1

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
        return self.predict_unchecked(obs, act)

    def predict_unchecked(self, obs: torch.Tensor, act: torch.Tensor) -> Prediction:
        """``predict`` without input validation, for hot loops whose inputs were checked once (planner rollouts)."""
        if self.task_vector is None:
            return self.model.predict_params(self.params, obs, act)
        return self.model.predict_params(self.params, obs, act, z=self.task_vector)

    def __getitem__(self, i: int) -> AdaptedModel:
        """The adapted model of task ``i`` of a batch."""
        if self.num_tasks is None:
            raise ValueError("index: this AdaptedModel holds a single task, not a batch")
        params = {k: v[i] for k, v in self.params.items()} if self.params_batched else self.params
        z = None if self.task_vector is None else self.task_vector[i]
        return AdaptedModel(self.model, params, task_vector=z)

    def __len__(self) -> int:
        return 1 if self.num_tasks is None else self.num_tasks

    def __repr__(self) -> str:
        z = "" if self.task_vector is None else f", task_vector={tuple(self.task_vector.shape)}"
        return f"AdaptedModel({type(self.model).__name__}, num_tasks={self.num_tasks}{z})"
