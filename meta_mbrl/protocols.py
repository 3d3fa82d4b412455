"""The few protocols that connect the modules (see DESIGN.md, "contracts")."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import torch

from meta_mbrl.types import Prediction, TaskBatch, Transitions

__all__ = ["TaskLike", "TaskSuite", "DynamicsModel", "MetaLearner"]


@runtime_checkable
class TaskLike(Protocol):
    """A task of a suite: a stable string id, its class name and its split."""

    id: str
    name: str
    split: str


@runtime_checkable
class TaskSuite(Protocol):
    """A family of tasks split into train and test tasks, each a gymnasium env."""

    name: str
    train_tasks: Sequence[TaskLike]
    test_tasks: Sequence[TaskLike]
    obs_dim: int
    act_dim: int
    max_episode_steps: int

    def make_env(self, task: TaskLike, seed: int | None = None) -> Any:
        """Returns a gymnasium Env for one task."""

    def make_vec_env(self, tasks: Sequence[TaskLike], seed: int | None = None, strategy: str = "sync") -> Any:
        """Returns a gymnasium VectorEnv with one sub-env per task, in order."""


@runtime_checkable
class DynamicsModel(Protocol):
    """Anything that predicts next observation and reward; the task is baked in."""

    def predict(self, obs: torch.Tensor, act: torch.Tensor) -> Prediction:
        """Predicts for ``obs (..., O)`` and ``act (..., A)``."""


@runtime_checkable
class MetaLearner(Protocol):
    """Meta-learns a prior; adapts it to a task from a context without mutating it."""

    def meta_loss(self, batch: TaskBatch) -> tuple[torch.Tensor, dict[str, float]]:
        """The meta-training loss over a batch of tasks, with scalar logging info."""

    def adapt(self, context: Transitions, **opts: Any) -> DynamicsModel:
        """Adapts the prior to the task(s) the context comes from."""

    def prior(self, num_tasks: int | None = None) -> DynamicsModel:
        """The unadapted prior as a model of one task, or a batch of ``num_tasks`` identical ones."""
