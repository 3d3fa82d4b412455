"""TaskBuffers as `Minari <https://minari.farama.org>`_ datasets: export and exact import.

Layouts:
    ``per_task=False`` (default): one dataset for the whole buffer; every episode's Minari metadata
    holds its ``task_id``. ``per_task=True``: one dataset per task, ids ``<namespace>/<name>/<task>-v<N>``
    for ``dataset_id="<namespace>/<name>-v<N>"`` (the task id with ``/`` as ``_``); each dataset's env
    spec is that task's env (``recover_environment()`` rebuilds it, goal included), while a per-suite
    dataset's env spec is the suite's registered env without task arguments (the default task).

Episodes: a trajectory ``(L, ·)`` becomes an episode with ``L + 1`` observations
``obs[0], ..., obs[L-1], next_obs[L-1]``; export refuses a trajectory whose ``next_obs[t] != obs[t+1]``
(no Minari episode can hold it). Observations are stored in the suites' observation-space dtype
(float64: the env's own dtype, so ``recover_environment()`` agrees with the dataset), actions in the
action space's (float32), rewards as float64; every float32 is a float64, so import casts back to the
buffer's float32 bit-identically.

Terminations and truncations (the buffer keeps no flags): the suites' envs never terminate (point-mass,
point-maze and Meta-World report ``terminated=False`` on every step), and ``collect`` records only whole
episodes, each ended by the time limit. So ``terminations`` are all False and each episode's last step
is ``truncated``; the episode metadata ``time_limit`` says whether it reached the suite's
``max_episode_steps`` (False: a trajectory added by hand, cut shorter: still truncated, not terminal).

Exactness: the dataset metadata ``meta_mbrl`` (JSON) keeps the buffer's ``task_ids`` order,
``env_steps``, ``sources`` and the export's id; the episode metadata ``trajectory`` keeps each
trajectory's place, so importing every dataset of one export restores the buffer exactly (arrays,
task ids, trajectory order, sources). Anything else (a subset of a per-task export, several exports,
a dataset written by another tool: one task per dataset, named by the dataset id) is imported in
the order given, with one ``sources`` entry per dataset (``policy="minari"``).

Minari writes under ``MINARI_DATASETS_PATH`` (default ``~/.minari/datasets``); ``root=`` sets it
for the call (not thread-safe: it is the process environment).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
import shutil
import uuid
import warnings
from collections.abc import Iterator, Sequence

import gymnasium as gym
import numpy as np

from meta_mbrl.data.buffer import TaskBuffer

__all__ = ["export_minari", "import_minari", "per_task_dataset_id"]

_META_KEY = "meta_mbrl"
_FORMAT = 1


def _minari():
    try:
        import minari
    except ImportError as e:  # pragma: no cover - minari is a dev dependency
        raise ImportError('Minari datasets need the minari package: pip install "minari[hdf5]>=0.5,<0.6"') from e
    return minari


@contextlib.contextmanager
def _root(root: str | os.PathLike | None) -> Iterator[None]:
    """Sets ``MINARI_DATASETS_PATH`` to ``root`` for the block (``None``: leaves it as it is)."""
    if root is None:
        yield
        return
    old = os.environ.get("MINARI_DATASETS_PATH")
    os.environ["MINARI_DATASETS_PATH"] = os.path.abspath(os.fspath(root))  # Minari mis-joins a relative one
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("MINARI_DATASETS_PATH", None)
        else:
            os.environ["MINARI_DATASETS_PATH"] = old


def _parse_id(dataset_id) -> tuple[str | None, str, int]:
    from minari.dataset.minari_dataset import DATASET_ID_RE

    match = DATASET_ID_RE.fullmatch(dataset_id) if isinstance(dataset_id, str) else None
    if match is None or match.group("version") is None:
        raise ValueError(f"dataset_id: expected '(namespace/)name-v<N>' (letters, digits, '-', '_'), got {dataset_id!r}")
    return match.group("namespace") or None, match.group("dataset"), int(match.group("version"))


def per_task_dataset_id(dataset_id: str, task_id: str) -> str:
    """The id of task ``task_id``'s dataset in a per-task export to ``dataset_id``.

    Example:
        >>> per_task_dataset_id("meta-mbrl/point-mass-v0", "point-mass/train/03")
        'meta-mbrl/point-mass/point-mass_train_03-v0'
    """
    ns, name, version = _parse_id(dataset_id)
    slug = re.sub(r"[^-\w]", "_", task_id)
    return f"{ns + '/' if ns else ''}{name}/{slug}-v{version}"


def export_minari(buffer: TaskBuffer, suite, dataset_id: str, *, per_task: bool = False,
                  root: str | os.PathLike | None = None, overwrite: bool = False, **info) -> list[str]:
    """Writes ``buffer`` as Minari dataset(s) (see the module docstring for layout and flags).

    Args:
        buffer: the trajectories, all of tasks of ``suite``.
        suite: the task suite they were collected on (``task_suites.make(...)``).
        dataset_id: ``"(namespace/)name-v<N>"``; with ``per_task`` the base of the per-task ids
            (:func:`per_task_dataset_id`).
        per_task: one dataset per task instead of one for the buffer.
        root: datasets folder (default: ``MINARI_DATASETS_PATH``, else ``~/.minari/datasets``).
        overwrite: replace existing datasets of the same ids (default: refuse).
        **info: Minari's descriptive fields (``author``, ``author_email``, ``code_permalink``,
            ``algorithm_name``, ``description``); ``algorithm_name`` defaults to the buffer's source
            policies, ``description`` to a line naming the suite.

    Returns:
        The dataset ids written, in the buffer's task order when ``per_task``.

    Raises:
        ValueError: naming the argument: a malformed ``dataset_id``, one that exists without
            ``overwrite``, an empty buffer, buffer/suite dims that differ, a task not in the suite,
            a trajectory whose observations do not chain, an unknown ``info`` field.

    Example:
        >>> import tempfile, numpy as np, task_suites
        >>> from meta_mbrl.data import collect
        >>> suite = task_suites.make("point-mass", max_episode_steps=5)
        >>> buf = collect(suite, suite.train_tasks[:2], progress=False)
        >>> with tempfile.TemporaryDirectory() as d:
        ...     ids = export_minari(buf, suite, "doc/pm-v0", root=d)
        ...     back = import_minari(ids, root=d)
        >>> ids, back.task_ids == buf.task_ids, np.array_equal(back.transitions().obs, buf.transitions().obs)
        (['doc/pm-v0'], True, True)
    """
    minari = _minari()
    from minari.data_collector import EpisodeBuffer

    _parse_id(dataset_id)
    allowed = {"author", "author_email", "code_permalink", "algorithm_name", "description"}
    if set(info) - allowed:
        raise ValueError(f"info: unknown Minari fields {sorted(set(info) - allowed)}; expected some of {sorted(allowed)}")
    if not isinstance(buffer, TaskBuffer):
        raise ValueError(f"buffer: expected a TaskBuffer, got {type(buffer).__name__}")
    if (buffer.obs_dim, buffer.act_dim) != (suite.obs_dim, suite.act_dim):
        raise ValueError(f"buffer: expected obs/act dims {(suite.obs_dim, suite.act_dim)} of suite {suite.name!r}, "
                         f"got {(buffer.obs_dim, buffer.act_dim)}")
    if buffer.num_trajectories == 0:
        raise ValueError(f"buffer: expected at least one trajectory, got {buffer!r}")
    tasks = {}
    for tid in buffer.task_ids:
        try:
            tasks[tid] = suite.task(tid)
        except ValueError:
            raise ValueError(f"buffer: task {tid!r} is not a task of suite {suite.name!r}") from None
    ids = [per_task_dataset_id(dataset_id, t) for t in buffer.task_ids] if per_task else [dataset_id]
    if len(set(ids)) != len(ids):
        raise ValueError(f"dataset_id: task ids {buffer.task_ids} give clashing per-task dataset ids {ids}")

    # every trajectory, in buffer order, with its global index
    order: list[tuple[int, str, tuple[np.ndarray, ...]]] = []
    for j, (k, arrs) in enumerate(buffer._trajs):
        obs, _, _, next_obs = arrs
        if obs.shape[0] > 1 and not np.array_equal(next_obs[:-1], obs[1:]):
            t = int(np.flatnonzero((next_obs[:-1] != obs[1:]).any(axis=1))[0])
            raise ValueError(f"buffer: trajectory {j} (task {buffer.task_ids[k]!r}) does not chain: next_obs[{t}] != "
                             f"obs[{t + 1}]; a Minari episode holds one observation sequence")
        order.append((j, buffer.task_ids[k], arrs))

    with _root(root):
        from minari.storage import get_dataset_path

        existing = [i for i in ids if get_dataset_path(i).exists()]
        if existing and not overwrite:
            raise ValueError(f"dataset_id: {existing[:3]}{'...' if len(existing) > 3 else ''} exist(s) under "
                             f"{get_dataset_path()}; pass overwrite=True (--overwrite) to replace")
        for i in existing:
            shutil.rmtree(get_dataset_path(i))
        meta = {"format": _FORMAT, "export_id": uuid.uuid4().hex, "suite": suite.name, "suite_seed": getattr(suite, "seed", None),
                "layout": "task" if per_task else "suite",
                "dataset_ids": ids, "task_ids": list(buffer.task_ids), "num_trajectories": buffer.num_trajectories,
                "obs_dim": buffer.obs_dim, "act_dim": buffer.act_dim, "env_steps": int(buffer.env_steps),
                "sources": buffer.sources, "max_episode_steps": int(suite.max_episode_steps)}
        json.dumps(meta)  # the sources must be JSON (as TaskBuffer.save requires)
        policies = sorted({str(s.get("policy")) for s in buffer.sources if "policy" in s})
        written: list[str] = []
        try:
            for did in ids:
                written.append(did)
                task = tasks[order[0][1]] if not per_task else tasks[buffer.task_ids[ids.index(did)]]
                env = suite.make_env(task)
                try:
                    obs_space, act_space, spec = env.observation_space, env.action_space, env.spec
                finally:
                    env.close()
                if not per_task:  # many tasks: the registered env, without one task's arguments
                    spec = dataclasses.replace(spec, kwargs={}, max_episode_steps=int(suite.max_episode_steps))
                eps = [(j, tid, arrs) for j, tid, arrs in order if not per_task or tid == task.id]
                episodes = [_episode(EpisodeBuffer, n, arrs, obs_space, act_space) for n, (_, _, arrs) in enumerate(eps)]
                fields = {"algorithm_name": "+".join(policies) or "unknown",
                          "description": f"meta_mbrl TaskBuffer of suite {suite.name!r}"
                                         + (f", task {task.id!r}" if per_task else f", {len(buffer.task_ids)} tasks"), **info}
                with warnings.catch_warnings():  # Minari warns about every descriptive field left unset
                    warnings.filterwarnings("ignore", message=r".*(is set to None|highly recommended|env_spec is None)",
                                            category=UserWarning)
                    # env=None, spec added after: given a spec, Minari would gym.make it (a per-suite spec has no task)
                    ds = minari.create_dataset_from_buffers(did, episodes, observation_space=obs_space,
                                                            action_space=act_space, jpeg_encoding=False, **fields)
                ds.storage.update_metadata({"env_spec": spec.to_json(), _META_KEY: meta})
                ds.storage.update_episode_metadata(
                    [{"task_id": tid, "trajectory": j, "time_limit": bool(arrs[0].shape[0] == suite.max_episode_steps)}
                     for j, tid, arrs in eps])
        except BaseException:  # a partial dataset would block the next try as existing: remove what this call wrote
            for did in written:
                shutil.rmtree(get_dataset_path(did), ignore_errors=True)
            raise
    return ids


def _episode(episode_buffer, n: int, arrs, obs_space, act_space):
    obs, act, reward, next_obs = arrs
    steps = obs.shape[0]
    truncations = np.zeros(steps, bool)
    truncations[-1] = True
    return episode_buffer(id=n, observations=np.concatenate([obs, next_obs[-1:]]).astype(obs_space.dtype),
                          actions=act.astype(act_space.dtype), rewards=reward.astype(np.float64),
                          terminations=np.zeros(steps, bool), truncations=truncations)


def import_minari(dataset_id: str | Sequence[str], *, root: str | os.PathLike | None = None, suite=None) -> TaskBuffer:
    """Reads Minari dataset(s) into one TaskBuffer; exact for every dataset of one :func:`export_minari`.

    Args:
        dataset_id: a dataset id, or several (e.g. every id a per-task export returned).
        root: datasets folder (default: ``MINARI_DATASETS_PATH``, else ``~/.minari/datasets``).
        suite: if given, the datasets' observation/action dims must be the suite's.

    Returns:
        The buffer (float32 arrays). A dataset from another tool gives one task named by its
        dataset id (or its episodes' ``task_id`` metadata); its ``terminations`` are not kept (the
        buffer has no flags), but counted in its ``sources`` entry (``terminated_episodes``).

    Raises:
        ValueError: naming the argument: no such dataset, a dataset whose spaces are not flat
            float boxes or differ from the others' (or from ``suite``'s), a repeated id.

    Example:
        >>> import tempfile, task_suites
        >>> from meta_mbrl.data import collect
        >>> suite = task_suites.make("point-mass", max_episode_steps=5)
        >>> buf = collect(suite, suite.train_tasks[:2], progress=False)
        >>> with tempfile.TemporaryDirectory() as d:
        ...     ids = export_minari(buf, suite, "doc/pm-v0", per_task=True, root=d)
        ...     back = import_minari(ids, root=d)
        >>> ids, back.sources == buf.sources, back.env_steps
        (['doc/pm/point-mass_train_00-v0', 'doc/pm/point-mass_train_01-v0'], True, 10)
    """
    minari = _minari()
    ids = [dataset_id] if isinstance(dataset_id, str) else list(dataset_id)
    if not ids or not all(isinstance(i, str) for i in ids):
        raise ValueError(f"dataset_id: expected a dataset id or a non-empty list of them, got {dataset_id!r}")
    if len(set(ids)) != len(ids):
        raise ValueError(f"dataset_id: ids repeat: {ids}")
    loaded = []
    with _root(root):
        from minari.storage import get_dataset_path

        for did in ids:
            _parse_id(did)
            if not (get_dataset_path(did) / "data").is_dir():
                local = sorted(minari.list_local_datasets())
                raise ValueError(f"dataset_id: no Minari dataset {did!r} under {get_dataset_path()} "
                                 f"(local: {local[:5]}{'...' if len(local) > 5 else ''})")
            loaded.append(minari.load_dataset(did))
    dims = None
    for did, ds in zip(ids, loaded):
        d = _check_spaces(did, ds)
        if dims is None:
            dims = d
        elif d != dims:
            raise ValueError(f"dataset_id: {did!r} has obs/act dims {d}, but {ids[0]!r} has {dims}")
    if suite is not None and dims != (suite.obs_dim, suite.act_dim):
        raise ValueError(f"dataset_id: {ids[0]!r} has obs/act dims {dims}, suite {suite.name!r} expects "
                         f"{(suite.obs_dim, suite.act_dim)}")

    metas = [ds.storage.metadata.get(_META_KEY) for ds in loaded]
    records = []  # (dataset index, place, task id, arrays, terminated)
    for n, (did, ds, meta) in enumerate(zip(ids, loaded, metas)):
        ep_meta = ds.storage.get_episode_metadata(range(ds.total_episodes))
        for m, ep in zip(ep_meta, ds.iterate_episodes()):
            obs = np.asarray(ep.observations)
            place = int(m["trajectory"]) if meta is not None and "trajectory" in m else int(ep.id)
            records.append((n, place, str(m.get("task_id", did)), (obs[:-1], ep.actions, ep.rewards, obs[1:]),
                            bool(np.asarray(ep.terminations).any())))
    first = metas[0]
    exact = (first is not None and all(m == first for m in metas)
             and sorted(r[1] for r in records) == list(range(first["num_trajectories"])))
    buf = TaskBuffer(*dims)
    if exact:
        records.sort(key=lambda r: r[1])
        buf.task_ids = list(first["task_ids"])
    else:
        records.sort(key=lambda r: r[:2])
    for _, _, tid, arrs, _ in records:
        buf.add_trajectory(tid, *arrs)
    if exact:
        buf.env_steps, buf.sources = int(first["env_steps"]), list(first["sources"])
        return buf
    for n, (did, ds, meta) in enumerate(zip(ids, loaded, metas)):
        steps = int(ds.total_steps)
        buf.env_steps += steps
        entry = {"policy": "minari", "dataset_id": did, "trajectories": int(ds.total_episodes), "env_steps": steps,
                 "status": "complete", "terminated_episodes": sum(r[4] for r in records if r[0] == n)}
        if meta is not None:
            entry["origin"] = {k: meta[k] for k in ("suite", "export_id", "sources")}
        buf.record_source(**entry)
    return buf


def _check_spaces(did: str, ds) -> tuple[int, int]:
    dims = []
    for what, space in (("observation", ds.observation_space), ("action", ds.action_space)):
        if not (isinstance(space, gym.spaces.Box) and len(space.shape) == 1 and np.issubdtype(space.dtype, np.floating)):
            raise ValueError(f"dataset_id: {did!r} has {what} space {space}; a TaskBuffer needs a flat float Box")
        dims.append(int(space.shape[0]))
    return dims[0], dims[1]
