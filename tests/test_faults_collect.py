"""collect under faults: a failing policy or env, Ctrl-C, a killed or hung async worker.

Whatever happens, every finished episode stays in the buffer, ``env_steps`` counts every completed
vector step, a source entry says what happened, and nothing hangs.
"""

import faulthandler
import os
import signal
import time

import gymnasium as gym
import numpy as np
import pytest

import task_suites
from meta_mbrl import TaskBuffer, collect
from meta_mbrl.errors import CollectionError

STEPS = 50  # the point-mass suite's episode length


class SpySuite:
    """The suite, recording the vector envs collect makes (so a test can reach their workers)."""

    def __init__(self, suite, wrap=None):
        self.suite, self.envs, self.wrap = suite, [], wrap

    def __getattr__(self, name):
        return getattr(self.suite, name)

    def make_vec_env(self, *args, **kwargs):
        env = self.suite.make_vec_env(*args, **kwargs)
        env = self.wrap(env) if self.wrap else env
        self.envs.append(env)
        return env


def failing_policy(on_call, exc, act_dim=2, action=None):
    """Zero actions; on call ``on_call`` it runs ``action()`` if given, else raises ``exc``."""
    calls = [0]

    def policy(obs):
        calls[0] += 1
        if calls[0] == on_call:
            if action is None:
                raise exc
            action()
        return np.zeros((obs.shape[0], act_dim), np.float32)

    return policy


@pytest.fixture
def watchdog():
    """Fails the run with a traceback dump instead of hanging forever (the bug under test is a hang)."""
    faulthandler.dump_traceback_later(60, exit=True)
    yield
    faulthandler.cancel_dump_traceback_later()


def assert_consistent(buf, trajectories, env_steps):
    assert buf.num_trajectories == trajectories and buf.env_steps == env_steps
    assert buf.num_transitions == trajectories * STEPS
    for tid in buf.task_ids:
        for tr in buf.trajectories(tid):
            assert tr.obs.shape == (STEPS, 4)
            np.testing.assert_array_equal(tr.next_obs[:-1], tr.obs[1:])


@pytest.mark.parametrize("with_buffer", [False, True])
def test_policy_failure_keeps_finished_episodes_and_counts_steps(pm_suite, with_buffer):
    tasks = pm_suite.train_tasks[:3]
    given = collect(pm_suite, pm_suite.train_tasks[3:4], "uniform", progress=False) if with_buffer else None
    before = (given.num_trajectories, given.env_steps) if with_buffer else (0, 0)
    boom = ZeroDivisionError("policy bug")
    # call 2*STEPS + 11: two episodes per task are done, the third is 10 steps in
    with pytest.raises(CollectionError, match="ZeroDivisionError.*policy bug") as info:
        collect(pm_suite, tasks, failing_policy(2 * STEPS + 11, boom), episodes_per_task=3, buffer=given, progress=False)
    err = info.value
    assert err.__cause__ is boom and isinstance(err, RuntimeError)
    buf = err.buffer
    assert isinstance(buf, TaskBuffer)
    if with_buffer:
        assert buf is given
    assert_consistent(buf, before[0] + 2 * 3, before[1] + (2 * STEPS + 10) * 3)
    src = buf.sources[-1]
    assert src["status"].startswith("failed: ZeroDivisionError") and src["env_steps"] == (2 * STEPS + 10) * 3
    assert src["trajectories"] == 6 and src["policy"] == "policy"
    assert "6 whole episodes" in str(err) and f"env_steps={buf.env_steps}" in str(err)


def test_env_failure_in_a_later_chunk_keeps_earlier_chunks(pm_suite):
    class Broken(gym.vector.VectorWrapper):
        def step(self, actions):
            raise OSError("simulator crashed")

    made = []

    def wrap(env):
        made.append(env)
        return Broken(env) if len(made) == 2 else env  # the second chunk's env fails at its first step

    spy = SpySuite(pm_suite, wrap)
    with pytest.raises(CollectionError, match="OSError.*simulator crashed") as info:
        collect(spy, pm_suite.train_tasks[:4], "ou", num_envs=2, progress=False)
    assert isinstance(info.value.__cause__, OSError)
    assert_consistent(info.value.buffer, 2, 2 * STEPS)
    assert info.value.buffer.task_ids == [t.id for t in pm_suite.train_tasks[:2]]


