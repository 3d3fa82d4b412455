"""TaskBuffers as Minari datasets: exact round trips in both layouts, the flags, another tool's view, bad input, CLI."""

import gymnasium as gym
import minari
import numpy as np
import pytest
from minari.data_collector import EpisodeBuffer

import task_suites
from meta_mbrl.cli import main
from meta_mbrl.data import TaskBuffer, collect
from meta_mbrl.data.minari_io import export_minari, import_minari, per_task_dataset_id

STEPS = 6  # a short time limit keeps collection and export instant


@pytest.fixture(autouse=True)
def minari_home(tmp_path, monkeypatch):
    """Minari's default folder for every test: a temp dir, never the user's ~/.minari."""
    path = tmp_path / "minari-env"
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(path))
    return path


@pytest.fixture(scope="module", params=["point-mass", "point-maze"])
def suite_and_buffer(request):
    suite = task_suites.make(request.param, seed=1, max_episode_steps=STEPS)
    buf = collect(suite, suite.train_tasks[:3], episodes_per_task=2, seed=2, progress=False)
    return suite, buf


def assert_same_buffer(a: TaskBuffer, b: TaskBuffer):
    assert (a.obs_dim, a.act_dim, a.task_ids, a.env_steps, a.sources) == (b.obs_dim, b.act_dim, b.task_ids, b.env_steps, b.sources)
    assert [k for k, _ in a._trajs] == [k for k, _ in b._trajs]  # trajectory order and their tasks
    for (_, xs), (_, ys) in zip(a._trajs, b._trajs):
        for x, y in zip(xs, ys):
            assert x.dtype == y.dtype == np.float32 and x.shape == y.shape
            assert x.tobytes() == y.tobytes()  # bit-identical


@pytest.mark.parametrize("per_task", [False, True], ids=["per-suite", "per-task"])
def test_round_trip_is_exact(suite_and_buffer, per_task, tmp_path, minari_home):
    suite, buf = suite_and_buffer
    ids = export_minari(buf, suite, "meta-mbrl/data-v0", per_task=per_task, root=tmp_path / "root")
    assert ids == ([per_task_dataset_id("meta-mbrl/data-v0", t) for t in buf.task_ids] if per_task else ["meta-mbrl/data-v0"])
    assert not minari_home.exists() or not any(minari_home.iterdir())  # root= wins over the variable
    assert_same_buffer(import_minari(ids, root=tmp_path / "root"), buf)
    assert_same_buffer(import_minari(list(reversed(ids)), root=tmp_path / "root"), buf)  # order restored from metadata


def test_plain_minari_sees_episodes_task_ids_and_flags(suite_and_buffer, minari_home):
    """Another tool's view: minari.load_dataset under MINARI_DATASETS_PATH (the default root), nothing of ours."""
    suite, buf = suite_and_buffer
    (did,) = export_minari(buf, suite, "meta-mbrl/flags-v0")
    ds = minari.load_dataset(did)
    assert ds.total_episodes == buf.num_trajectories and ds.total_steps == buf.num_transitions
    assert ds.observation_space == suite.make_env(suite.train_tasks[0]).observation_space  # the env's float64 space
    metas = list(ds.storage.get_episode_metadata(range(ds.total_episodes)))
    expected_tasks = [buf.task_ids[k] for k, _ in buf._trajs]
    assert [m["task_id"] for m in metas] == expected_tasks
    for ep, m, (_, (obs, _act, _rew, next_obs)) in zip(ds.iterate_episodes(), metas, buf._trajs):
        n = len(obs)
        assert ep.observations.shape == (n + 1, suite.obs_dim) and ep.actions.shape == (n, suite.act_dim)
        assert not ep.terminations.any()  # the suites' envs never terminate
        assert ep.truncations.tolist() == [False] * (n - 1) + [True]  # every episode ends at the time limit
        assert m["time_limit"] is True or m["time_limit"] == 1
        np.testing.assert_array_equal(ep.observations[1:].astype(np.float32), next_obs)
    # the rule's premise: the env itself never terminates, and truncates at max_episode_steps
    env = ds.recover_environment()
    env.reset(seed=0)
    flags = [env.step(env.action_space.sample())[2:4] for _ in range(STEPS)]
    assert [f[0] for f in flags] == [False] * STEPS and [f[1] for f in flags] == [False] * (STEPS - 1) + [True]


