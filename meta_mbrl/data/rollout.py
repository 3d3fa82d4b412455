"""collect: step a vector env over many tasks and record whole episodes per task."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from tqdm.auto import tqdm

from meta_mbrl.data.buffer import TaskBuffer
from meta_mbrl.data.policies import make_policy
from meta_mbrl.types import Transitions

__all__ = ["collect"]


def collect(
    suite,
    tasks: Sequence,
    policy="colored-noise",
    episodes_per_task: int = 1,
    seed: int = 0,
    num_envs: int | None = None,
    strategy: str = "sync",
    buffer: TaskBuffer | None = None,
    progress: bool = True,
    source: str | None = None,
) -> TaskBuffer:
    """Collects ``episodes_per_task`` full episodes on each task into a TaskBuffer.

    Tasks are run in chunks of ``num_envs`` sub-envs of one vector env (one sub-env per task).

    Args:
        suite: a task suite (``task_suites.make(...)``).
        tasks: tasks of the suite.
        policy: ``"uniform"``, ``"colored-noise"``, ``"ou"``, or a callable ``obs (B, O) -> act (B, A)``.
            A callable may also have ``reset(mask (B,))`` (told which envs start an episode) and
            ``observe(Transitions)`` (told every step's transitions, e.g. to adapt online), as
            :class:`~meta_mbrl.agent.MetaMBRLAgent` has.
        episodes_per_task: episodes recorded per task.
        seed: seeds env resets and the exploration noise.
        num_envs: sub-envs per vector env (default: all tasks at once, at most 10 for Meta-World).
        strategy: ``"sync"`` or ``"async"`` vector env.
        buffer: append to this buffer instead of a new one.
        progress: show a progress bar.
        source: label recorded in ``buffer.sources`` (default: the policy name).

    Returns:
        The buffer; ``buffer.env_steps`` counts every env step taken.

    Example:
        >>> import task_suites
        >>> suite = task_suites.make("point-mass")
        >>> buf = collect(suite, suite.train_tasks[:4], episodes_per_task=2, progress=False)
        >>> buf.num_trajectories
        8
    """
    tasks = suite.check_tasks(tasks)
    if episodes_per_task < 1:
        raise ValueError(f"episodes_per_task: expected >= 1, got {episodes_per_task}")
    if buffer is None:
        buffer = TaskBuffer(suite.obs_dim, suite.act_dim)
    elif (buffer.obs_dim, buffer.act_dim) != (suite.obs_dim, suite.act_dim):
        raise ValueError(
            f"buffer: expected obs/act dims {(suite.obs_dim, suite.act_dim)}, got {(buffer.obs_dim, buffer.act_dim)}"
        )
    if num_envs is None:
        num_envs = len(tasks) if suite.name == "point-mass" else min(len(tasks), 10)
    pol = make_policy(policy, suite.action_low, suite.action_high, suite.max_episode_steps, seed)
    label = source or getattr(pol, "name", getattr(policy, "__name__", type(policy).__name__))
    total = len(tasks) * episodes_per_task * suite.max_episode_steps
    steps_before = buffer.env_steps
    bar = tqdm(total=total, desc=f"collect {suite.name} [{label}]", unit="step", disable=not progress, leave=False)
    for c, start in enumerate(range(0, len(tasks), num_envs)):
        chunk = tasks[start:start + num_envs]
        env = suite.make_vec_env(chunk, seed=seed + 1000 * c, strategy=strategy)
        try:
            buffer.env_steps += _run_chunk(env, chunk, pol, episodes_per_task, seed + 1000 * c, buffer, bar)
        finally:
            env.close()
    bar.close()
    buffer.record_source(policy=label, split=sorted({t.split for t in tasks}), suite=suite.name,
                         tasks=len(tasks), episodes_per_task=episodes_per_task, env_steps=buffer.env_steps - steps_before)
    return buffer


def _run_chunk(env, tasks, policy, episodes: int, seed: int, buffer: TaskBuffer, bar) -> int:
    """Steps ``env`` until every sub-env finished ``episodes`` episodes; records them in ``buffer``.

    Transitions go into arrays preallocated for the whole chunk (one row per vector step), so the
    per-step cost is a few vectorized copies, not a Python loop over sub-envs.
    """
    n = len(tasks)
    obs, _ = env.reset(seed=seed)
    if hasattr(policy, "reset"):
        policy.reset(np.ones(n, dtype=bool))
    cap = episodes * _episode_cap(env)
    rec = {"obs": np.empty((cap, n, obs.shape[1]), np.float32), "act": None,
           "reward": np.empty((cap, n), np.float32), "next_obs": np.empty((cap, n, obs.shape[1]), np.float32)}
    ep_start = np.zeros(n, dtype=np.int64)
    done_eps = np.zeros(n, dtype=np.int64)
    t = 0
    while (done_eps < episodes).any():
        if t >= cap:
            raise RuntimeError(f"collect: episodes longer than the suite's max_episode_steps ({cap // episodes})")
        act = np.asarray(policy(obs), dtype=np.float32)
        next_obs, rew, term, trunc, info = env.step(act)
        if rec["act"] is None:
            rec["act"] = np.empty((cap, n, act.shape[1]), np.float32)
        ended = np.logical_or(term, trunc)
        rec["obs"][t], rec["act"][t], rec["reward"][t], rec["next_obs"][t] = obs, act, rew, next_obs
        if ended.any():
            mask = info["_final_obs"]
            rec["next_obs"][t, mask] = np.stack(list(info["final_obs"][mask]))
            for i in np.flatnonzero(ended):
                if done_eps[i] < episodes:
                    buffer.add_trajectory(tasks[i].id, *(rec[f][ep_start[i]:t + 1, i] for f in ("obs", "act", "reward", "next_obs")))
                    done_eps[i] += 1
                ep_start[i] = t + 1
            if hasattr(policy, "reset"):
                policy.reset(ended)
        if hasattr(policy, "observe"):
            policy.observe(Transitions(obs, act, rew, rec["next_obs"][t]))
        obs = next_obs
        t += 1
        bar.update(n)
    return t * n


def _episode_cap(env) -> int:
    """Upper bound on an episode's length: the TimeLimit of the first sub-env (or the vector env's own)."""
    limit = getattr(env, "max_episode_steps", None)
    if limit is None:
        limits = env.get_attr("_max_episode_steps") if hasattr(env, "get_attr") else [None]
        limit = limits[0]
    if limit is None:
        raise ValueError("env: collect needs a time limit (max_episode_steps) on the vector env's sub-envs")
    return int(limit)
