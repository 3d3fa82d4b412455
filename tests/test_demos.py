"""The labelled demo track (scripted Meta-World policies, training classes only) and the data-source statistics."""

import dataclasses
import warnings
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

import task_suites
from meta_mbrl import TaskBuffer, collect
from meta_mbrl.cli import main
from meta_mbrl.config import make_config
from meta_mbrl.config.sections import DataSection
from meta_mbrl.data.contact import object_moved
from meta_mbrl.data.demos import ScriptedDemoPolicy, collect_demos
from meta_mbrl.evaluation.data_stats import ALL_CLASSES, UNLABELLED, data_stats, trajectory_sources


@pytest.fixture(scope="module")
def push_suite():
    pytest.importorskip("metaworld")
    return task_suites.make("ml1:push-v3", seed=0)


def _moved_frac(buf, suite):
    tr = buf.transitions()
    return float(object_moved(tr.obs, tr.next_obs, suite.object_slices).mean())


# ---------------------------------------------------------------------------------------------- refusals
def test_demos_refuse_point_mass_naming_suite(pm_suite):
    with pytest.raises(ValueError, match=r"suite: expected a Meta-World suite .*got 'point-mass'"):
        collect_demos(pm_suite, pm_suite.train_tasks[:2], progress=False)


def test_demo_config_refused_on_point_mass_before_any_work():
    from meta_mbrl.runs import check_before_work

    with pytest.raises(ValueError, match=r"data.demo_episodes_per_task: expected 0 on suite 'point-mass'.*got 2"):
        check_before_work(make_config("test", {"data.suite": "point-mass", "data.demo_episodes_per_task": 2}))
    with pytest.raises(ValueError, match=r"data.demo_noise: expected a finite number in \[0.0, .*got -0.1"):
        DataSection(demo_noise=-0.1)
    with pytest.raises(ValueError, match=r"data.demo_episodes_per_task: expected an integer >= 0, got -1"):
        DataSection(demo_episodes_per_task=-1)


def test_collect_source_info_may_not_replace_standard_fields(pm_suite):
    with pytest.raises(ValueError, match=r"source_info: expected a dict of extra fields"):
        collect(pm_suite, pm_suite.train_tasks[:1], source_info={"policy": "demo"}, progress=False)
    buf = collect(pm_suite, pm_suite.train_tasks[:1], source_info={"note": "x"}, progress=False)
    assert buf.sources[-1]["note"] == "x" and buf.sources[-1]["policy"] == "colored-noise"


@pytest.mark.metaworld
def test_demos_refuse_test_tasks_naming_tasks(push_suite):
    with pytest.raises(ValueError, match=r"tasks: expected training tasks only \(scripted policies never touch a test "
                                         r"class\), got 1 test task\(s\), e.g. 'ml1:push-v3/test/push-v3/00'"):
        collect_demos(push_suite, [push_suite.train_tasks[0], push_suite.test_tasks[0]], progress=False)
    with pytest.raises(ValueError, match=r"noise: expected a finite number in \[0.0"):
        collect_demos(push_suite, push_suite.train_tasks[:1], noise=-1.0, progress=False)


# ---------------------------------------------------------------------------------------------- what demos record
@pytest.mark.metaworld
def test_recorded_goal_is_hidden_while_the_scripted_policy_saw_it(push_suite):
    task = push_suite.train_tasks[3]
    env = push_suite.make_env(task, seed=0)
    env.reset(seed=0)
    goal = np.array(env.unwrapped._target_pos, np.float64)
    env.close()
    pol = ScriptedDemoPolicy(push_suite.action_low, push_suite.action_high, noise=0.0, seed=0)
    buf = collect(push_suite, [task], pol, progress=False, source="demo")
    tr = buf.transitions()
    assert np.all(tr.obs[:, -3:] == 0) and np.all(tr.next_obs[:, -3:] == 0)  # recorded as the suite's envs give them
    np.testing.assert_allclose(pol.goals[0], goal)  # the policy was handed the true goal
    # ... and used it: without noise, the scripted policy pushes the puck onto the hidden goal (it starts far off)
    assert np.linalg.norm(tr.obs[0, 4:7] - goal) > 0.1
    assert np.linalg.norm(tr.next_obs[-1, 4:7] - goal) < 0.05


@pytest.mark.metaworld
def test_demos_move_the_puck_far_more_often_than_colored_noise(push_suite):
    tasks = push_suite.train_tasks[:2]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the scripted policies' gain warnings are silenced
        demo = collect_demos(push_suite, tasks, noise=0.3, seed=0, progress=False)
    noise = collect(push_suite, tasks, "colored-noise", seed=0, progress=False)
    d, c = _moved_frac(demo, push_suite), _moved_frac(noise, push_suite)
    assert d > 5 * c and d - c > 0.2, (d, c)
    src = demo.sources[-1]
    assert (src["policy"], src["noise"], src["split"], src["status"]) == ("demo", 0.3, ["train"], "complete")
    assert demo.env_steps == src["env_steps"] == 2 * push_suite.max_episode_steps == demo.num_transitions


@pytest.mark.metaworld
def test_demos_are_reproducible_from_the_seed(push_suite):
    tasks = push_suite.train_tasks[:1]
    a, b = (collect_demos(push_suite, tasks, seed=5, progress=False).transitions() for _ in range(2))
    for f in ("obs", "act", "reward", "next_obs"):
        np.testing.assert_array_equal(getattr(a, f), getattr(b, f))
    c = collect_demos(push_suite, tasks, seed=6, progress=False).transitions()
    assert not np.array_equal(a.act, c.act)
    assert np.abs(a.act).max() <= 1.0  # clipped to the action bounds


