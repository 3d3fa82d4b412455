"""Scaling out. This package: Ray collection and control evaluation over several worker processes or machines (an
optional extra). :mod:`meta_mbrl.distributed.ddp`: torch.distributed data-parallel meta-training.

Nothing here imports ``ray`` until a function is called with workers; ``import meta_mbrl`` never does.

The unit of work is the one the serial code already has, so the results never depend on the number of
workers: :func:`collect` sends each chunk of ``num_envs`` tasks (the serial :func:`~meta_mbrl.data.collect`'s
vector envs, seeded from ``(seed, chunk)``) to a worker as one Ray task and merges the chunks' buffers in
chunk order: the same arrays, trajectory order, task order and ``sources`` entry as the serial call.
:func:`evaluate_groups` does the same with the control evaluation's task groups (``control.task_group``), and
:func:`evaluate_rounds` with Meta-World's evaluation rounds (``control.num_evals``).

A worker process that dies (killed, out of memory) is retried by Ray (``max_retries``); a chunk that still
fails, or whose env raises, is reported by a :class:`~meta_mbrl.errors.CollectionError` whose ``.buffer``
holds every chunk that finished, and whose message names the tasks that are missing.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Sequence

import numpy as np

from meta_mbrl.errors import CollectionError

__all__ = ["require_ray", "ray_session", "collect", "evaluate_groups", "evaluate_rounds", "merge_buffers"]

MAX_RETRIES = 2  # attempts after the first when a worker process dies


def require_ray(flag: str = "--workers"):
    """Imports and returns ``ray``, or raises a ValueError (one line) naming ``flag`` and ``pip install ray``."""
    try:
        import ray
    except ImportError:
        raise ValueError(f"{flag}: Ray is not installed; pip install ray (or pip install 'meta-mbrl[ray]'), or leave "
                         f"out {flag} to run in this process") from None
    return ray


@contextlib.contextmanager
def ray_session(workers: int, address: str | None = None):
    """A Ray runtime for the block: the one already running, the cluster at ``address``, or a local one of
    ``workers`` CPUs (shut down at the end; only one started here is)."""
    if isinstance(workers, bool) or not isinstance(workers, (int, np.integer)) or workers < 1:
        raise ValueError(f"workers: expected an int >= 1, got {workers!r}")
    ray = require_ray("--workers" if address is None else "--ray-address")
    started = False
    if not ray.is_initialized():
        opts = dict(include_dashboard=False, log_to_driver=False, configure_logging=False)
        if address:
            ray.init(address=address, **opts)
        else:
            ray.init(num_cpus=int(workers), **opts)
        started = True
    try:
        yield ray
    finally:
        if started:
            ray.shutdown()


def _limited(ray, submit, items: Sequence, workers: int):
    """Submits ``submit(i, item)`` for every item with at most ``workers`` in flight; yields ``(i, ref)`` as they end."""
    pending, queue = {}, list(enumerate(items))
    while queue or pending:
        while queue and len(pending) < workers:
            i, item = queue.pop(0)
            pending[submit(i, item)] = i
        done, _ = ray.wait(list(pending), num_returns=1)
        yield pending.pop(done[0]), done[0]


# ---------------------------------------------------------------------------------------------- collection
def _collect_chunk(suite, tasks, policy, episodes_per_task, seed, num_envs, strategy, source, step_timeout,
                   source_info, first_chunk):
    """One chunk, in a worker: ``(buffer, error)``; a CollectionError comes back as its partial buffer and message."""
    from meta_mbrl.data.rollout import collect as serial_collect

    try:
        buf = serial_collect(suite, tasks, policy, episodes_per_task=episodes_per_task, seed=seed, num_envs=num_envs,
                             strategy=strategy, progress=False, source=source, step_timeout=step_timeout,
                             source_info=source_info, first_chunk=first_chunk)
        return buf, None
    except CollectionError as e:
        return e.buffer, str(e)


def merge_buffers(parts, into=None):
    """Appends the trajectories of ``parts`` (TaskBuffers, in order) to ``into`` (default: a new buffer); returns it
    and the per-episode returns in trajectory order. ``env_steps`` add up; ``sources`` are not copied."""
    from meta_mbrl.data.buffer import TaskBuffer

    returns = []
    for part in parts:
        if into is None:
            into = TaskBuffer(part.obs_dim, part.act_dim)
        for task_index, arrays in part._trajs:
            into.add_trajectory(part.task_ids[task_index], *arrays)
            returns.append(float(arrays[2].sum()))
        into.env_steps += part.env_steps
    return into, returns


def collect(suite, tasks: Sequence, policy="colored-noise", episodes_per_task: int = 1, seed: int = 0,
            num_envs: int | None = None, *, workers: int = 2, address: str | None = None, strategy: str = "sync",
            buffer=None, progress: bool = True, source: str | None = None, step_timeout: float = 300.0,
            source_info: dict | None = None, max_retries: int = MAX_RETRIES):
    """:func:`meta_mbrl.data.collect` with its chunks of ``num_envs`` tasks run as Ray tasks on ``workers`` workers.

    The result is the serial call's, bit for bit, for any ``workers``: the same trajectories in the same order,
    ``env_steps`` and ``sources`` entry (its ``mean_return`` / ``success_rate`` over all episodes). A callable
    ``policy`` is pickled to the workers, so each chunk starts from its initial state: identical to the serial
    call only if its actions in a chunk do not depend on earlier chunks (e.g. it reseeds in ``attach``).

    Args:
        workers: Ray tasks in flight at once (and the CPUs of the local cluster started when Ray is not running).
        address: a Ray cluster to join (``ray.init(address=...)``); default: the running one or a new local one.
        max_retries: attempts after the first when a worker process dies.
        Others: as :func:`meta_mbrl.data.collect`.

    Raises:
        CollectionError: a chunk failed (its env raised, or its worker died ``max_retries + 1`` times); ``.buffer``
            holds every chunk that finished, in chunk order, and the failed chunks' whole episodes after them;
            the message names the missing tasks.
    """
    from meta_mbrl.data.buffer import TaskBuffer
    from meta_mbrl.data.policies import make_policy
    from meta_mbrl.data.rollout import _outcome_fields

    tasks = suite.check_tasks(tasks)
    if num_envs is None:
        num_envs = len(tasks) if getattr(suite, "batched_vec_env", False) else min(len(tasks), 10)
    if isinstance(num_envs, bool) or not isinstance(num_envs, (int, np.integer)) or num_envs < 1:
        raise ValueError(f"num_envs: expected an int >= 1, got {num_envs!r}")
    if buffer is None:
        buffer = TaskBuffer(suite.obs_dim, suite.act_dim)
    if isinstance(episodes_per_task, bool) or not isinstance(episodes_per_task, (int, np.integer)) or episodes_per_task < 1:
        raise ValueError(f"episodes_per_task: expected >= 1, got {episodes_per_task}")
    if strategy not in ("sync", "async"):
        raise ValueError(f"strategy: expected 'sync' or 'async', got {strategy!r}")
    pol = make_policy(policy, suite.action_low, suite.action_high, suite.max_episode_steps, seed)
    label = source or getattr(pol, "name", getattr(policy, "__name__", type(policy).__name__))
    chunks = [tasks[s:s + num_envs] for s in range(0, len(tasks), num_envs)]
    results: dict[int, tuple] = {}
    lost: dict[int, str] = {}
    steps_before, trajs_before = buffer.env_steps, buffer.num_trajectories
    t0 = time.perf_counter()
    status = "interrupted"
    returns: list[float] = []
    successes = 0
    try:
        with ray_session(workers, address) as ray:
            remote = ray.remote(num_cpus=1, max_retries=int(max_retries), retry_exceptions=False)(_collect_chunk)
            suite_ref = ray.put(suite)
            submit = lambda c, chunk: remote.remote(suite_ref, chunk, policy, episodes_per_task, seed, num_envs,  # noqa: E731
                                                    strategy, label, step_timeout, source_info, c)
            done = 0
            for c, ref in _limited(ray, submit, chunks, workers):
                try:
                    results[c] = ray.get(ref)
                except (ray.exceptions.WorkerCrashedError, ray.exceptions.RayTaskError,
                        ray.exceptions.NodeDiedError) as e:
                    lost[c] = f"{type(e).__name__}: {' '.join(str(e).split())[:300]}"
                done += 1
                if progress:
                    print(f"collect {suite.name} [{label}] on Ray: {done}/{len(chunks)} chunks "
                          f"({time.perf_counter() - t0:.0f} s)", flush=True)
        for c in range(len(chunks)):
            if c in results and results[c][1] is not None:
                lost[c] = results[c][1]
        ok = [results[c][0] for c in range(len(chunks)) if c in results and c not in lost]
        partial = [results[c][0] for c in sorted(lost) if c in results]
        _, returns = merge_buffers(ok + partial, buffer)
        for part in ok + partial:
            for s in part.sources:
                if "success_rate" in s:
                    successes += int(round(s["success_rate"] * s["trajectories"]))
        if lost:
            missing = [t.id for c in sorted(lost) for t in chunks[c]]
            why = "; ".join(f"chunk {c}: {lost[c]}" for c in sorted(lost))
            status = f"failed: {len(lost)} of {len(chunks)} chunks: {why}"[:500]
            raise CollectionError(
                f"collect: {len(lost)} of {len(chunks)} chunks failed on Ray workers ({why[:600]}). error.buffer holds the "
                f"{len(ok)} finished chunks and the failed chunks' whole episodes ({buffer.num_trajectories - trajs_before} "
                f"episodes); missing tasks: {missing[:20]}{'...' if len(missing) > 20 else ''}", buffer)
        status = "complete"
    finally:
        outcomes = {"returns": returns, "successes": []}
        fields = _outcome_fields(outcomes)
        reports = any("success_rate" in s for r in results.values() for s in r[0].sources)
        if fields and reports:
            fields["success_rate"] = float(np.mean(np.arange(len(returns)) < successes))
        buffer.record_source(policy=label, split=sorted({t.split for t in tasks}), suite=suite.name,
                             tasks=len(tasks), episodes_per_task=int(episodes_per_task),
                             env_steps=int(buffer.env_steps - steps_before),
                             trajectories=buffer.num_trajectories - trajs_before, status=status,
                             **fields, **(source_info or {}))
    return buffer


# ---------------------------------------------------------------------------------------------- evaluation
def _load_for_evaluation(checkpoint, cfg, value: bool):
    """In a worker: the learner (and value agent) from the checkpoint as the serial run builds them, and the suite."""
    import task_suites
    from meta_mbrl import runs
    from meta_mbrl.training import learner_from_checkpoint, load_checkpoint

    ckpt = load_checkpoint(checkpoint)
    learner = learner_from_checkpoint(ckpt, device=cfg.device)
    ac = runs.load_value_agent(runs._run_dir_of(checkpoint), learner, cfg.device) if value else None
    return learner, ac, task_suites.make(cfg.data.suite, seed=cfg.seed)


def _evaluate_part(checkpoint, cfg, value: bool, groups):
    """Some task groups of the control evaluation, in a worker: builds the learner (and value agent) from the
    checkpoint as the serial run does, then runs each group; returns ``[(g, df, info), ...]``."""
    from meta_mbrl import runs

    learner, ac, suite = _load_for_evaluation(checkpoint, cfg, value)
    out = []
    for g, offset, ids in groups:
        by_id = {t.id: t for t in suite.test_tasks}
        df, info = runs.evaluate_group(cfg, learner, suite, [by_id[i] for i in ids], g, offset, actor_critic=ac)
        out.append((g, df, info))
    return out


def _evaluate_on_ray(part, checkpoint, cfg, items: list, *, value: bool, what: str, name_of, workers: int,
                     address: str | None, max_retries: int, progress: bool) -> list:
    """``part(checkpoint, cfg, value, [item]) -> [(key, ...), ...]`` as one Ray task per item; the results in item order
    (keyed by each item's ``name_of``). A worker that dies is retried; an item that still fails raises a RuntimeError
    naming it."""
    results = {}
    t0 = time.perf_counter()
    with ray_session(workers, address) as ray:
        remote = ray.remote(num_cpus=1, max_retries=int(max_retries))(part)
        submit = lambda i, item: remote.remote(str(checkpoint), cfg, value, [item])  # noqa: E731
        for i, ref in _limited(ray, submit, items, workers):
            try:
                for key, *rest in ray.get(ref):
                    results[key] = (key, *rest)
            except (ray.exceptions.WorkerCrashedError, ray.exceptions.RayTaskError, ray.exceptions.NodeDiedError) as e:
                raise RuntimeError(f"control: {what} {name_of(items[i])} failed on a Ray worker: "
                                   f"{type(e).__name__}: {' '.join(str(e).split())[:400]}") from e
            if progress:
                print(f"control on Ray: {len(results)}/{len(items)} {what}s ({time.perf_counter() - t0:.0f} s)", flush=True)
    return results


def evaluate_groups(checkpoint, cfg, groups, *, value: bool, workers: int = 2, address: str | None = None,
                    max_retries: int = MAX_RETRIES, progress: bool = True):
    """The control evaluation's task groups ``[(g, offset, task ids), ...]`` on Ray workers, one Ray task per group.

    Each worker loads the checkpoint and runs :func:`meta_mbrl.runs.evaluate_group`, as the serial evaluation does
    for every group; returns ``[(g, df, info), ...]`` in group order. A worker that dies is retried; a group that
    still fails raises a RuntimeError naming its tasks.
    """
    results = _evaluate_on_ray(_evaluate_part, checkpoint, cfg, list(groups), value=value, what="evaluation group",
                               name_of=lambda grp: f"{grp[0]} (tasks {list(grp[2])[:5]})", workers=workers,
                               address=address, max_retries=max_retries, progress=progress)
    return [results[g] for g, _, _ in groups]


def _evaluate_rounds_part(checkpoint, cfg, value: bool, rounds):
    """Some Meta-World evaluation rounds, in a worker: ``[(r, df, info), ...]`` of :func:`meta_mbrl.runs.evaluate_round`."""
    from meta_mbrl import runs

    learner, ac, suite = _load_for_evaluation(checkpoint, cfg, value)
    return [(r, *runs.evaluate_round(cfg, learner, suite, r, actor_critic=ac)) for r in rounds]


def evaluate_rounds(checkpoint, cfg, rounds: Sequence[int], *, value: bool, workers: int = 2,
                    address: str | None = None, max_retries: int = MAX_RETRIES, progress: bool = True):
    """Meta-World's control evaluation rounds on Ray workers, one Ray task per round.

    Each worker loads the checkpoint and runs :func:`meta_mbrl.runs.evaluate_round` (a fresh agent seeded from
    ``(cfg.seed, r)``, the goals of round ``r``), as the serial evaluation does for every round; returns
    ``[(df, info), ...]`` in round order, for :func:`meta_mbrl.evaluation.combine_rounds`. A worker that dies is
    retried; a round that still fails raises a RuntimeError naming it.
    """
    rounds = list(rounds)
    results = _evaluate_on_ray(_evaluate_rounds_part, checkpoint, cfg, rounds, value=value,
                               what="Meta-World evaluation round", name_of=str, workers=workers, address=address,
                               max_retries=max_retries, progress=progress)
    return [results[r][1:] for r in rounds]