def test_per_task_datasets_recover_their_task_env(minari_home):
    suite = task_suites.make("point-mass", seed=1, max_episode_steps=STEPS)
    buf = collect(suite, suite.train_tasks[:2], seed=0, progress=False)
    ids = export_minari(buf, suite, "meta-mbrl/pt-v0", per_task=True)
    for did, task in zip(ids, suite.train_tasks[:2]):
        ds = minari.load_dataset(did)
        assert ds.total_episodes == 1
        assert list(ds.recover_environment().unwrapped.goal) == list(task.payload["goal"])
        assert [m["task_id"] for m in ds.storage.get_episode_metadata([0])] == [task.id]
    part = import_minari(ids[1:])  # a subset is not the export: imported as it is, labelled
    assert part.task_ids == [buf.task_ids[1]] and part.env_steps == STEPS
    assert part.sources[0]["policy"] == "minari" and part.sources[0]["origin"]["sources"] == buf.sources


def test_a_hand_cut_trajectory_is_truncated_before_the_time_limit():
    suite = task_suites.make("point-mass", max_episode_steps=STEPS)
    buf = TaskBuffer(4, 2)
    obs = np.arange(16, dtype=np.float32).reshape(4, 4)
    buf.add_trajectory(suite.train_tasks[0].id, obs[:3], np.zeros((3, 2)), np.ones(3), obs[1:])
    (did,) = export_minari(buf, suite, "meta-mbrl/cut-v0")
    ds = minari.load_dataset(did)
    ep = next(ds.iterate_episodes())
    assert ep.truncations.tolist() == [False, False, True] and not ep.terminations.any()
    assert not list(ds.storage.get_episode_metadata([0]))[0]["time_limit"]
    assert_same_buffer(import_minari(did), buf)


def _foreign(did, obs_space, act_space, n=4, terminated=False):
    eps = [EpisodeBuffer(observations=np.zeros((n + 1, *obs_space.shape)), actions=np.zeros((n, *act_space.shape), act_space.dtype),
                         rewards=np.ones(n), terminations=np.array([False] * (n - 1) + [terminated]),
                         truncations=np.array([False] * (n - 1) + [not terminated]))]
    with pytest.warns(UserWarning):
        minari.create_dataset_from_buffers(did, eps, observation_space=obs_space, action_space=act_space)


def test_a_dataset_of_another_tool_is_one_task_with_its_terminations_counted():
    box = gym.spaces.Box(-1, 1, (4,))
    _foreign("other/walk-v0", box, gym.spaces.Box(-1, 1, (2,)), terminated=True)
    buf = import_minari("other/walk-v0", suite=task_suites.make("point-mass"))
    assert buf.task_ids == ["other/walk-v0"] and buf.num_transitions == 4 and buf.env_steps == 4
    assert buf.sources == [{"policy": "minari", "dataset_id": "other/walk-v0", "trajectories": 1, "env_steps": 4,
                            "status": "complete", "terminated_episodes": 1}]


def test_bad_input_names_the_argument(tmp_path):
    suite = task_suites.make("point-mass", max_episode_steps=STEPS)
    buf = collect(suite, suite.train_tasks[:1], progress=False)
    export_minari(buf, suite, "meta-mbrl/bad-v0")
    with pytest.raises(ValueError, match=r"dataset_id: .*exist.*overwrite"):
        export_minari(buf, suite, "meta-mbrl/bad-v0")
    export_minari(buf, suite, "meta-mbrl/bad-v0", overwrite=True)
    assert minari.load_dataset("meta-mbrl/bad-v0").total_episodes == 1
    with pytest.raises(ValueError, match=r"dataset_id: expected"):
        export_minari(buf, suite, "no version")
    with pytest.raises(ValueError, match=r"dataset_id: no Minari dataset 'meta-mbrl/nope-v0'"):
        import_minari("meta-mbrl/nope-v0")
    with pytest.raises(ValueError, match=r"buffer: expected obs/act dims \(4, 2\)"):
        export_minari(TaskBuffer(3, 2), suite, "meta-mbrl/dims-v0")
    other = TaskBuffer(4, 2)
    other.add_trajectory("ml10/train/x/00", np.zeros((2, 4)), np.zeros((2, 2)), np.zeros(2), np.zeros((2, 4)))
    with pytest.raises(ValueError, match=r"buffer: task 'ml10/train/x/00' is not a task of suite"):
        export_minari(other, suite, "meta-mbrl/task-v0")
    broken = TaskBuffer(4, 2)
    broken.add_trajectory(suite.train_tasks[0].id, np.zeros((3, 4)), np.zeros((3, 2)), np.zeros(3), np.ones((3, 4)))
    with pytest.raises(ValueError, match=r"buffer: trajectory 0 .* does not chain: next_obs\[0\] != obs\[1\]"):
        export_minari(broken, suite, "meta-mbrl/chain-v0")
    _foreign("other/small-v0", gym.spaces.Box(-1, 1, (3,)), gym.spaces.Box(-1, 1, (2,)))
    with pytest.raises(ValueError, match=r"dataset_id: 'other/small-v0' has obs/act dims \(3, 2\)"):
        import_minari(["meta-mbrl/bad-v0", "other/small-v0"])
    with pytest.raises(ValueError, match=r"dataset_id: 'other/small-v0' has obs/act dims \(3, 2\), suite 'point-mass'"):
        import_minari("other/small-v0", suite=suite)
    _foreign("other/discrete-v0", gym.spaces.Box(-1, 1, (4,)), gym.spaces.Discrete(3))
    with pytest.raises(ValueError, match=r"dataset_id: 'other/discrete-v0' has action space Discrete\(3\); .*flat float Box"):
        import_minari("other/discrete-v0")


