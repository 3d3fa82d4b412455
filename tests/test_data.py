"""collect, TaskBuffer and exploration policies on the fast suite."""

import numpy as np
import pytest
import torch

from meta_mbrl import TaskBuffer, collect
from meta_mbrl.data.policies import ColoredNoisePolicy, OUPolicy, UniformPolicy, powerlaw_noise


def test_collect_records_whole_episodes_with_task_ids(pm_suite):
    tasks = pm_suite.train_tasks[:5]
    buf = collect(pm_suite, tasks, "uniform", episodes_per_task=3, seed=1, progress=False)
    assert buf.task_ids == [t.id for t in tasks]
    assert buf.num_trajectories == 15
    assert buf.env_steps == 15 * pm_suite.max_episode_steps
    assert buf.sources[-1]["env_steps"] == buf.env_steps and buf.sources[-1]["policy"] == "uniform"
    for tr in buf.trajectories(tasks[0].id):
        assert tr.obs.shape == (pm_suite.max_episode_steps, 4)
        # consecutive: each next_obs is the following obs; the last next_obs is the true final obs, not a reset
        np.testing.assert_array_equal(tr.next_obs[:-1], tr.obs[1:])
        step = np.abs(tr.next_obs[-1, :2] - tr.obs[-1, :2]).max()
        assert step < 0.5


def test_collect_reward_matches_hidden_goal(pm_suite):
    task = pm_suite.train_tasks[3]
    buf = collect(pm_suite, [task], "colored-noise", episodes_per_task=1, progress=False)
    tr = buf.trajectories(task.id)[0]
    goal = np.array(task.payload["goal"])
    expected = -np.linalg.norm(tr.next_obs[:, :2] - goal, axis=-1) - 0.01 * (tr.act ** 2).sum(-1)
    np.testing.assert_allclose(tr.reward, expected, rtol=1e-5, atol=1e-5)


def test_collect_with_callable_policy_and_bad_args(pm_suite):
    calls = []

    def zero_policy(obs):
        calls.append(obs.shape)
        return np.zeros((obs.shape[0], 2), np.float32)

    buf = collect(pm_suite, pm_suite.train_tasks[:2], zero_policy, progress=False)
    assert calls and calls[0] == (2, 4)
    assert np.all(buf.transitions().act == 0)
    with pytest.raises(ValueError, match="policy: expected a callable or one of"):
        collect(pm_suite, pm_suite.train_tasks[:2], "greedy", progress=False)
    with pytest.raises(ValueError, match="episodes_per_task: expected >= 1, got 0"):
        collect(pm_suite, pm_suite.train_tasks[:2], episodes_per_task=0, progress=False)
    with pytest.raises(ValueError, match="tasks: expected at least one task"):
        collect(pm_suite, [], progress=False)


def test_sample_windows_are_consecutive_support_then_query(pm_suite):
    buf = collect(pm_suite, pm_suite.train_tasks[:6], episodes_per_task=2, progress=False)
    batch = buf.sample(4, support=10, query=7, rng=np.random.default_rng(0))
    assert batch.support.obs.shape == (4, 10, 4) and batch.query.obs.shape == (4, 7, 4)
    torch.testing.assert_close(batch.support.next_obs[:, :-1], batch.support.obs[:, 1:])
    torch.testing.assert_close(batch.support.next_obs[:, -1], batch.query.obs[:, 0])
    # distinct tasks when there are enough of them: the hidden goals (rewards) differ
    assert len({round(float(r), 5) for r in batch.support.reward[:, 0]}) == 4
    with pytest.raises(ValueError, match="no trajectory holds a window of 60"):
        buf.sample(2, support=30, query=30, rng=np.random.default_rng(0))


def test_buffer_save_load_roundtrip_and_atomicity(tmp_path, pm_suite, monkeypatch):
    buf = collect(pm_suite, pm_suite.train_tasks[:3], episodes_per_task=2, progress=False)
    path = tmp_path / "buf.npz"
    buf.save(path)
    loaded = TaskBuffer.load(path)
    assert loaded.task_ids == buf.task_ids and loaded.env_steps == buf.env_steps and loaded.sources == buf.sources
    for a, b in zip(loaded.transitions(), buf.transitions()):
        np.testing.assert_array_equal(a, b)
    a = loaded.sample(3, 5, 5, np.random.default_rng(1))
    b = buf.sample(3, 5, 5, np.random.default_rng(1))
    torch.testing.assert_close(a.query.obs, b.query.obs)

    # a crash while writing leaves the previous file intact and no temporary file behind
    buf.add_trajectory("extra", np.zeros((5, 4)), np.zeros((5, 2)), np.zeros(5), np.zeros((5, 4)))

    def boom(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(np, "savez", boom)
    with pytest.raises(RuntimeError):
        buf.save(path)
    assert TaskBuffer.load(path).task_ids == loaded.task_ids
    assert [p.name for p in tmp_path.iterdir()] == ["buf.npz"]


def test_add_trajectory_validates():
    buf = TaskBuffer(3, 1)
    with pytest.raises(ValueError, match=r"act: expected shape \(4, 1\), got \(4, 2\)"):
        buf.add_trajectory("t", np.zeros((4, 3)), np.zeros((4, 2)), np.zeros(4), np.zeros((4, 3)))
    with pytest.raises(ValueError, match="reward: expected finite values"):
        buf.add_trajectory("t", np.zeros((4, 3)), np.zeros((4, 1)), np.full(4, np.nan), np.zeros((4, 3)))
    with pytest.raises(ValueError, match="buffer: expected at least one trajectory"):
        buf.sample(1, 1, 1, np.random.default_rng(0))


def test_policies_respect_bounds_and_colored_noise_is_correlated():
    low, high = -np.ones(3, np.float32), np.ones(3, np.float32)
    obs = np.zeros((64, 5))
    for pol in (UniformPolicy(low, high, 0), ColoredNoisePolicy(low, high, seed=0, episode_length=100), OUPolicy(low, high, seed=0)):
        acts = np.stack([pol(obs) for _ in range(100)])
        assert acts.shape == (100, 64, 3) and acts.min() >= -1 and acts.max() <= 1
    x = powerlaw_noise(2.0, (200,), 256, np.random.default_rng(0))
    w = powerlaw_noise(0.0, (200,), 256, np.random.default_rng(0))
    lag1 = lambda z: np.mean([np.corrcoef(r[:-1], r[1:])[0, 1] for r in z])
    assert lag1(x) > 0.8 and abs(lag1(w)) < 0.1
    np.testing.assert_allclose(x.std(-1), 1.0, atol=1e-6)
