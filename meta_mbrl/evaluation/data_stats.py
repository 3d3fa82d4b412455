"""What a data set shows a dynamics model: how often objects move, and how much of their space it covers.

:func:`data_stats` computes, for any :class:`~meta_mbrl.data.TaskBuffer` (exploration data, the demo
track, an agent's own data), one row per (task class, data source):

* ``object_moved_frac``: fraction of transitions where some object moves by more than ``threshold``
  (:func:`~meta_mbrl.data.contact.object_moved`);
* ``object_voxels``: distinct ``voxel``-sized cubes (1 cm by default) occupied by object 1's position
  over the observations and next observations;
* ``object_pos_std``: the spread of object 1's position, ``sqrt`` of the summed per-axis variances (m);
  both coverage columns pool the class's tasks, whose initial object positions differ, so they grow
  with the number of tasks as well as with how far the data moves objects;
* ``transitions``, ``episodes`` and ``env_steps`` (the steps of the recorded episodes).

:func:`data_benchmark` collects each source on a suite's training tasks, class by class, times it
(``env_steps_per_s``) and adds an ``"all classes"`` row per source: ``meta-mbrl bench data``.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd

from meta_mbrl.data.buffer import TaskBuffer
from meta_mbrl.data.contact import DEFAULT_THRESHOLD, object_moved, object_positions

__all__ = ["data_stats", "trajectory_sources", "with_all_classes", "data_benchmark", "DATA_SOURCES", "ALL_CLASSES",
           "UNLABELLED"]

DATA_SOURCES = ("colored-noise", "uniform", "ou", "demo")
"""Sources ``meta-mbrl bench data`` can collect: the exploration policies and the labelled demo track."""
ALL_CLASSES = "all classes"
"""``class`` of the per-source summary rows of :func:`with_all_classes`."""
UNLABELLED = "unlabelled"
"""``source`` of trajectories that ``buffer.sources`` does not account for."""

_COLUMNS = ["class", "source", "transitions", "episodes", "env_steps", "object_moved_frac", "object_voxels",
            "object_pos_std"]


def trajectory_sources(buffer: TaskBuffer) -> list[str]:
    """The source label (``buffer.sources[i]["policy"]``) of every trajectory, in the buffer's order.

    :func:`~meta_mbrl.data.rollout.collect` appends its whole episodes and then one ``sources``
    entry counting them (``trajectories``), so the entries, in order, label consecutive runs of
    trajectories. Where they do not account for every trajectory exactly (a hand-made buffer, or
    trajectories added without a source entry), every trajectory is labelled :data:`UNLABELLED`,
    with a warning if the buffer has source entries at all.

    Example:
        >>> buf = TaskBuffer(3, 1)
        >>> for _ in range(3):
        ...     buf.add_trajectory("a", np.zeros((2, 3)), np.zeros((2, 1)), np.zeros(2), np.zeros((2, 3)))
        >>> buf.record_source(policy="colored-noise", trajectories=2); buf.record_source(policy="demo", trajectories=1)
        >>> trajectory_sources(buf)
        ['colored-noise', 'colored-noise', 'demo']
    """
    counts = [s.get("trajectories") for s in buffer.sources]
    ok = all(isinstance(c, int) and not isinstance(c, bool) and c >= 0 for c in counts)
    if not buffer.sources or not ok or sum(counts) != buffer.num_trajectories:
        if buffer.sources:
            warnings.warn(f"buffer: its {len(buffer.sources)} sources entries account for "
                          f"{sum(c for c in counts if isinstance(c, int)) if ok else 'an unknown number of'} trajectories, "
                          f"it holds {buffer.num_trajectories}; every trajectory is labelled {UNLABELLED!r}", stacklevel=2)
        return [UNLABELLED] * buffer.num_trajectories
    return [str(s.get("policy", UNLABELLED)) for s, c in zip(buffer.sources, counts) for _ in range(c)]


def _class_of(task_id: str, names: dict[str, str]) -> str:
    if task_id in names:
        return names[task_id]
    parts = task_id.rsplit("/", 3)  # "<suite>/<split>/<class>/<index>"
    return parts[2] if len(parts) == 4 else task_id


def data_stats(buffer: TaskBuffer, suite, threshold: float = DEFAULT_THRESHOLD, voxel: float = 0.01,
               source: str | None = None) -> pd.DataFrame:
    """Contact and coverage statistics of ``buffer``, one row per (task class, source).

    Args:
        buffer: the data; its trajectories' task ids name their classes (a suite task's class, else the
            ``<class>`` part of a ``<suite>/<split>/<class>/<index>`` id, else the id itself).
        suite: the suite the data comes from (its ``object_slices``; point-mass has none, and its
            object columns are NaN).
        threshold: displacement (m) above which an object counts as moved.
        voxel: edge (m) of the cubes counted by ``object_voxels``.
        source: label every trajectory with this source instead of :func:`trajectory_sources`'.

    Returns:
        A DataFrame with columns ``class, source, transitions, episodes, env_steps, object_moved_frac,
        object_voxels, object_pos_std`` (module docstring), sorted by class then source. ``env_steps``
        counts the recorded transitions (env steps of unfinished episodes are in ``buffer.env_steps``
        only).

    Raises:
        ValueError: an empty buffer, a buffer whose dims are not the suite's, or a bad ``threshold``,
            ``voxel`` or ``source``.

    Example:
        >>> import task_suites
        >>> suite = task_suites.make("point-mass")
        >>> buf = TaskBuffer(4, 2)
        >>> buf.add_trajectory(suite.train_tasks[0].id, np.zeros((5, 4)), np.zeros((5, 2)), np.zeros(5), np.zeros((5, 4)))
        >>> data_stats(buf, suite)[["class", "source", "transitions", "object_moved_frac"]].to_dict("records")
        [{'class': 'point-mass', 'source': 'unlabelled', 'transitions': 5, 'object_moved_frac': nan}]
    """
    if not isinstance(buffer, TaskBuffer):
        raise ValueError(f"buffer: expected a TaskBuffer, got {type(buffer).__name__}")
    if (buffer.obs_dim, buffer.act_dim) != (suite.obs_dim, suite.act_dim):
        raise ValueError(f"buffer: expected the suite's obs/act dims {(suite.obs_dim, suite.act_dim)}, "
                         f"got {(buffer.obs_dim, buffer.act_dim)}")
    if buffer.num_trajectories == 0:
        raise ValueError("buffer: expected at least one trajectory, got an empty buffer")
    if isinstance(voxel, bool) or not isinstance(voxel, (int, float)) or not (voxel > 0 and np.isfinite(voxel)):
        raise ValueError(f"voxel: expected a finite edge length > 0 (m), got {voxel!r}")
    if source is not None and (not isinstance(source, str) or not source):
        raise ValueError(f"source: expected a non-empty label or None, got {source!r}")
    labels = [source] * buffer.num_trajectories if source is not None else trajectory_sources(buffer)
    names = {t.id: t.name for t in suite.tasks}
    slices = tuple(suite.object_slices)
    groups: dict[tuple[str, str], list] = {}
    for (k, arrs), label in zip(buffer._trajs, labels):
        groups.setdefault((_class_of(buffer.task_ids[k], names), label), []).append(arrs)
    rows = []
    for (cls, label), trajs in sorted(groups.items()):
        obs = np.concatenate([a[0] for a in trajs])
        nxt = np.concatenate([a[3] for a in trajs])
        row = {"class": cls, "source": label, "transitions": len(obs), "episodes": len(trajs), "env_steps": len(obs)}
        moved = object_moved(obs, nxt, slices, threshold=threshold)
        if moved is None:
            row.update(object_moved_frac=float("nan"), object_voxels=float("nan"), object_pos_std=float("nan"))
        else:
            pos = object_positions(np.concatenate([obs, nxt]), slices).astype(np.float64)
            cells = np.floor(pos / voxel).astype(np.int64)
            row.update(object_moved_frac=float(moved.mean()), object_voxels=int(len(np.unique(cells, axis=0))),
                       object_pos_std=float(np.sqrt(pos.var(axis=0).sum())))
        rows.append(row)
    return pd.DataFrame(rows, columns=_COLUMNS)


def with_all_classes(table: pd.DataFrame) -> pd.DataFrame:
    """``table`` (from :func:`data_stats`) with an ``"all classes"`` row per source appended.

    The summary row holds the mean over classes of ``object_moved_frac``, ``object_voxels`` and
    ``object_pos_std`` (each class weighs the same), and the totals of ``transitions``, ``episodes``
    and ``env_steps``; ``env_steps_per_s``, if present, is total env steps over total seconds.

    Example:
        >>> t = pd.DataFrame({"class": ["a", "b"], "source": ["demo"] * 2, "transitions": [10, 30], "episodes": [1, 1],
        ...                   "env_steps": [10, 30], "object_moved_frac": [0.2, 0.4], "object_voxels": [3, 5],
        ...                   "object_pos_std": [0.1, 0.3]})
        >>> row = with_all_classes(t).iloc[-1]
        >>> row["class"], int(row["env_steps"]), round(float(row["object_moved_frac"]), 6)
        ('all classes', 40, 0.3)
    """
    rows = []
    for label, g in table.groupby("source", sort=False):
        row = {"class": ALL_CLASSES, "source": label}
        for c in ("transitions", "episodes", "env_steps"):
            row[c] = int(g[c].sum())
        for c in ("object_moved_frac", "object_voxels", "object_pos_std"):
            row[c] = float(g[c].mean())
        if "env_steps_per_s" in g:
            seconds = (g["env_steps"] / g["env_steps_per_s"]).sum()
            row["env_steps_per_s"] = float(g["env_steps"].sum() / seconds) if seconds > 0 else float("nan")
        rows.append(row)
    return pd.concat([table, pd.DataFrame(rows, columns=table.columns)], ignore_index=True)


def data_benchmark(suite, tasks: Sequence, sources: Sequence[str] = ("colored-noise", "demo"), episodes_per_task: int = 1,
                   seed: int = 0, demo_noise: float = 0.3, threshold: float = DEFAULT_THRESHOLD, voxel: float = 0.01,
                   progress: bool = True) -> pd.DataFrame:
    """Collects every source on ``tasks``, class by class, and tabulates :func:`data_stats` with timings.

    Each (class, source) is one :func:`~meta_mbrl.data.rollout.collect` (or, for ``"demo"``,
    :func:`~meta_mbrl.data.demos.collect_demos`) call into its own buffer, timed for
    ``env_steps_per_s`` (wall clock: collection only, on this machine's load).

    Args:
        suite: a task suite.
        tasks: training tasks (the demo track refuses test tasks).
        sources: names from :data:`DATA_SOURCES`.
        episodes_per_task: episodes per task and source.
        seed: seed of every collection (same env resets for every source).
        demo_noise: std of the demo track's action noise.
        threshold, voxel: as in :func:`data_stats`.
        progress: show progress bars.

    Returns:
        :func:`data_stats`'s columns plus ``env_steps_per_s``, one row per (class, source) in class
        order, then an ``"all classes"`` row per source (:func:`with_all_classes`).

    Raises:
        ValueError: an unknown or repeated source, empty ``sources``, or an argument the collectors refuse.
    """
    from meta_mbrl.data.demos import check_demo_tasks, collect_demos
    from meta_mbrl.data.rollout import collect

    sources = list(sources) if not isinstance(sources, str) else [sources]
    bad = [s for s in sources if s not in DATA_SOURCES]
    if not sources or bad or len(set(sources)) != len(sources):
        raise ValueError(f"sources: expected distinct names from {list(DATA_SOURCES)}, got {sources}")
    tasks = suite.check_tasks(tasks)
    by_class: dict[str, list] = {}
    for t in tasks:
        by_class.setdefault(t.name, []).append(t)
    if "demo" in sources:  # refuse before any collection runs
        check_demo_tasks(suite, tasks)
    parts = []
    for cls_tasks in by_class.values():
        for src in sources:
            start = time.perf_counter()
            if src == "demo":
                buf = collect_demos(suite, cls_tasks, episodes_per_task=episodes_per_task, noise=demo_noise, seed=seed,
                                    progress=progress)
            else:
                buf = collect(suite, cls_tasks, src, episodes_per_task=episodes_per_task, seed=seed, progress=progress)
            seconds = time.perf_counter() - start
            row = data_stats(buf, suite, threshold=threshold, voxel=voxel, source=src)
            row["env_steps_per_s"] = buf.env_steps / seconds
            parts.append(row)
    return with_all_classes(pd.concat(parts, ignore_index=True))
