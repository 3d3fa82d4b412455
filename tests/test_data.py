"""collect, TaskBuffer and exploration policies on the fast suite."""

import json

import numpy as np
import pytest
import torch

from meta_mbrl import TaskBuffer, collect
from meta_mbrl.data.policies import ColoredNoisePolicy, OUPolicy, UniformPolicy, powerlaw_noise
from meta_mbrl.errors import FileFormatError


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


# ---------------------------------------------------------------------- reproducibility, sync == async


def assert_same_buffers(a, b):
    assert a.task_ids == b.task_ids and a.env_steps == b.env_steps and a.num_trajectories == b.num_trajectories
    for x, y in zip(a.transitions(), b.transitions()):
        np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("policy", ["uniform", "colored-noise", "ou"])
def test_collect_is_bit_reproducible_given_seed(pm_suite, policy):
    tasks = pm_suite.train_tasks[:5]
    a, b = (collect(pm_suite, tasks, policy, episodes_per_task=2, seed=7, num_envs=3, progress=False) for _ in range(2))
    assert_same_buffers(a, b)
    c = collect(pm_suite, tasks, policy, episodes_per_task=2, seed=8, num_envs=3, progress=False)
    assert not np.array_equal(a.transitions().obs, c.transitions().obs)


def test_async_collection_equals_sync_on_point_mass(pm_suite):
    tasks = pm_suite.train_tasks[:3]
    sync = collect(pm_suite, tasks, episodes_per_task=2, seed=3, progress=False)
    asyn = collect(pm_suite, tasks, episodes_per_task=2, seed=3, strategy="async", progress=False)
    assert_same_buffers(sync, asyn)
    assert asyn.sources[-1]["status"] == "complete" and asyn.sources[-1]["trajectories"] == 6


# ---------------------------------------------------------------------- TaskBuffer.load validation


@pytest.fixture
def good_arrays(tmp_path):
    buf = TaskBuffer(3, 2)
    rng = np.random.default_rng(0)
    for task, n in (("a", 4), ("b", 3), ("a", 5)):
        buf.add_trajectory(task, rng.normal(size=(n, 3)), rng.normal(size=(n, 2)), rng.normal(size=n), rng.normal(size=(n, 3)))
    buf.env_steps, buf.sources = 20, [{"policy": "uniform"}]
    buf.save(tmp_path / "good.npz")
    with np.load(tmp_path / "good.npz") as z:
        return {k: z[k] for k in z.files}


def _meta(arrays, **change):
    meta = json.loads(str(arrays["meta"]))
    meta.update(change)
    for k in [k for k, v in change.items() if v is _DROP]:
        del meta[k]
    return np.asarray(json.dumps(meta))


_DROP = object()

# (name, change to the saved arrays, expected message fragment)
_CORRUPTIONS = [
    ("missing field", lambda z: z.pop("reward"), r"missing \['reward'\]"),
    ("pickled array", lambda z: z.update(obs=np.array([{"x": 1}], dtype=object)), r"field 'obs' is a pickled object array; refused"),
    ("meta not json", lambda z: z.update(meta=np.asarray("{obs_dim: 3")), "meta: expected valid JSON"),
    ("meta not an object", lambda z: z.update(meta=np.asarray("[1, 2]")), "meta: expected a JSON object, got list"),
    ("meta 1-d", lambda z: z.update(meta=np.asarray(["{}"])),
     r"meta: expected a 0-d string array holding JSON, got dtype <U2 shape \(1,\)"),
    ("meta missing key", lambda z: z.update(meta=_meta(z, env_steps=_DROP)), r"meta: expected keys .* missing \['env_steps'\]"),
    ("obs_dim not int", lambda z: z.update(meta=_meta(z, obs_dim=3.0)), "meta.obs_dim: expected a positive int, got 3.0"),
    ("env_steps negative", lambda z: z.update(meta=_meta(z, env_steps=-1)), "meta.env_steps: expected a non-negative int, got -1"),
    ("env_steps float", lambda z: z.update(meta=_meta(z, env_steps=2.5)), "meta.env_steps: expected a non-negative int, got 2.5"),
    ("sources not list", lambda z: z.update(meta=_meta(z, sources={"a": 1})), "meta.sources: expected a list, got dict"),
    ("task ids duplicate", lambda z: z.update(meta=_meta(z, task_ids=["a", "a"])),
     r"meta.task_ids: expected unique ids, got duplicates \['a'\]"),
    ("task ids not str", lambda z: z.update(meta=_meta(z, task_ids=["a", 2])), "meta.task_ids: expected a list of strings"),
    ("obs int dtype", lambda z: z.update(obs=z["obs"].astype(np.int64)), r"obs: expected a real floating dtype \(float32\), got int64"),
    ("act complex dtype", lambda z: z.update(act=z["act"].astype(np.complex64)), "act: expected a real floating dtype .* got complex64"),
    ("traj_task float", lambda z: z.update(traj_task=z["traj_task"].astype(np.float32)),
     "traj_task: expected an integer dtype, got float32"),
    ("traj_len 2-d", lambda z: z.update(traj_len=z["traj_len"][None]), r"traj_len: expected a 1-D array, got shape \(1, 3\)"),
    ("obs wrong dim", lambda z: z.update(obs=z["obs"][:, :2]), r"obs: expected shape \(N, 3\) with N = len\(obs\) = 12, got \(12, 2\)"),
    ("act wrong dim", lambda z: z.update(act=z["act"][:, :1]), r"act: expected shape \(N, 2\) .* got \(12, 1\)"),
    ("reward 2-d", lambda z: z.update(reward=z["reward"][:, None]), r"reward: expected shape \(N,\) .* got \(12, 1\)"),
    ("next_obs short", lambda z: z.update(next_obs=z["next_obs"][:-1]), r"next_obs: expected shape \(N, 3\) .* got \(11, 3\)"),
    ("obs 0-d", lambda z: z.update(obs=np.float32(1.0)), r"obs: expected shape \(N, 3\) with N = len\(obs\) = None, got \(\)"),
    ("traj_len sum", lambda z: z.update(traj_len=np.array([4, 3, 4])), "traj_len: expected lengths summing to N = len.obs. = 12, got 11"),
    ("traj_len zero", lambda z: z.update(traj_len=np.array([4, 0, 8])), r"traj_len: expected lengths >= 1, got 0 \(trajectory 1\)"),
    ("traj_task length", lambda z: z.update(traj_task=np.array([0, 1])),
     "traj_task: expected one entry per trajectory, len.traj_len. = 3, got 2"),
    ("traj_task range", lambda z: z.update(traj_task=np.array([0, 2, 0])), r"traj_task: expected task indices in \[0, 2\) .* got 2"),
    ("traj_task negative", lambda z: z.update(traj_task=np.array([0, -1, 0])), r"traj_task: expected task indices in \[0, 2\) .* got -1"),
    ("nan reward", lambda z: z["reward"].__setitem__(5, np.nan),
     r"reward: expected finite values, got 1 NaN/Inf entries \(first in row 5\)"),
    ("inf obs", lambda z: z["obs"].__setitem__((7, 1), np.inf), r"obs: expected finite values, got 1 NaN/Inf entries \(first in row 7\)"),
]