@pytest.mark.metaworld
def test_collect_train_appends_the_demo_track_as_its_own_source():
    from meta_mbrl.runs import _collect_train

    cfg = make_config("test", {"data.suite": "ml1:push-v3", "data.tasks_per_class": 1, "data.demo_episodes_per_task": 1,
                               "data.demo_noise": 0.2})
    suite = task_suites.make("ml1:push-v3", seed=0)
    buf = _collect_train(cfg, suite, progress=False)
    assert [s["policy"] for s in buf.sources] == ["colored-noise", "demo"] and buf.sources[1]["noise"] == 0.2
    assert buf.env_steps == 2 * suite.max_episode_steps
    assert trajectory_sources(buf) == ["colored-noise", "demo"]
    plain = _collect_train(dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, demo_episodes_per_task=0)),
                           suite, progress=False)
    assert [s["policy"] for s in plain.sources] == ["colored-noise"]


# ---------------------------------------------------------------------------------------------- data statistics
def _fake_suite():
    return SimpleNamespace(obs_dim=39, act_dim=4, object_slices=((4, 7), (11, 14)), tasks=[])


def _traj(obj1, obj2=None):
    """A trajectory whose object 1 visits ``obj1`` (L + 1 positions), object 2 stays put unless given."""
    obj1 = np.asarray(obj1, np.float64)
    n = len(obj1) - 1
    states = np.zeros((n + 1, 39))
    states[:, 4:7] = obj1
    if obj2 is not None:
        states[:, 11:14] = obj2
    return states[:-1], np.zeros((n, 4)), np.zeros(n), states[1:]


def test_data_stats_on_a_hand_made_buffer():
    buf = TaskBuffer(39, 4)
    # (positions sit inside 1 cm voxels, away from their float32 edges)
    # push: 4 transitions, object 1 moves 2 cm in the second, 0.5 mm in the third (below the 1 mm threshold)
    buf.add_trajectory("ml1:push-v3/train/push-v3/00", *_traj([[0.005] * 3, [0.005] * 3, [0.025, 0.005, 0.005],
                                                              [0.0255, 0.005, 0.005], [0.0255, 0.005, 0.005]]))
    # push again, object 1 rests in a third voxel, object 2 moves in 1 of 2 transitions
    buf.add_trajectory("ml1:push-v3/train/push-v3/01", *_traj([[0.015] * 3] * 3, obj2=[[0, 0, 0], [0, 0, 0.01], [0, 0, 0.01]]))
    # reach (demo): every one of 3 transitions moves object 1 by 1 cm along y
    buf.add_trajectory("x/train/reach-v3/00", *_traj([[0.005, 0.005 + 0.01 * i, 0.005] for i in range(4)]))
    buf.record_source(policy="colored-noise", trajectories=2)
    buf.record_source(policy="demo", trajectories=1)
    t = data_stats(buf, _fake_suite()).set_index(["class", "source"])
    push, reach = t.loc[("push-v3", "colored-noise")], t.loc[("reach-v3", "demo")]
    assert (push.transitions, push.episodes, push.env_steps) == (6, 2, 6)
    assert push.object_moved_frac == pytest.approx(2 / 6)  # the 2 cm step and object 2's step
    assert push.object_voxels == 3  # voxels (0,0,0), (2,0,0) (twice: 2.5 and 2.55 cm) and (1,1,1)
    assert reach.object_moved_frac == pytest.approx(1.0) and reach.object_voxels == 4
    ys = 0.005 + np.array([0, 0.01, 0.02, 0.01, 0.02, 0.03])  # object 1's y over obs then next_obs
    assert reach.object_pos_std == pytest.approx(ys.std())
    # the same buffer relabelled, and a buffer whose sources do not account for its trajectories
    assert set(data_stats(buf, _fake_suite(), source="agent")["source"]) == {"agent"}
    buf.record_source(policy="demo", trajectories=5)
    with pytest.warns(UserWarning, match="every trajectory is labelled 'unlabelled'"):
        assert set(data_stats(buf, _fake_suite())["source"]) == {UNLABELLED}
    with pytest.raises(ValueError, match=r"voxel: expected a finite edge length > 0 \(m\), got 0"):
        data_stats(buf, _fake_suite(), voxel=0)
    with pytest.raises(ValueError, match=r"buffer: expected the suite's obs/act dims \(39, 4\), got \(3, 1\)"):
        data_stats(TaskBuffer(3, 1), _fake_suite())


@pytest.mark.metaworld
def test_cli_bench_data_writes_the_table(tmp_path, capsys):
    out = tmp_path / "data.csv"
    assert main(["bench", "data", "--suite", "ml1:push-v3", "--tasks-per-class", "1", "--out", str(out),
                 "--no-progress"]) == 0
    t = pd.read_csv(out)
    assert list(zip(t["class"], t["source"])) == [("push-v3", "colored-noise"), ("push-v3", "demo"),
                                                  (ALL_CLASSES, "colored-noise"), (ALL_CLASSES, "demo")]
    assert (t["env_steps"] == 500).all() and (t["env_steps_per_s"] > 0).all()
    demo, noise = t.iloc[1], t.iloc[0]
    assert demo.object_moved_frac > noise.object_moved_frac and demo.object_voxels > noise.object_voxels
    assert "wrote" in capsys.readouterr().out
    assert main(["bench", "data", "--suite", "point-mass", "--tasks-per-class", "1", "--out", str(tmp_path / "pm.csv"),
                 "--no-progress"]) == 2
    assert "suite: expected a Meta-World suite" in capsys.readouterr().err
