"""TaskBuffer: whole trajectories per task, GrBAL-style window sampling, atomic save and validated load."""

from __future__ import annotations

import json
import os
import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from meta_mbrl.errors import FileFormatError
from meta_mbrl.io import atomic_path
from meta_mbrl.types import TaskBatch, Transitions, as_tensor_transitions

__all__ = ["TaskBuffer"]

_FIELDS = ("obs", "act", "reward", "next_obs")
_INDEX_FIELDS = ("traj_task", "traj_len")
_META_KEYS = ("obs_dim", "act_dim", "env_steps", "sources", "task_ids")
_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")


class _View:
    """The flattened buffer as of ``n`` trajectories: concatenated fields and trajectory index."""

    __slots__ = ("n", "flat", "traj_task", "traj_len", "offsets")

    def __init__(self, n: int, flat: dict[str, np.ndarray], traj_task: np.ndarray, traj_len: np.ndarray):
        self.n, self.flat, self.traj_task, self.traj_len = n, flat, traj_task, traj_len
        self.offsets = np.concatenate([[0], np.cumsum(traj_len)]).astype(np.int64)


class TaskBuffer:
    """Stores trajectories per task and samples support/query windows from them.

    A sampled window is ``M + K`` consecutive transitions of one trajectory: the first ``M`` are
    the support (adaptation) set, the next ``K`` the query set, as in GrBAL (Nagabandi et al. 2019).

    Adding a trajectory is a single list append, so the buffer stays consistent (every trajectory
    whole, every index valid) even if a ``KeyboardInterrupt`` lands in the middle of a collection.

    Args:
        obs_dim / act_dim: dimensions, checked on every added trajectory.

    Attributes:
        task_ids: the tasks' ids, in the order they were first added.
        env_steps: env steps spent collecting the data (including steps of unfinished episodes).
        sources: one dict per collection (policy, split, suite, env steps, status), JSON-serializable.

    Example:
        >>> import numpy as np
        >>> buf = TaskBuffer(3, 1)
        >>> for task in ("a", "b"):
        ...     buf.add_trajectory(task, np.zeros((20, 3)), np.zeros((20, 1)), np.zeros(20), np.zeros((20, 3)))
        >>> buf.sample(2, support=4, query=4, rng=np.random.default_rng(0)).support.obs.shape
        torch.Size([2, 4, 3])
    """

    def __init__(self, obs_dim: int, act_dim: int):
        for name, d in (("obs_dim", obs_dim), ("act_dim", act_dim)):
            if isinstance(d, bool) or not isinstance(d, (int, np.integer)) or d < 1:
                raise ValueError(f"{name}: expected a positive int, got {d!r}")
        self.obs_dim, self.act_dim = int(obs_dim), int(act_dim)
        # one (task index, (obs, act, reward, next_obs)) record per trajectory; appending one is the commit
        self._trajs: list[tuple[int, tuple[np.ndarray, ...]]] = []
        self.task_ids: list[str] = []
        self.env_steps = 0
        self.sources: list[dict] = []
        self._cache: _View | None = None
        self._starts_cache: dict[int, list[np.ndarray]] = {}

    # ------------------------------------------------------------------ filling
    def add_trajectory(self, task_id: str, obs, act, reward, next_obs) -> None:
        """Appends one trajectory ``(L, ·)`` of task ``task_id`` (arrays are copied as float32).

        Raises:
            ValueError: naming the field whose shape is wrong or whose values are not finite.
        """
        if not isinstance(task_id, str):
            raise ValueError(f"task_id: expected a str, got {type(task_id).__name__}")
        obs, act = np.array(obs, np.float32), np.array(act, np.float32)
        reward, next_obs = np.array(reward, np.float32).reshape(-1), np.array(next_obs, np.float32)
        n = obs.shape[0] if obs.ndim else 0
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
        self._trajs.append((self.task_ids.index(task_id), (obs, act, reward, next_obs)))

    def record_source(self, **info) -> None:
        """Records where data came from (policy, split, env steps) for reports and checkpoints."""
        self.sources.append(info)

    # ------------------------------------------------------------------ views
    def _view(self) -> _View:
        """The flattened buffer, rebuilt when trajectories were added since the last call."""
        n = len(self._trajs)
        if self._cache is None or self._cache.n != n:
            if n == 0:
                raise ValueError("buffer: expected at least one trajectory, the buffer is empty")
            trajs = self._trajs[:n]
            flat = {f: np.concatenate([arrs[i] for _, arrs in trajs]) for i, f in enumerate(_FIELDS)}
            view = _View(n, flat, np.array([k for k, _ in trajs], np.int64),
                         np.array([arrs[0].shape[0] for _, arrs in trajs], np.int64))
            off = view.offsets
            for j, (k, _) in enumerate(trajs):  # keep views into ``flat`` only, not a second copy
                self._trajs[j] = (k, tuple(flat[f][off[j]:off[j + 1]] for f in _FIELDS))
            self._starts_cache = {}
            self._cache = view
        return self._cache

    def _flatten(self) -> dict[str, np.ndarray]:
        return self._view().flat

    @property
    def num_transitions(self) -> int:
        """Number of transitions in all trajectories."""
        return int(sum(arrs[0].shape[0] for _, arrs in self._trajs))

    @property
    def num_trajectories(self) -> int:
        """Number of trajectories."""
        return len(self._trajs)

    def trajectories(self, task_id: str) -> list[Transitions]:
        """The trajectories of one task, as numpy Transitions ``(L, ·)``."""
        if task_id not in self.task_ids:
            raise ValueError(f"task_id: {task_id!r} is not in the buffer; it holds {len(self.task_ids)} tasks")
        k = self.task_ids.index(task_id)
        return [Transitions(*arrs) for t, arrs in self._trajs if t == k]

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
            view = self._view()
            off = view.offsets
            per_task: list[list[np.ndarray]] = [[] for _ in self.task_ids]
            for i, (t, n) in enumerate(zip(view.traj_task.tolist(), view.traj_len.tolist())):
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
        """Writes the buffer to ``path`` (``.npz``, no pickles) atomically: a crash leaves the old file intact."""
        view = self._view()
        meta = json.dumps({"obs_dim": self.obs_dim, "act_dim": self.act_dim, "env_steps": int(self.env_steps),
                           "sources": self.sources, "task_ids": self.task_ids})
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as f:
                np.savez(f, **view.flat, traj_task=view.traj_task, traj_len=view.traj_len, meta=np.asarray(meta))

    @classmethod
    def load(cls, path: str | os.PathLike) -> TaskBuffer:
        """Loads a buffer written by :meth:`save`, validating every field (pickles are refused).

        Checks: the file is a readable ``.npz`` archive with every field; ``meta`` is JSON with
        ``obs_dim``/``act_dim`` (positive ints), ``env_steps`` (a non-negative int), ``sources`` (a
        list) and ``task_ids`` (unique strings); ``obs``/``next_obs`` are ``(N, obs_dim)``, ``act``
        ``(N, act_dim)``, ``reward`` ``(N,)``, all real floats (stored as float32) and finite;
        ``traj_task``/``traj_len`` are 1-D integer arrays of equal length, ``traj_len >= 1`` summing to
        ``N``, ``0 <= traj_task < len(task_ids)``.

        Raises:
            FileFormatError: naming the file and what is wrong with it.

        Example:
            >>> import tempfile, numpy as np
            >>> buf = TaskBuffer(3, 1)
            >>> buf.add_trajectory("a", np.zeros((5, 3)), np.zeros((5, 1)), np.zeros(5), np.zeros((5, 3)))
            >>> with tempfile.TemporaryDirectory() as d:
            ...     buf.save(f"{d}/buf.npz")
            ...     TaskBuffer.load(f"{d}/buf.npz").num_transitions
            5
        """
        path = Path(path)
        if not path.is_file():
            raise FileFormatError(f"{path}: buffer file not found" if not path.exists()
                                  else f"{path}: expected a buffer file (.npz), got a directory or special file")
        arrays = _read_npz(path)
        meta = _check_meta(path, arrays["meta"])
        buf = cls(meta["obs_dim"], meta["act_dim"])
        flat, traj_task, traj_len = _check_arrays(path, arrays, meta)
        buf.task_ids, buf.env_steps, buf.sources = list(meta["task_ids"]), int(meta["env_steps"]), list(meta["sources"])
        view = _View(len(traj_len), flat, traj_task, traj_len)
        off = view.offsets
        buf._trajs = [(int(k), tuple(flat[f][off[j]:off[j + 1]] for f in _FIELDS)) for j, k in enumerate(traj_task)]
        buf._cache = view if len(traj_len) else None
        return buf

    def __repr__(self) -> str:
        return (f"TaskBuffer(tasks={len(self.task_ids)}, trajectories={self.num_trajectories}, "
                f"transitions={self.num_transitions}, env_steps={self.env_steps})")