def test_a_failed_export_leaves_no_partial_dataset(monkeypatch, minari_home):
    from minari.dataset._storages.hdf5_storage import HDF5Storage

    suite = task_suites.make("point-mass", max_episode_steps=STEPS)
    buf = collect(suite, suite.train_tasks[:2], progress=False)

    def disk_full(self, *args, **kwargs):
        raise OSError("No space left on device")

    with monkeypatch.context() as m:
        m.setattr(HDF5Storage, "update_episode_metadata", disk_full)
        with pytest.raises(OSError, match="No space"):
            export_minari(buf, suite, "meta-mbrl/full-v0", per_task=True)
    assert minari.list_local_datasets() == {} and not list(minari_home.rglob("*.hdf5"))  # namespaces' json files only
    assert_same_buffer(import_minari(export_minari(buf, suite, "meta-mbrl/full-v0", per_task=True)), buf)  # no --overwrite needed


def test_cli_collect_export_import_round_trip(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a relative --root, as a user types it
    npz, back, root = tmp_path / "buf.npz", tmp_path / "back.npz", "datasets"
    assert main(["collect", "--preset", "test", "--suite", "point-mass", "--seed", "3", "--tasks-per-class", "2",
                 "--episodes-per-task", "1", "--out", str(npz), "--no-progress"]) == 0
    export = ["data", "export", "--buffer", str(npz), "--suite", "point-mass", "--seed", "3", "--dataset-id",
              "meta-mbrl/cli-v0", "--per-task", "--root", root]
    assert main(export) == 0
    ids = capsys.readouterr().out.split(": ")[-1].split()
    assert len(ids) == 2 and (tmp_path / root / "meta-mbrl" / "cli").is_dir()
    assert main(["data", "import", "--dataset-id", *ids, "--root", root, "--out", str(back)]) == 0
    assert_same_buffer(TaskBuffer.load(back), TaskBuffer.load(npz))
    capsys.readouterr()
    assert main(export) == 2  # exists, no --overwrite
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "dataset_id:" in err and "overwrite" in err
    assert main([*export, "--overwrite"]) == 0
    assert main(["data", "import", "--dataset-id", "meta-mbrl/none-v0", "--root", root, "--out", str(back)]) == 2
    assert "dataset_id: no Minari dataset" in capsys.readouterr().err


@pytest.mark.metaworld
def test_metaworld_round_trip_one_episode(tmp_path, monkeypatch):
    suite = task_suites.make("ml1:reach-v3")
    buf = collect(suite, suite.train_tasks[:1], progress=False)  # one 500-step episode
    for per_task in (False, True):
        ids = export_minari(buf, suite, "meta-mbrl/reach-v0", per_task=per_task, root=tmp_path)
        assert_same_buffer(import_minari(ids, root=tmp_path), buf)
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path))
    ds = minari.load_dataset(ids[0])  # the per-task dataset: its env spec names the task
    assert ds.recover_environment().spec.kwargs["task_id"] == buf.task_ids[0]
    assert ds.observation_space.dtype == np.float64 and next(ds.iterate_episodes()).truncations[-1]
