"""collect: step a vector env over many tasks and record whole episodes per task.

Nothing collected is lost on a failure: every finished episode is in the buffer as soon as it ends,
``buffer.env_steps`` grows with every vector step, and a failure (an env or policy exception, a
dead or hung async worker) raises :class:`~meta_mbrl.errors.CollectionError` whose ``.buffer``
holds all of it. Async workers are watched, so a killed worker is an error within a fraction of a
second instead of a hang.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Sequence
from multiprocessing.connection import wait as wait_for_pipes

import gymnasium as gym
import numpy as np
from tqdm.auto import tqdm

from meta_mbrl.data.buffer import TaskBuffer
from meta_mbrl.data.policies import make_policy
from meta_mbrl.errors import CollectionError
from meta_mbrl.types import Transitions

__all__ = ["collect", "env_seed", "policy_seed"]

_POLL_S = 0.05  # how often a wait for async workers checks that they are alive
_SOURCE_FIELDS = ("policy", "split", "suite", "tasks", "episodes_per_task", "env_steps", "trajectories", "status")
_TERM_GRACE_S = 2.0  # after a failure, how long a worker may take to exit on SIGTERM before it is killed


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
    step_timeout: float = 300.0,
    source_info: dict | None = None,
    first_chunk: int = 0,
) -> TaskBuffer:
    """Collects ``episodes_per_task`` full episodes on each task into a TaskBuffer.

    Tasks are run in chunks of ``num_envs`` sub-envs of one vector env (one sub-env per task). The
    data depend only on the arguments: chunk ``c``'s vector env is reset with ``env_seed(seed, c)``
    (sub-env ``i`` with ``env_seed(seed, c) + i``, the same for ``"sync"`` and ``"async"``), a hash of
    ``(seed, c)`` so that collections with nearby seeds never share env streams, and a named policy is
    built afresh for every chunk, seeded with ``policy_seed(seed, c)`` (``seed`` itself for chunk 0); a
    callable policy seeds itself. So each chunk's data depend only on ``seed``, ``c`` and its tasks,
    and a chunk can be collected on its own (``first_chunk``), as :mod:`meta_mbrl.distributed` does.

    Each call appends one entry to ``buffer.sources``, also when it fails or is interrupted:
    ``policy``, ``split``, ``suite``, ``tasks``, ``episodes_per_task``, ``env_steps`` (steps this call
    took), ``trajectories`` (whole episodes it added) and ``status`` (``"complete"``,
    ``"failed: <error>"`` or ``"interrupted"``).

    Args:
        suite: a task suite (``task_suites.make(...)``).
        tasks: tasks of the suite.
        policy: ``"uniform"``, ``"colored-noise"``, ``"ou"``, or a callable ``obs (B, O) -> act (B, A)``.
            A callable may also have ``reset(mask (B,))`` (told which envs start an episode) and
            ``observe(Transitions)`` (told every step's transitions, e.g. to adapt online), as
            :class:`~meta_mbrl.agent.MetaMBRLAgent` has, and ``attach(env, tasks)``: told each chunk's
            vector env and its tasks before the env is reset, so that a policy with privileged access
            (the scripted demo policies of :mod:`meta_mbrl.data.demos`, which read the hidden goal
            through ``env.call``) can query the sub-envs; the recorded observations are unchanged.
        episodes_per_task: episodes recorded per task.
        seed: seeds env resets and the exploration noise.
        num_envs: sub-envs per vector env (default: all tasks at once, at most 10 for Meta-World).
        strategy: ``"sync"`` or ``"async"`` vector env.
        buffer: append to this buffer instead of a new one.
        progress: show a progress bar.
        source: label recorded in ``buffer.sources`` (default: the policy name).
        step_timeout: seconds an async worker may take for one reset or step before it counts as hung.
        source_info: extra JSON-serializable fields of this call's ``buffer.sources`` entry (e.g. the
            demo track's ``{"noise": 0.3}``); they may not replace the standard fields.
        first_chunk: the chunk index of ``tasks[0]``: a call on ``tasks[c * num_envs:]`` with
            ``first_chunk=c`` collects exactly what the full call collects on those tasks.

    Returns:
        The buffer; ``buffer.env_steps`` counts every env step taken (unfinished episodes included).

    Raises:
        ValueError: for a bad argument, before anything runs.
        CollectionError: when the env or policy fails partway (chained from the original error);
            ``error.buffer`` is the buffer (the one passed in, or a new one) with every finished
            episode and ``env_steps`` counting every completed vector step. The unfinished episodes
            are dropped. A ``KeyboardInterrupt`` propagates unchanged and leaves the same state.

    Example:
        >>> import task_suites
        >>> suite = task_suites.make("point-mass")
        >>> buf = collect(suite, suite.train_tasks[:4], episodes_per_task=2, progress=False)
        >>> buf.num_trajectories, buf.env_steps, buf.sources[-1]["status"]
        (8, 400, 'complete')
    """
    tasks = suite.check_tasks(tasks)
    if isinstance(episodes_per_task, bool) or not isinstance(episodes_per_task, (int, np.integer)) or episodes_per_task < 1:
        raise ValueError(f"episodes_per_task: expected >= 1, got {episodes_per_task}")
    if strategy not in ("sync", "async"):
        raise ValueError(f"strategy: expected 'sync' or 'async', got {strategy!r}")
    if isinstance(step_timeout, bool) or not isinstance(step_timeout, (int, float)) or not step_timeout > 0:
        raise ValueError(f"step_timeout: expected a number of seconds > 0, got {step_timeout!r}")
    if source_info is not None and (not isinstance(source_info, dict) or set(source_info) & set(_SOURCE_FIELDS)):
        raise ValueError(f"source_info: expected a dict of extra fields (none of {list(_SOURCE_FIELDS)}), got {source_info!r}")
    if buffer is None:
        buffer = TaskBuffer(suite.obs_dim, suite.act_dim)
    elif (buffer.obs_dim, buffer.act_dim) != (suite.obs_dim, suite.act_dim):
        raise ValueError(
            f"buffer: expected obs/act dims {(suite.obs_dim, suite.act_dim)}, got {(buffer.obs_dim, buffer.act_dim)}"
        )
    if num_envs is None:
        num_envs = len(tasks) if getattr(suite, "batched_vec_env", False) else min(len(tasks), 10)
    if isinstance(num_envs, bool) or not isinstance(num_envs, (int, np.integer)) or num_envs < 1:
        raise ValueError(f"num_envs: expected an int >= 1, got {num_envs!r}")
    if isinstance(first_chunk, bool) or not isinstance(first_chunk, (int, np.integer)) or first_chunk < 0:
        raise ValueError(f"first_chunk: expected an int >= 0, got {first_chunk!r}")

    def chunk_policy(c: int):
        return make_policy(policy, suite.action_low, suite.action_high, suite.max_episode_steps, policy_seed(seed, c))

    pol = chunk_policy(first_chunk)
    label = source or getattr(pol, "name", getattr(policy, "__name__", type(policy).__name__))
    total = len(tasks) * episodes_per_task * suite.max_episode_steps
    steps_before, trajs_before = buffer.env_steps, buffer.num_trajectories
    status = "interrupted"
    outcomes: dict[str, list] = {"returns": [], "successes": []}
    bar = tqdm(total=total, desc=f"collect {suite.name} [{label}]", unit="step", disable=not progress, leave=False)
    chunk: list = []
    try:
        for c, start in enumerate(range(0, len(tasks), num_envs), start=first_chunk):
            chunk = tasks[start:start + num_envs]
            if c > first_chunk:
                pol = chunk_policy(c)  # a callable comes back unchanged
            env = suite.make_vec_env(chunk, seed=env_seed(seed, c), strategy=strategy)
            ok = False
            try:
                _run_chunk(env, chunk, pol, episodes_per_task, env_seed(seed, c), buffer, bar,
                           cap=int(suite.max_episode_steps), timeout=float(step_timeout), outcomes=outcomes)
                ok = True
            finally:
                _close(env, ok)
        status = "complete"
    except Exception as e:
        status = f"failed: {type(e).__name__}: {e}"[:500]
        raise CollectionError(
            f"collect: {type(e).__name__} while collecting on {suite.name} tasks "
            f"{[t.id for t in chunk][:3]}{'...' if len(chunk) > 3 else ''} ({strategy}): {e}. "
            f"error.buffer holds the {buffer.num_trajectories - trajs_before} whole episodes this call finished "
            f"(unfinished ones are dropped) and env_steps={buffer.env_steps} ({buffer.env_steps - steps_before} "
            "taken by this call)",
            buffer,
        ) from e
    finally:
        bar.close()
        buffer.record_source(policy=label, split=sorted({t.split for t in tasks}), suite=suite.name,
                             tasks=len(tasks), episodes_per_task=int(episodes_per_task),
                             env_steps=int(buffer.env_steps - steps_before),
                             trajectories=buffer.num_trajectories - trajs_before, status=status,
                             **_outcome_fields(outcomes), **(source_info or {}))
    return buffer


def env_seed(seed: int, chunk: int = 0) -> int:
    """The reset seed of chunk ``chunk`` of a collection seeded ``seed``: a hash, in ``[0, 2**31)``.

    With ``seed + i`` per sub-env (gymnasium's convention), plain offsets would make collections with
    nearby seeds (train data at seed 0, test data at seed 1) replay each other's env streams.

    Example:
        >>> env_seed(0) != env_seed(1) - 1, env_seed(0) == env_seed(0)
        (True, True)
    """
    return int(np.random.SeedSequence([int(seed), int(chunk)]).generate_state(1, dtype=np.uint32)[0] >> 1)


def policy_seed(seed: int, chunk: int = 0) -> int:
    """The seed of chunk ``chunk``'s named exploration policy: ``seed`` for chunk 0, a hash of ``(seed, chunk)`` after.

    Example:
        >>> policy_seed(3), policy_seed(3, 1) != policy_seed(3, 2)
        (3, True)
    """
    if chunk == 0:
        return int(seed)
    return int(np.random.SeedSequence([int(seed), int(chunk), 1]).generate_state(1, dtype=np.uint32)[0] >> 1)


def _outcome_fields(outcomes: dict[str, list]) -> dict:
    """``mean_return`` of the recorded episodes and, where the env reports ``success``, their ``success_rate``
    (an episode succeeds if the flag is ever 1, Meta-World's criterion)."""
    if not outcomes["returns"]:
        return {}
    out = {"mean_return": float(np.mean(outcomes["returns"]))}
    if outcomes["successes"]:
        out["success_rate"] = float(np.mean(outcomes["successes"]))
    return out


def _run_chunk(env, tasks, policy, episodes: int, seed: int, buffer: TaskBuffer, bar, cap: int, timeout: float,
               outcomes: dict[str, list] | None = None) -> None:
    """Steps ``env`` until every sub-env finished ``episodes`` episodes; records them in ``buffer``.

    Transitions go into arrays preallocated for the whole chunk (one row per vector step), so the
    per-step cost is a few vectorized copies, not a Python loop over sub-envs. An episode enters the
    buffer the step it ends; ``buffer.env_steps`` grows by ``len(tasks)`` with every vector step.
    """
    n = len(tasks)
    if hasattr(policy, "attach"):
        policy.attach(env, tasks)
    obs, _ = _reset(env, seed, tasks, timeout)
    if hasattr(policy, "reset"):
        policy.reset(np.ones(n, dtype=bool))
    cap *= episodes
    rec = {"obs": np.empty((cap, n, obs.shape[1]), np.float32), "act": None,
           "reward": np.empty((cap, n), np.float32), "next_obs": np.empty((cap, n, obs.shape[1]), np.float32)}
    ep_start = np.zeros(n, dtype=np.int64)
    done_eps = np.zeros(n, dtype=np.int64)
    succeeded = np.zeros(n, dtype=bool)
    reports_success = False
    t = 0
    while (done_eps < episodes).any():
        if t >= cap:
            raise RuntimeError(f"collect: episodes longer than the suite's max_episode_steps ({cap // episodes})")
        act = np.asarray(policy(obs), dtype=np.float32)
        next_obs, rew, term, trunc, info = _step(env, act, tasks, t, timeout)
        buffer.env_steps += n
        bar.update(n)
        if rec["act"] is None:
            rec["act"] = np.empty((cap, n, act.shape[1]), np.float32)
        ended = np.logical_or(term, trunc)
        # an env that ended this step reports its last info in "final_info" (same-step autoreset)
        for inf in (info, info.get("final_info") if isinstance(info.get("final_info"), dict) else {}):
            if "success" in inf:
                reports_success = True
                succeeded |= np.asarray(inf["success"], dtype=float) >= 1.0
        rec["obs"][t], rec["act"][t], rec["reward"][t], rec["next_obs"][t] = obs, act, rew, next_obs
        if ended.any():
            mask = info["_final_obs"]
            rec["next_obs"][t, mask] = np.stack(list(info["final_obs"][mask]))
            for i in np.flatnonzero(ended):
                if done_eps[i] < episodes:
                    buffer.add_trajectory(tasks[i].id, *(rec[f][ep_start[i]:t + 1, i] for f in ("obs", "act", "reward", "next_obs")))
                    done_eps[i] += 1
                    if outcomes is not None:
                        outcomes["returns"].append(float(rec["reward"][ep_start[i]:t + 1, i].sum()))
                        if reports_success:
                            outcomes["successes"].append(bool(succeeded[i]))
                ep_start[i] = t + 1
                succeeded[i] = False
            if hasattr(policy, "reset"):
                policy.reset(ended)
        if hasattr(policy, "observe"):
            policy.observe(Transitions(obs, act, rew, rec["next_obs"][t]))
        obs = next_obs
        t += 1


# ---------------------------------------------------------------------- async workers
def _reset(env, seed: int, tasks, timeout: float):
    if not isinstance(env, gym.vector.AsyncVectorEnv):
        return env.reset(seed=seed)
    _check_alive(env, tasks, "before reset")
    env.reset_async(seed=seed)
    _await(env, tasks, timeout, "reset")
    return _receive(env, env.reset_wait, tasks, "reset")


def _step(env, act, tasks, t: int, timeout: float):
    if not isinstance(env, gym.vector.AsyncVectorEnv):
        return env.step(act)
    _check_alive(env, tasks, f"before step {t}")
    env.step_async(act)
    _await(env, tasks, timeout, f"step {t}")
    return _receive(env, env.step_wait, tasks, f"step {t}")


def _check_alive(env, tasks, when: str, only=None) -> None:
    """Raises a RuntimeError naming every dead worker (of those in ``only``, default all)."""
    dead = [(i, p) for i, p in enumerate(env.processes) if (only is None or i in only) and not p.is_alive()]
    if dead:
        what = ", ".join(f"worker {i} (task {tasks[i].id}, pid {p.pid}, exit code {p.exitcode})" for i, p in dead)
        killed = any(p.exitcode == -9 for _, p in dead)
        raise RuntimeError(f"env: async {what} died {when}" + (" (exit code -9: SIGKILL, e.g. the OOM killer)" if killed else ""))


def _await(env, tasks, timeout: float, what: str) -> None:
    """Waits until every worker answered, checking every ``_POLL_S`` s that the others are alive; never hangs."""
    pending = {i for i, p in enumerate(env.parent_pipes) if p is not None}
    deadline = time.monotonic() + timeout
    while pending:
        _check_alive(env, tasks, f"during {what}", only=pending)
        ready = wait_for_pipes([env.parent_pipes[i] for i in pending], timeout=_POLL_S)
        pending = {i for i in pending if env.parent_pipes[i] not in ready}
        if pending and time.monotonic() > deadline:
            raise TimeoutError(f"env: async workers {sorted(pending)} gave no answer to {what} within step_timeout={timeout} s")


def _receive(env, wait_fn, tasks, what: str):
    """``wait_fn()`` (answers are ready); a closed pipe there means a worker died: say which."""
    try:
        return wait_fn()
    except (EOFError, OSError):
        deadline = time.monotonic() + 1.0  # a killed worker's pipe closes just before it is reaped
        while time.monotonic() < deadline:
            _check_alive(env, tasks, f"during {what}")  # raises (with the EOFError as context) once it is reaped
            time.sleep(_POLL_S)
        raise


def _close(env, ok: bool) -> None:
    """Closes ``env``; after a failure, an async env's workers are terminated (a normal close could hang).

    A worker that ignores SIGTERM for ``_TERM_GRACE_S`` (e.g. a stopped process) is killed.
    """
    if ok:
        env.close()
        return
    try:
        if isinstance(env, gym.vector.AsyncVectorEnv):
            # closed pipes make gymnasium's close skip waiting for pending answers
            for pipe in env.parent_pipes:
                if pipe is not None:
                    pipe.close()
            for p in env.processes:
                if p.is_alive():
                    p.terminate()
            deadline = time.monotonic() + _TERM_GRACE_S
            for p in env.processes:
                p.join(max(0.0, deadline - time.monotonic()))
            for p in env.processes:
                if p.is_alive():
                    p.kill()
                    p.join(5.0)
            env.close(terminate=True)
        else:
            env.close()
    except Exception as e:  # the collection error being raised matters more; do not mask it
        warnings.warn(f"collect: closing the vector env after a failure raised {type(e).__name__}: {e}", stacklevel=3)