# ---------------------------------------------------------------------- load validation
def _read_npz(path: Path) -> dict[str, np.ndarray]:
    """Reads every field of a buffer file, without pickles; any failure becomes a FileFormatError."""
    try:
        with open(path, "rb") as f:
            magic = f.read(4)
    except OSError as e:
        raise FileFormatError(f"{path}: buffer file could not be read: {e}") from e
    if magic not in _ZIP_MAGIC:
        raise FileFormatError(f"{path}: expected an .npz archive written by TaskBuffer.save, "
                              f"got a file starting with {magic!r} (empty, truncated or another format)")
    out: dict[str, np.ndarray] = {}
    try:
        with np.load(path, allow_pickle=False) as z:
            missing = [k for k in (*_FIELDS, *_INDEX_FIELDS, "meta") if k not in z.files]
            if missing:
                raise FileFormatError(f"{path}: expected buffer fields {list((*_FIELDS, *_INDEX_FIELDS, 'meta'))}, "
                                      f"missing {missing} (it holds {sorted(z.files)})")
            for k in (*_FIELDS, *_INDEX_FIELDS, "meta"):
                try:
                    out[k] = z[k]
                except ValueError as e:
                    if "allow_pickle" in str(e):
                        raise FileFormatError(f"{path}: field {k!r} is a pickled object array; refused "
                                              "(loading pickles can run arbitrary code)") from e
                    raise FileFormatError(f"{path}: field {k!r} could not be read: {e}") from e
                except (zipfile.BadZipFile, EOFError, OSError, KeyError) as e:
                    raise FileFormatError(f"{path}: field {k!r} could not be read (truncated or corrupt file?): "
                                          f"{type(e).__name__}: {e}") from e
    except FileFormatError:
        raise
    except (zipfile.BadZipFile, EOFError, OSError, ValueError, KeyError) as e:
        raise FileFormatError(f"{path}: not a readable .npz archive (truncated or corrupt file?): "
                              f"{type(e).__name__}: {e}") from e
    return out


