"""Task suites: the fast point-mass suite always; Meta-World suites under the `metaworld` marker."""

import importlib
import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import task_suites


def test_make_rejects_unknown_names():
    with pytest.raises(ValueError, match="name: expected one of"):
        task_suites.make("ml11")
    with pytest.raises(ValueError, match="name: expected a suite name string"):
        task_suites.make(10)


def test_point_mass_tasks_differ_in_dynamics_and_hidden_goal(pm_suite):
    assert len(pm_suite.train_tasks) == 40 and len(pm_suite.test_tasks) == 10
    ids = [t.id for t in pm_suite.tasks]
    assert len(set(ids)) == len(ids)
    assert task_suites.make("point-mass", seed=0).test_tasks[3].payload == pm_suite.test_tasks[3].payload
    env = pm_suite.make_vec_env(pm_suite.train_tasks[:2], seed=0)
    obs, _ = env.reset(seed=0)
    assert obs.shape == (2, 4)  # position and velocity only: the goal is not observed
    env.pos[:] = 0.0
    env.vel[:] = 0.0
    obs, rew, *_ = env.step(np.ones((2, 2)))
    masses = [t.payload["mass"] for t in pm_suite.train_tasks[:2]]
    np.testing.assert_allclose(obs[:, 2], 0.1 / np.array(masses))  # same action, different mass -> velocity
    assert rew[0] != rew[1]


def test_point_mass_single_and_vector_envs_agree(pm_suite):
    task = pm_suite.test_tasks[0]
    env = pm_suite.make_env(task, seed=0)
    assert isinstance(env, gym.Env)
    o, _ = env.reset(seed=0)
    venv = pm_suite.make_vec_env([task], seed=0)
    vo, _ = venv.reset(seed=0)
    np.testing.assert_allclose(o, vo[0])
    a = np.array([0.3, -0.7], np.float32)
    o2, r, term, trunc, _ = env.step(a)
    vo2, vr, *_ = venv.step(a[None])
    np.testing.assert_allclose(o2, vo2[0])
    np.testing.assert_allclose(r, vr[0])
    aenv = pm_suite.make_vec_env([task], strategy="async")
    try:
        assert isinstance(aenv, gym.vector.AsyncVectorEnv)
    finally:
        aenv.close()


def test_point_mass_env_passes_gymnasium_check_env(pm_suite):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # not even a warning
        check_env(pm_suite.make_env(pm_suite.test_tasks[0], seed=0).unwrapped)
        check_env(gym.make(task_suites.POINT_MASS_ID, render_mode="rgb_array").unwrapped)
    frame = gym.make(task_suites.POINT_MASS_ID, render_mode="rgb_array").unwrapped
    frame.reset(seed=0)
    assert frame.render().shape == (64, 64, 3) and frame.render().dtype == np.uint8


def test_point_mass_registered_id_is_what_make_env_returns(pm_suite):
    task = pm_suite.train_tasks[5]
    p = task.payload
    env = gym.make("task_suites/PointMass-v0", mass=p["mass"], damping=p["damping"], goal=p["goal"])
    suite_env = pm_suite.make_env(task)
    assert type(env) is type(suite_env) is gym.wrappers.TimeLimit and env.spec.max_episode_steps == 50
    assert isinstance(env.unwrapped, task_suites.PointMassEnv) and env.spec.id == suite_env.spec.id
    o1, _ = env.reset(seed=3)
    o2, _ = env.reset(seed=3)
    o3, _ = suite_env.reset(seed=3)
    np.testing.assert_array_equal(o1, o2)
    np.testing.assert_array_equal(o1, o3)
    a = np.array([0.5, -0.2], np.float32)
    np.testing.assert_array_equal(env.step(a)[0], suite_env.step(a)[0])
    # make_env(seed=s): the first unseeded reset is the reset with seed s
    np.testing.assert_array_equal(pm_suite.make_env(task, seed=3).reset()[0], o1)
    for t in range(1, 51):
        *_, term, trunc, _ = env.step(a)
        assert not term and trunc == (t == 49)  # one step was taken above
        if trunc:
            break
    default = gym.make(task_suites.POINT_MASS_ID, max_episode_steps=7)
    assert default.unwrapped.goal == (0.0, 0.0) and default.spec.max_episode_steps == 7
    with pytest.raises(ValueError, match="mass: expected a finite number > 0, got -1"):
        gym.make(task_suites.POINT_MASS_ID, mass=-1)
    with pytest.raises(ValueError, match=r"goal: expected two finite numbers \(x, y\), got \(1.0,\)"):
        gym.make(task_suites.POINT_MASS_ID, goal=(1.0,))
    with pytest.raises(ValueError, match="render_mode: expected None or one of"):
        task_suites.PointMassEnv(render_mode="human")


def test_registration_is_idempotent():
    before = {k: v for k, v in gym.registry.items() if k.startswith("task_suites/")}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        importlib.reload(importlib.import_module("task_suites.registration"))
        importlib.reload(task_suites)
        task_suites.registration.register_envs()
    assert {k for k in gym.registry if k.startswith("task_suites/")} == set(before) == {
        "task_suites/PointMass-v0", "task_suites/PointMaze-v0", "task_suites/MetaWorld-v0", "task_suites/MuJoCoParam-v0"}