@pytest.mark.parametrize("name, corrupt, message", _CORRUPTIONS, ids=[c[0] for c in _CORRUPTIONS])
def test_load_rejects_each_corruption_naming_file_and_problem(tmp_path, good_arrays, name, corrupt, message):
    corrupt(good_arrays)
    path = tmp_path / "bad.npz"
    np.savez(path, **good_arrays)
    with pytest.raises(FileFormatError, match=message) as info:
        TaskBuffer.load(path)
    assert str(path) in str(info.value)


def test_load_rejects_unreadable_files(tmp_path, good_arrays):
    np.savez(tmp_path / "good.npz", **good_arrays)
    raw = (tmp_path / "good.npz").read_bytes()
    cases = {
        "missing.npz": (None, "buffer file not found"),
        "empty.npz": (b"", r"expected an .npz archive written by TaskBuffer.save, got a file starting with b''"),
        "text.npz": (b"obs,act\n1,2\n", "expected an .npz archive .* got a file starting with b'obs,'"),
        "truncated.npz": (raw[: len(raw) // 2], r"not a readable .npz archive \(truncated or corrupt file\?\): BadZipFile"),
        "flipped.npz": (raw[:300] + bytes(b ^ 0xFF for b in raw[300:340]) + raw[340:], "could not be read"),
    }
    for fname, (content, message) in cases.items():
        path = tmp_path / fname
        if content is not None:
            path.write_bytes(content)
        with pytest.raises(FileFormatError, match=message) as info:
            TaskBuffer.load(path)
        assert str(path) in str(info.value), fname
    np.save(tmp_path / "array.npy", np.zeros(3))
    with pytest.raises(FileFormatError, match="expected an .npz archive .* got a file starting with b'.*NUM'"):
        TaskBuffer.load(tmp_path / "array.npy")
    with pytest.raises(FileFormatError, match=r"expected a buffer file \(\.npz\), got a directory"):
        TaskBuffer.load(tmp_path)
    assert issubclass(FileFormatError, ValueError)


def test_load_accepts_castable_floats_and_roundtrips(tmp_path, good_arrays):
    good_arrays["obs"] = good_arrays["obs"].astype(np.float64)
    good_arrays["traj_len"] = good_arrays["traj_len"].astype(np.int32)
    np.savez(tmp_path / "f64.npz", **good_arrays)
    buf = TaskBuffer.load(tmp_path / "f64.npz")
    assert buf.transitions().obs.dtype == np.float32 and buf.num_trajectories == 3 and buf.env_steps == 20
    assert [len(t.obs) for t in buf.trajectories("a")] == [4, 5]
    buf.add_trajectory("c", np.zeros((2, 3)), np.zeros((2, 2)), np.zeros(2), np.zeros((2, 3)))
    buf.save(tmp_path / "again.npz")
    assert TaskBuffer.load(tmp_path / "again.npz").task_ids == ["a", "b", "c"]


@pytest.mark.metaworld
def test_metaworld_collect_is_reproducible_and_async_equals_sync(ml10_suite):
    tasks = [ml10_suite.train_tasks[0], ml10_suite.train_tasks[60]]
    a = collect(ml10_suite, tasks, "ou", seed=1, progress=False)
    assert_same_buffers(a, collect(ml10_suite, tasks, "ou", seed=1, progress=False))
    assert_same_buffers(a, collect(ml10_suite, tasks, "ou", seed=1, strategy="async", progress=False))
