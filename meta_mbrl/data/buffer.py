"""TaskBuffer: whole trajectories per task, GrBAL-style window sampling, atomic save/load."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence

import numpy as np
import torch

from meta_mbrl.io import atomic_path
from meta_mbrl.types import TaskBatch, Transitions, as_tensor_transitions

__all__ = ["TaskBuffer"]

_FIELDS = ("obs", "act", "reward", "next_obs")


class TaskBuffer:
    """Stores trajectories per task and samples support/query windows from them.

    A sampled window is ``M + K`` consecutive transitions of one trajectory: the first ``M`` are
    the support (adaptation) set, the next ``K`` the query set, as in GrBAL (Nagabandi et al. 2019).

    Args:
        obs_dim / act_dim: dimensions, checked on every added trajectory.

    Example:
        >>> import numpy as np
        >>> buf = TaskBuffer(3, 1)
        >>> for task in ("a", "b"):
        ...     buf.add_trajectory(task, np.zeros((20, 3)), np.zeros((20, 1)), np.zeros(20), np.zeros((20, 3)))
        >>> buf.sample(2, support=4, query=4, rng=np.random.default_rng(0)).support.obs.shape
        torch.Size([2, 4, 3])
    """

    def __init__(self, obs_dim: int, act_dim: int):
        self.obs_dim, self.act_dim = int(obs_dim), int(act_dim)
        self._chunks: dict[str, list[np.ndarray]] = {f: [] for f in _FIELDS}
        self._traj_task: list[int] = []
        self._traj_len: list[int] = []
        self.task_ids: list[str] = []
        self.env_steps = 0
        self.sources: list[dict] = []
        self._flat: dict[str, np.ndarray] | None = None
        self._starts_cache: dict[int, list[np.ndarray]] = {}

    # ------------------------------------------------------------------ filling
    def add_trajectory(self, task_id: str, obs, act, reward, next_obs) -> None:
        """Appends one trajectory ``(L, ·)`` of task ``task_id``."""
        obs, act = np.asarray(obs, np.float32), np.asarray(act, np.float32)
        reward, next_obs = np.asarray(reward, np.float32).reshape(-1), np.asarray(next_obs, np.float32)
        n = obs.shape[0]
        for name, x, shape in (("obs", obs, (n, self.obs_dim)), ("act", act, (n, self.act_dim)),
                               ("reward", reward, (n,)), ("next_obs", next_obs, (n, self.obs_dim))):
            if x.shape != shape:
                raise ValueError(f"{name}: expected shape {shape}, got {x.shape}")
            if not np.isfinite(x).all():
                raise ValueError(f"{name}: expected finite values in the trajectory of task {task_id!r}")
        if n == 0:
            raise ValueError("obs: expected a trajectory of at least one transition, got 0")
        if task_id not in self.task_ids:
            self.task_ids.append(task_id)
        for f, x in zip(_FIELDS, (obs, act, reward, next_obs)):
            self._chunks[f].append(x)
        self._traj_task.append(self.task_ids.index(task_id))
        self._traj_len.append(n)
        self._flat = None
        self._starts_cache.clear()

    def record_source(self, **info) -> None:
        """Records where data came from (policy, split, env steps) for reports and checkpoints."""
        self.sources.append(info)

    # ------------------------------------------------------------------ views
    def _flatten(self) -> dict[str, np.ndarray]:
        if self._flat is None:
            if not self._traj_len:
                raise ValueError("buffer: expected at least one trajectory, the buffer is empty")
            self._flat = {f: np.concatenate(self._chunks[f]) for f in _FIELDS}
            self._chunks = {f: [self._flat[f]] for f in _FIELDS}
        return self._flat

    @property
    def num_transitions(self) -> int:
        return int(sum(self._traj_len))

    @property
    def num_trajectories(self) -> int:
        return len(self._traj_len)

    def _offsets(self) -> np.ndarray:
        return np.concatenate([[0], np.cumsum(self._traj_len)]).astype(np.int64)

    def trajectories(self, task_id: str) -> list[Transitions]:
        """The trajectories of one task, as numpy Transitions ``(L, ·)``."""
        if task_id not in self.task_ids:
            raise ValueError(f"task_id: {task_id!r} is not in the buffer; it holds {len(self.task_ids)} tasks")
        flat, off, k = self._flatten(), self._offsets(), self.task_ids.index(task_id)
        return [
            Transitions(*(flat[f][off[i]:off[i + 1]] for f in _FIELDS))
            for i, t in enumerate(self._traj_task) if t == k
        ]

    def transitions(self, task_ids: Sequence[str] | None = None) -> Transitions:
        """All transitions (of ``task_ids`` if given), concatenated, as numpy arrays ``(N, ·)``."""
        flat = self._flatten()
        if task_ids is None:
            return Transitions(*(flat[f] for f in _FIELDS))
        parts = [tr for tid in task_ids for tr in self.trajectories(tid)]
        return Transitions(*(np.concatenate([getattr(p, f) for p in parts]) for f in _FIELDS))

    # ------------------------------------------------------------------ sampling
    def _valid_starts(self, window: int) -> list[np.ndarray]:
        if window not in self._starts_cache:
            off = self._offsets()
            per_task: list[list[np.ndarray]] = [[] for _ in self.task_ids]
            for i, (t, n) in enumerate(zip(self._traj_task, self._traj_len)):
                if n >= window:
                    per_task[t].append(np.arange(off[i], off[i] + n - window + 1))
            self._starts_cache[window] = [np.concatenate(p) if p else np.zeros(0, np.int64) for p in per_task]
        return self._starts_cache[window]

    def sample(
        self,
        tasks_per_batch: int,
        support: int,
        query: int,
        rng: np.random.Generator,
        device: torch.device | str | None = None,
        task_ids: Sequence[str] | None = None,
        query_mode: str = "following",
    ) -> TaskBatch:
        """Samples a TaskBatch: ``tasks_per_batch`` tasks, each a support window and a query window.

        Tasks are drawn without replacement when there are enough of them.

        Args:
            query_mode: ``"following"``: the query is the ``K`` transitions right after the support
                (GrBAL: adaptation is trained to predict the near future); ``"task"``: the query is a
                window drawn anywhere in the same task's trajectories (adaptation is trained to
                identify the task, e.g. a hidden goal, which planning far from the context needs).

        Shapes:
            support: batch shape ``(T, M)``; query: ``(T, K)``.
        """
        if query_mode not in ("following", "task"):
            raise ValueError(f"query_mode: expected 'following' or 'task', got {query_mode!r}")
        if query_mode == "task":
            return self._sample_task_query(tasks_per_batch, support, query, rng, device, task_ids)
        if support < 1 or query < 1:
            raise ValueError(f"support/query: expected >= 1 transitions each, got {support}/{query}")
        if tasks_per_batch < 1:
            raise ValueError(f"tasks_per_batch: expected >= 1, got {tasks_per_batch}")
        flat = self._flatten()
        window = support + query
        starts = self._valid_starts(window)
        allowed = range(len(self.task_ids)) if task_ids is None else [self.task_ids.index(t) for t in task_ids]
        eligible = np.array([t for t in allowed if starts[t].size], dtype=np.int64)
        if eligible.size == 0:
            raise ValueError(f"support+query: no trajectory holds a window of {window} transitions")
        chosen = rng.choice(eligible, size=tasks_per_batch, replace=tasks_per_batch > eligible.size)
        first = np.array([starts[t][rng.integers(starts[t].size)] for t in chosen])
        idx = first[:, None] + np.arange(window)[None]
        tr = as_tensor_transitions(Transitions(*(flat[f][idx] for f in _FIELDS)), device=device)
        return TaskBatch(tr.index((slice(None), slice(0, support))), tr.index((slice(None), slice(support, None))))

    def _sample_task_query(self, tasks_per_batch, support, query, rng, device, task_ids) -> TaskBatch:
        if support < 1 or query < 1:
            raise ValueError(f"support/query: expected >= 1 transitions each, got {support}/{query}")
        if tasks_per_batch < 1:
            raise ValueError(f"tasks_per_batch: expected >= 1, got {tasks_per_batch}")
        flat = self._flatten()
        s_starts, q_starts = self._valid_starts(support), self._valid_starts(query)
        allowed = range(len(self.task_ids)) if task_ids is None else [self.task_ids.index(t) for t in task_ids]
        eligible = np.array([t for t in allowed if s_starts[t].size and q_starts[t].size], dtype=np.int64)
        if eligible.size == 0:
            raise ValueError(f"support/query: no trajectory holds a window of {max(support, query)} transitions")
        chosen = rng.choice(eligible, size=tasks_per_batch, replace=tasks_per_batch > eligible.size)
        s_idx = np.array([s_starts[t][rng.integers(s_starts[t].size)] for t in chosen])[:, None] + np.arange(support)
        q_idx = np.array([q_starts[t][rng.integers(q_starts[t].size)] for t in chosen])[:, None] + np.arange(query)
        return TaskBatch(*(as_tensor_transitions(Transitions(*(flat[f][idx] for f in _FIELDS)), device=device)
                           for idx in (s_idx, q_idx)))

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | os.PathLike) -> None:
        """Writes the buffer to ``path`` (``.npz``) atomically: a crash leaves the old file intact."""
        flat = self._flatten()
        meta = json.dumps({"obs_dim": self.obs_dim, "act_dim": self.act_dim, "env_steps": self.env_steps,
                           "sources": self.sources, "task_ids": self.task_ids})
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as f:
                np.savez(f, **flat, traj_task=np.asarray(self._traj_task, np.int64),
                         traj_len=np.asarray(self._traj_len, np.int64), meta=np.asarray(meta))

    @classmethod
    def load(cls, path: str | os.PathLike) -> TaskBuffer:
        """Loads a buffer written by :meth:`save` (no pickle)."""
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            buf = cls(meta["obs_dim"], meta["act_dim"])
            buf.task_ids, buf.env_steps, buf.sources = meta["task_ids"], meta["env_steps"], meta["sources"]
            buf._chunks = {f: [z[f]] for f in _FIELDS}
            buf._traj_task, buf._traj_len = z["traj_task"].tolist(), z["traj_len"].tolist()
        return buf

    def __repr__(self) -> str:
        return (f"TaskBuffer(tasks={len(self.task_ids)}, trajectories={self.num_trajectories}, "
                f"transitions={self.num_transitions}, env_steps={self.env_steps})")