def test_keyboard_interrupt_propagates_and_leaves_the_buffer_consistent(pm_suite, tmp_path):
    buf = TaskBuffer(4, 2)
    with pytest.raises(KeyboardInterrupt):
        collect(pm_suite, pm_suite.train_tasks[:2], failing_policy(STEPS + 5, KeyboardInterrupt()),
                episodes_per_task=2, buffer=buf, progress=False)
    assert_consistent(buf, 2, (STEPS + 4) * 2)
    assert buf.sources[-1]["status"] == "interrupted" and buf.sources[-1]["env_steps"] == buf.env_steps
    buf.save(tmp_path / "b.npz")
    loaded = TaskBuffer.load(tmp_path / "b.npz")
    assert loaded.env_steps == buf.env_steps and loaded.sources == buf.sources
    assert loaded.sample(2, 5, 5, np.random.default_rng(0)).support.obs.shape == (2, 5, 4)


def test_argument_errors_are_value_errors_before_anything_runs(pm_suite):
    buf = TaskBuffer(4, 2)
    with pytest.raises(ValueError, match="strategy: expected 'sync' or 'async', got 'threads'"):
        collect(pm_suite, pm_suite.train_tasks[:2], strategy="threads", buffer=buf, progress=False)
    with pytest.raises(ValueError, match="num_envs: expected an int >= 1, got 0"):
        collect(pm_suite, pm_suite.train_tasks[:2], num_envs=0, buffer=buf, progress=False)
    assert buf.sources == [] and buf.env_steps == 0


def test_killed_async_worker_is_an_error_within_seconds(watchdog):
    suite = task_suites.make("point-mass")
    spy = SpySuite(suite)
    kill = lambda: os.kill(spy.envs[-1].processes[1].pid, signal.SIGKILL)
    t0 = time.monotonic()
    with pytest.raises(CollectionError, match=r"worker 1 \(task point-mass/train/01.*died.*SIGKILL") as info:
        collect(spy, suite.train_tasks[:3], failing_policy(2 * STEPS + 20, None, action=kill), episodes_per_task=3,
                strategy="async", progress=False)
    assert time.monotonic() - t0 < 10
    assert isinstance(info.value.__cause__, RuntimeError)
    assert_consistent(info.value.buffer, 2 * 3, (2 * STEPS + 19) * 3)
    env = spy.envs[-1]
    assert env.closed and not any(p.is_alive() for p in env.processes)


def test_hung_async_worker_times_out_and_is_killed(watchdog):
    suite = task_suites.make("point-mass")
    spy = SpySuite(suite)
    stop = lambda: os.kill(spy.envs[-1].processes[0].pid, signal.SIGSTOP)  # alive, but never answers
    t0 = time.monotonic()
    with pytest.raises(CollectionError, match=r"workers \[0\] gave no answer to step 14 within step_timeout=0.5 s"):
        collect(spy, suite.train_tasks[:2], failing_policy(15, None, action=stop), strategy="async",
                step_timeout=0.5, progress=False)
    assert time.monotonic() - t0 < 10
    assert spy.envs[-1].closed and not any(p.is_alive() for p in spy.envs[-1].processes)


@pytest.mark.metaworld
def test_killed_metaworld_worker_is_an_error_within_seconds(ml10_suite, watchdog):
    spy = SpySuite(ml10_suite)
    tasks = [ml10_suite.test_tasks[0], ml10_suite.test_tasks[50]]
    kill = lambda: os.kill(spy.envs[-1].processes[0].pid, signal.SIGKILL)
    t0 = time.monotonic()
    with pytest.raises(CollectionError, match="worker 0 .*died") as info:
        collect(spy, tasks, failing_policy(31, None, act_dim=4, action=kill), strategy="async", progress=False)
    assert time.monotonic() - t0 < 20  # includes starting two Meta-World workers
    assert info.value.buffer.env_steps == 30 * 2 and info.value.buffer.num_trajectories == 0
