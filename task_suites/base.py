"""Task and suite base types shared by every suite."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym

__all__ = ["Task", "BaseSuite"]


@dataclass(frozen=True)
class Task:
    """One task of a suite.

    Attributes:
        id: stable, human-readable id, e.g. ``"ml10/test/bin-picking-v3/07"``.
        name: the task's class (``"bin-picking-v3"``; ``"point-mass"`` for the fast suite).
        split: ``"train"`` or ``"test"``.
        index: index of the task within its class and split.
        payload: suite-specific data (a Meta-World ``Task``, or physical parameters).
    """

    id: str
    name: str
    split: str
    index: int
    payload: Any = field(repr=False, compare=False, hash=False, default=None)


class BaseSuite:
    """Common suite behaviour: task lookup and vector envs made of ``make_env`` thunks."""

    name: str
    train_tasks: list[Task]
    test_tasks: list[Task]
    obs_dim: int
    act_dim: int
    max_episode_steps: int
    object_slices: tuple[tuple[int, int], ...] = ()
    """Where the observation holds the positions of the objects the agent can move, as ``(start, stop)``
    slices (Meta-World: the two object positions). Empty where there is no object (point-mass)."""
    subgoal_dims: tuple[int, ...] = ()
    """The observation indices a hierarchical planner's subgoals live in by default (a position: the point mass's,
    Meta-World's gripper); empty where the suite names none (then the planner must be told)."""
    subgoal_scale: float = 1.0
    """A typical distance between subgoals in those dims (observation units): the spread of the first proposals."""

    def make_env(self, task: Task, seed: int | None = None) -> gym.Env:  # pragma: no cover - abstract
        raise NotImplementedError

    @property
    def tasks(self) -> list[Task]:
        """All tasks, train first."""
        return [*self.train_tasks, *self.test_tasks]

    def task(self, task_id: str) -> Task:
        """Looks a task up by its id."""
        for t in self.tasks:
            if t.id == task_id:
                return t
        raise ValueError(f"task_id: no task {task_id!r} in suite {self.name!r}")

    def check_tasks(self, tasks: Sequence[Task]) -> list[Task]:
        tasks = list(tasks)
        if not tasks:
            raise ValueError("tasks: expected at least one task, got an empty sequence")
        known = {t.id for t in self.tasks}
        for t in tasks:
            if not isinstance(t, Task) or t.id not in known:
                raise ValueError(f"tasks: {t!r} is not a task of suite {self.name!r}")
        return tasks

    def make_vec_env(self, tasks: Sequence[Task], seed: int | None = None, strategy: str = "sync") -> gym.vector.VectorEnv:
        """A vector env with one sub-env per task, in order; same-step autoreset.

        Args:
            tasks: tasks of this suite.
            seed: base seed; sub-env ``i`` gets ``seed + i``.
            strategy: ``"sync"`` (one process) or ``"async"`` (one process per sub-env).
        """
        tasks = self.check_tasks(tasks)
        if strategy not in ("sync", "async"):
            raise ValueError(f"strategy: expected 'sync' or 'async', got {strategy!r}")
        fns = [
            (lambda t=t, i=i: self.make_env(t, None if seed is None else seed + i)) for i, t in enumerate(tasks)
        ]
        cls = gym.vector.SyncVectorEnv if strategy == "sync" else gym.vector.AsyncVectorEnv
        return cls(fns, autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.name!r}, train={len(self.train_tasks)}, test={len(self.test_tasks)}, "
            f"obs_dim={self.obs_dim}, act_dim={self.act_dim})"
        )