def _is_int(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _check_meta(path: Path, raw: np.ndarray) -> dict:
    if raw.shape != () or raw.dtype.kind not in "US":
        raise FileFormatError(f"{path}: meta: expected a 0-d string array holding JSON, got dtype {raw.dtype} "
                              f"shape {raw.shape}")
    try:
        meta = json.loads(str(raw[()] if raw.dtype.kind == "U" else raw[()].decode()))
    except (ValueError, UnicodeDecodeError) as e:
        raise FileFormatError(f"{path}: meta: expected valid JSON, got a parse error: {e}") from e
    if not isinstance(meta, dict):
        raise FileFormatError(f"{path}: meta: expected a JSON object, got {type(meta).__name__}")
    missing = [k for k in _META_KEYS if k not in meta]
    if missing:
        raise FileFormatError(f"{path}: meta: expected keys {list(_META_KEYS)}, missing {missing}")
    for k in ("obs_dim", "act_dim"):
        if not _is_int(meta[k]) or meta[k] < 1:
            raise FileFormatError(f"{path}: meta.{k}: expected a positive int, got {meta[k]!r}")
    if not _is_int(meta["env_steps"]) or meta["env_steps"] < 0:
        raise FileFormatError(f"{path}: meta.env_steps: expected a non-negative int, got {meta['env_steps']!r}")
    if not isinstance(meta["sources"], list):
        raise FileFormatError(f"{path}: meta.sources: expected a list, got {type(meta['sources']).__name__}")
    ids = meta["task_ids"]
    if not isinstance(ids, list) or not all(isinstance(t, str) for t in ids):
        raise FileFormatError(f"{path}: meta.task_ids: expected a list of strings, got {ids!r:.200}")
    if len(set(ids)) != len(ids):
        dup = sorted({t for t in ids if ids.count(t) > 1})
        raise FileFormatError(f"{path}: meta.task_ids: expected unique ids, got duplicates {dup[:5]}")
    return meta


def _check_arrays(path: Path, z: dict[str, np.ndarray], meta: dict):
    obs = z["obs"]
    n = obs.shape[0] if obs.ndim >= 1 else None
    flat = {}
    dims = {"obs": meta["obs_dim"], "act": meta["act_dim"], "reward": None, "next_obs": meta["obs_dim"]}
    for f in _FIELDS:
        x = z[f]
        if x.dtype.kind != "f":
            raise FileFormatError(f"{path}: {f}: expected a real floating dtype (float32), got {x.dtype}")
        shape = (n,) if dims[f] is None else (n, dims[f])
        if n is None or x.shape != shape:
            want = "(N,)" if dims[f] is None else f"(N, {dims[f]})"
            raise FileFormatError(f"{path}: {f}: expected shape {want} with N = len(obs) = {n}, got {x.shape}")
        finite = np.isfinite(x)
        if not finite.all():
            bad = int(x.size - finite.sum())
            row = int(np.flatnonzero(~finite.reshape(n, -1).all(axis=1))[0])
            raise FileFormatError(f"{path}: {f}: expected finite values, got {bad} NaN/Inf entries (first in row {row})")
        flat[f] = np.ascontiguousarray(x, dtype=np.float32)
    idx = {}
    for f in _INDEX_FIELDS:
        x = z[f]
        if x.dtype.kind not in "iu":
            raise FileFormatError(f"{path}: {f}: expected an integer dtype, got {x.dtype}")
        if x.ndim != 1:
            raise FileFormatError(f"{path}: {f}: expected a 1-D array, got shape {x.shape}")
        idx[f] = x.astype(np.int64)
    traj_task, traj_len = idx["traj_task"], idx["traj_len"]
    if len(traj_task) != len(traj_len):
        raise FileFormatError(f"{path}: traj_task: expected one entry per trajectory, len(traj_len) = {len(traj_len)}, "
                              f"got {len(traj_task)}")
    if len(traj_len) and traj_len.min() < 1:
        raise FileFormatError(f"{path}: traj_len: expected lengths >= 1, got {int(traj_len.min())} "
                              f"(trajectory {int(np.argmin(traj_len))})")
    if int(traj_len.sum()) != n:
        raise FileFormatError(f"{path}: traj_len: expected lengths summing to N = len(obs) = {n}, got {int(traj_len.sum())}")
    k = len(meta["task_ids"])
    if len(traj_task) and (traj_task.min() < 0 or traj_task.max() >= k):
        bad = traj_task[(traj_task < 0) | (traj_task >= k)]
        raise FileFormatError(f"{path}: traj_task: expected task indices in [0, {k}) (len(meta.task_ids)), "
                              f"got {int(bad[0])}")
    return flat, traj_task, traj_len