def test_point_mass_async_vec_env_matches_sync(pm_suite):
    tasks = pm_suite.test_tasks[:3]
    sync = pm_suite.make_vec_env(tasks, seed=4)
    asyn = pm_suite.make_vec_env(tasks, seed=4, strategy="async")
    try:
        np.testing.assert_array_equal(sync.reset(seed=9)[0], asyn.reset(seed=9)[0])
        rng = np.random.default_rng(0)
        for _ in range(pm_suite.max_episode_steps + 3):  # across an autoreset
            a = rng.uniform(-1, 1, size=(3, 2)).astype(np.float32)
            (so, sr, _, st, si), (ao, ar, _, at, ai) = sync.step(a), asyn.step(a)
            np.testing.assert_array_equal(so, ao)
            np.testing.assert_array_equal(sr, ar)
            np.testing.assert_array_equal(st, at)
            if st.any():
                np.testing.assert_array_equal(si["final_obs"][st], np.stack(ai["final_obs"][at]))
    finally:
        asyn.close()


@pytest.mark.metaworld
def test_ml10_suite(ml10_suite):
    s = ml10_suite
    assert len(set(t.name for t in s.train_tasks)) == 10 and len(set(t.name for t in s.test_tasks)) == 5
    assert len(s.train_tasks) == 500 and len(s.test_tasks) == 250
    assert not set(s.train_classes) & set(s.test_classes)
    assert (s.obs_dim, s.act_dim, s.max_episode_steps) == (39, 4, 500)
    assert s.test_tasks[7].id == f"ml10/test/{s.test_tasks[7].name}/07"
    assert s.task(s.test_tasks[7].id) is s.test_tasks[7]
    env = s.make_env(s.test_tasks[7], seed=0)
    obs, _ = env.reset(seed=0)
    np.testing.assert_array_equal(obs[-3:], 0.0)  # goal hidden
    # two goals of the same class: same observation space, different hidden goals -> different rewards
    e0, e1 = s.make_env(s.train_tasks[0], seed=0), s.make_env(s.train_tasks[1], seed=0)
    o0, _ = e0.reset(seed=0)
    o1, _ = e1.reset(seed=0)
    a = np.zeros(4, np.float32)
    assert e0.step(a)[1] != e1.step(a)[1]


@pytest.mark.metaworld
def test_metaworld_registered_id(ml10_suite):
    task = ml10_suite.test_tasks[3]
    env = gym.make("task_suites/MetaWorld-v0", task_id=task.id, suite_seed=0)
    suite_env = ml10_suite.make_env(task, seed=0)
    assert type(env) is type(suite_env) is gym.wrappers.TimeLimit and env.spec.max_episode_steps == 500
    assert env.spec.kwargs["task_id"] == task.id and type(env.unwrapped).__name__ == type(suite_env.unwrapped).__name__
    o1, _ = env.reset(seed=0)
    o2, _ = env.reset(seed=0)
    np.testing.assert_array_equal(o1, o2)
    np.testing.assert_array_equal(o1, suite_env.reset(seed=0)[0])
    np.testing.assert_array_equal(o1[-3:], 0.0)  # goal hidden
    a = np.array([0.1, -0.2, 0.3, 0.0], np.float32)
    assert env.step(a)[1] == suite_env.step(a)[1]  # same task (same hidden goal): same reward
    with pytest.raises(ValueError, match="task_id: expected a Meta-World suite task id"):
        gym.make("task_suites/MetaWorld-v0", task_id="point-mass/train/00")
    with pytest.raises(ValueError, match="task_id: no task 'ml10/test/door-close-v3/99'"):
        gym.make("task_suites/MetaWorld-v0", task_id="ml10/test/door-close-v3/99")


@pytest.mark.metaworld
@pytest.mark.parametrize("strategy", ["sync", "async"])
def test_ml10_vec_env(ml10_suite, strategy):
    tasks = [ml10_suite.test_tasks[0], ml10_suite.test_tasks[50]]
    env = ml10_suite.make_vec_env(tasks, seed=0, strategy=strategy)
    try:
        obs, _ = env.reset(seed=0)
        assert obs.shape == (2, 39)
        obs, rew, term, trunc, _ = env.step(np.zeros((2, 4), np.float32))
        assert rew.shape == (2,)
    finally:
        env.close()


@pytest.mark.metaworld
def test_ml1_and_custom_suites():
    ml1 = task_suites.make("ml1:reach-v3", seed=0)
    assert ml1.name == "ml1:reach-v3" and {t.name for t in ml1.tasks} == {"reach-v3"}
    assert len(ml1.train_tasks) == 50 and len(ml1.test_tasks) == 50
    custom = task_suites.make("custom:reach-v3,push-v3|pick-place-v3", seed=0)
    assert set(custom.train_classes) == {"reach-v3", "push-v3"} and custom.test_classes == ["pick-place-v3"]
    with pytest.raises(ValueError, match="unknown Meta-World v3 class"):
        task_suites.make("ml1:flying-v3")
    with pytest.raises(ValueError, match="train_classes"):
        task_suites.make("custom:|reach-v3")


@pytest.mark.metaworld
def test_ml45_suite():
    s = task_suites.make("ml45", seed=0)
    assert len(s.train_classes) == 45 and len(s.test_classes) == 5
