"""The CaDM parametric-dynamics MuJoCo suites (task_suites.mujoco_params): factors change the physics."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import task_suites
from task_suites.mujoco_params import SUITES, make_param_env

STEPS = 30


def _rollout(env, seed=0, steps=STEPS, actions=None):
    obs, _ = env.reset(seed=seed)
    rng = np.random.default_rng(1)
    act_dim = env.action_space.shape[0]
    acts = rng.uniform(-1, 1, (steps, act_dim)) if actions is None else actions
    out = [obs]
    for a in acts:
        obs, *_ = env.step(a.astype(np.float32))
        out.append(obs)
    return np.array(out)


def _task(suite, split, key, value):
    return next(t for t in getattr(suite, f"{split}_tasks") if t.payload[key] == value)


@pytest.mark.parametrize("name,key", [("cadm:halfcheetah-mass", "mass"), ("cadm:halfcheetah-damping", "damping")])
def test_factors_change_the_physics_and_one_is_the_plain_env(name, key):
    suite = task_suites.make(name)
    one = _rollout(suite.make_env(_task(suite, "train", key, 1.0)))
    plain = _rollout(gym.make("HalfCheetah-v5"))
    np.testing.assert_array_equal(one, plain)
    low = _rollout(suite.make_env(_task(suite, "train", key, 0.75)))
    high = _rollout(suite.make_env(_task(suite, "test", key, 1.8)))
    assert np.abs(low - one).max() > 1e-3 and np.abs(high - one).max() > 1e-3 and np.abs(high - low).max() > 1e-3
    # the parameters are the defaults times the factor, set once (a second env does not compound them)
    default = gym.make("HalfCheetah-v5").unwrapped.model
    task = _task(suite, "test", key, 1.8)
    for _ in range(2):
        model = suite.make_env(task).unwrapped.model
    attr = "body_mass" if key == "mass" else "dof_damping"
    np.testing.assert_allclose(getattr(model, attr), 1.8 * getattr(default, attr))


def test_crippled_actuator_does_not_act():
    suite = task_suites.make("cadm:crippled-halfcheetah")
    task = suite.test_tasks[0]
    assert task.payload["crippled"] == (4,)
    acts = np.random.default_rng(2).uniform(-1, 1, (STEPS, 6))
    zeroed = acts.copy()
    zeroed[:, 4] = 0.0
    a = _rollout(suite.make_env(task), actions=acts)
    b = _rollout(suite.make_env(task), actions=zeroed)
    np.testing.assert_array_equal(a, b)  # what the crippled actuator is told changes nothing
    plain_a = _rollout(gym.make("HalfCheetah-v5"), actions=acts)
    plain_b = _rollout(gym.make("HalfCheetah-v5"), actions=zeroed)
    assert np.abs(plain_a - plain_b).max() > 1e-3  # where a healthy one does
    assert suite.make_env(task).unwrapped.model.actuator_gear[4, 0] == 0.0


def test_grbal_crippled_ant_leg_does_not_act():
    suite = task_suites.make("grbal:crippled-ant")
    # GrBAL's ant_env.py: legs 0, 1, 2 train (actuators 2-3, 4-5, 6-7), leg 3 test (actuators 0-1)
    assert [t.payload["crippled"] for t in suite.train_tasks] == [(2, 3), (4, 5), (6, 7)]
    assert [t.payload["crippled"] for t in suite.test_tasks] == [(0, 1)]
    assert [t.id for t in suite.tasks] == ["grbal:crippled-ant/train/00", "grbal:crippled-ant/train/01",
                                           "grbal:crippled-ant/train/02", "grbal:crippled-ant/test/00"]
    task = suite.test_tasks[0]
    env = suite.make_env(task)
    model = env.unwrapped.model
    np.testing.assert_array_equal(model.actuator_gear[:, 0], [0, 0, 150, 150, 150, 150, 150, 150])
    assert [model.joint(int(model.actuator_trnid[j, 0])).name for j in (0, 1)] == ["hip_4", "ankle_4"]
    steps = 10
    acts = np.random.default_rng(2).uniform(-1, 1, (steps, 8))
    crippled_changed, healthy_changed = acts.copy(), acts.copy()
    crippled_changed[:, :2] = -acts[:, :2]  # only the crippled leg's actions change
    healthy_changed[:, 2:4] = -acts[:, 2:4]  # only a healthy leg's actions change
    base = _rollout(env, steps=steps, actions=acts)
    np.testing.assert_array_equal(base, _rollout(suite.make_env(task), steps=steps, actions=crippled_changed))
    assert np.abs(base - _rollout(suite.make_env(task), steps=steps, actions=healthy_changed)).max() > 1e-3
    # a train task cripples another leg: there leg 3's actions act
    train = suite.make_env(suite.train_tasks[0])
    np.testing.assert_array_equal(train.unwrapped.model.actuator_gear[:, 0], [150, 150, 0, 0, 150, 150, 150, 150])
    assert np.abs(_rollout(train, steps=steps, actions=acts)
                  - _rollout(suite.make_env(suite.train_tasks[0]), steps=steps, actions=crippled_changed)).max() > 1e-3


@pytest.mark.parametrize("name", sorted(SUITES))
def test_splits_ids_and_ranges(name):
    suite = task_suites.make(name, seed=3)
    spec = SUITES[name]
    assert len(suite.train_tasks) == len(spec["train"]) and len(suite.test_tasks) == len(spec["test"])
    assert not set(spec["train"]) & set(spec["test"])  # disjoint, as CaDM's and GrBAL's are
    assert suite.test_tasks[-1].id == f"{name}/test/{len(spec['test']) - 1:02d}"
    assert suite.max_episode_steps == 1000
    again = task_suites.make(name, seed=3)
    assert [t.payload for t in again.tasks] == [t.payload for t in suite.tasks]


def test_registered_env_and_check_env():
    suite = task_suites.make("cadm:halfcheetah-mass", max_episode_steps=20)
    env = suite.make_env(suite.test_tasks[3], seed=0)
    assert env.spec.id == task_suites.MUJOCO_PARAM_ID and env.spec.max_episode_steps == 20
    assert type(env) is type(gym.make(task_suites.MUJOCO_PARAM_ID, task_id=suite.test_tasks[3].id))
    assert env.unwrapped.task_payload["mass"] == 0.5
    check_env(env.unwrapped, skip_render_check=True)
    assert (env.observation_space.shape[0], env.action_space.shape[0]) == (suite.obs_dim, suite.act_dim)


def test_bad_names_and_ids():
    with pytest.raises(ValueError, match="name"):
        task_suites.make("cadm:halfcheetah-massive")
    with pytest.raises(ValueError, match="task_id"):
        make_param_env("cadm:nope/test/00")
    with pytest.raises(ValueError, match="task_id"):
        make_param_env("cadm:halfcheetah-mass/valid/00")
    with pytest.raises(ValueError, match="suite"):
        make_param_env("cadm:halfcheetah-mass/test/00", suite="cadm:ant-mass")
    with pytest.raises(ValueError, match="max_episode_steps"):
        task_suites.make("cadm:ant-mass", max_episode_steps=0)


def test_collect_on_a_cadm_suite():
    from meta_mbrl.data.rollout import collect

    suite = task_suites.make("cadm:halfcheetah-mass", max_episode_steps=10)
    buf = collect(suite, suite.train_tasks[:2], episodes_per_task=1, seed=0, progress=False)
    assert buf.sources[-1]["status"] == "complete" and buf.sources[-1]["env_steps"] == 20
