"""The maze suite and the hierarchical planner: greedy flat planning stalls at the wall, subgoals lead round it."""

import gymnasium as gym
import numpy as np
import pandas as pd
import pytest
import torch

import task_suites
from meta_mbrl.cli import main
from meta_mbrl.models import FunctionModel
from meta_mbrl.planning import CEM, HierarchicalPlanner, MPCController, SubgoalModel, make_objective
from task_suites.maze import SUCCESS_RADIUS


@pytest.fixture(scope="module")
def maze():
    return task_suites.make("point-maze")


def _episode(suite, tasks, planner, steps, discount=1.0):
    """Plans with the tasks' true dynamics; returns the positions ``(T, B, 2)`` and whether each env succeeded."""
    model = FunctionModel(suite.true_dynamics(tasks), 4, 2, dtype=torch.float64)
    mpc = MPCController(planner, num_envs=len(tasks), discount=discount)
    env = suite.make_vec_env(tasks, seed=0)
    obs, _ = env.reset(seed=0)
    pos, success = [], np.zeros(len(tasks), dtype=bool)
    for _ in range(steps):
        obs, _, _, _, info = env.step(mpc.act(obs, model))
        pos.append(obs[:, :2].copy())
        success |= info["success"] > 0
    return np.stack(pos), success


def _hierarchical(suite, **kw):
    opts = dict(subgoal_dims=(0, 1), subgoal_scale=1.2, segment=16, num_subgoals=5, population=48, iterations=3,
                track_samples=9, track_lookahead=3.0, subgoal_every=4, seed=0)
    opts.update(kw)
    return HierarchicalPlanner(suite.action_low, suite.action_high, 10, **opts)


def test_maze_true_dynamics_match_the_env_and_walls_block(maze):
    tasks = maze.test_tasks[:4]
    fn = maze.true_dynamics(tasks)
    env = maze.make_vec_env(tasks, seed=3)
    obs, _ = env.reset(seed=3)
    rng = np.random.default_rng(0)
    for _ in range(60):
        act = rng.uniform(-1, 1, (4, 2))
        act[:, 1] = 1.0  # push up: below the wall, only the gap on the right lets the mass through
        nxt, reward = fn(torch.as_tensor(obs), torch.as_tensor(act))
        obs2, reward2, _, _, info = env.step(act)
        np.testing.assert_allclose(nxt.numpy(), obs2, atol=1e-12)
        np.testing.assert_allclose(reward.numpy(), reward2, atol=1e-12)
        crossed = (obs[:, 1] < -0.15) & (obs2[:, 1] > 0.15)
        assert not crossed.any()  # one step never jumps the wall (speed cap < thickness)
        goal = np.array([t.payload["goal"] for t in tasks])
        np.testing.assert_array_equal(info["success"] > 0, np.linalg.norm(obs2[:, :2] - goal, axis=1) < SUCCESS_RADIUS)
        obs = obs2
    # the registered env and the async vector env give the sync env's data
    single = gym.make("task_suites/PointMaze-v0", goal=(-1.0, 1.0))
    assert single.reset(seed=0)[0][1] < -0.15 and single.spec.max_episode_steps == 100
    sync = maze.make_vec_env(tasks, seed=5)
    asyn = maze.make_vec_env(tasks, seed=5, strategy="async")
    try:
        np.testing.assert_allclose(sync.reset(seed=5)[0], asyn.reset(seed=5)[0])
        a = np.full((4, 2), 0.5)
        np.testing.assert_allclose(sync.step(a)[0], asyn.step(a)[0])
    finally:
        asyn.close()


def test_maze_rejects_bad_layouts():
    with pytest.raises(ValueError, match="walls: expected"):
        task_suites.make("point-maze", walls=((0.0, 0.0, 0.0, 1.0),))
    with pytest.raises(ValueError, match="walls: expected every wall at least"):
        task_suites.make("point-maze", walls=((-1.0, 1.0, 0.0, 0.05),))


def test_flat_planning_stalls_at_the_wall_and_subgoals_lead_round_it(maze, one_thread):
    """The goal lies behind the wall; reward exp(-distance). From below the wall every short plan that heads for the
    gap first moves away from the goal, so greedy flat planning presses against the wall; the subgoal planner, whose
    high level looks 80 steps ahead through the same model, goes round."""
    tasks = maze.test_tasks[:4]
    flat = CEM(maze.action_low, maze.action_high, horizon=10, population=300, iterations=3, seed=0)
    pos, success = _episode(maze, tasks, flat, 80)
    assert not success.any()
    assert (pos[:, :, 1] < -0.15).all()  # never above the wall
    assert (pos[-1, :, 1] > -0.6).all()  # it went to the wall, below the goal, and stayed
    hier = _hierarchical(maze)
    pos, success = _episode(maze, tasks, hier, 80)
    assert success.sum() >= 3, success
    assert (pos[:, success, 0].max(0) > 0.4).all()  # round the wall's end
    assert hier.last_subgoals.shape == (4, 5, 2)


def test_hierarchical_planner_contract(maze):
    tasks = maze.test_tasks[:2]
    model = FunctionModel(maze.true_dynamics(tasks), 4, 2, dtype=torch.float64)
    obs = np.array([[-0.5, -1.0, 0.0, 0.0], [-0.8, -0.8, 0.0, 0.0]])
    low = CEM(maze.action_low, maze.action_high, horizon=10, population=20, iterations=1, seed=1)
    for kw in ({}, {"low": low}):
        planner = _hierarchical(maze, population=8, iterations=1, subgoal_every=1, **kw)
        plan = planner.plan(make_objective(model, obs))
        assert plan.shape == (2, 10, 2) and plan.abs().max() <= 1.0
        again = _hierarchical(maze, population=8, iterations=1, subgoal_every=1, **kw).plan(make_objective(model, obs))
        if not kw:
            assert torch.equal(plan, again)  # seeded: the same plan
    # one unbatched env, and proposals reach the low level
    one = FunctionModel(lambda o, a: (o + 0.1 * torch.cat([a, a], -1), -o[..., 0].abs()), 4, 2)
    planner = _hierarchical(maze, population=8, iterations=1, low=low)
    assert planner.plan(make_objective(one, torch.zeros(4)), proposals=torch.zeros(3, 10, 2)).shape == (10, 2)
    # kept subgoals: high-level search every `subgoal_every` plans; MPCController.reset clears them
    planner = _hierarchical(maze, population=8, iterations=1, subgoal_every=3)
    mpc = MPCController(planner, num_envs=2)
    mpc.act(obs, model)
    first = planner.last_subgoals.clone()
    mpc.act(obs, model)
    assert torch.equal(planner.last_subgoals, first) and planner._age.tolist() == [2, 2]
    mpc.reset(np.array([True, False]))
    assert planner._goals is None


def test_hierarchical_planner_follows_the_value():
    """No reward at all: the terminal value alone decides where the subgoals go."""
    model = FunctionModel(lambda o, a: (o + 0.1 * a, torch.zeros(o.shape[:-1])), obs_dim=2, act_dim=2)
    for sign in (1.0, -1.0):
        planner = HierarchicalPlanner([-1.0, -1.0], [1.0, 1.0], horizon=4, subgoal_dims=(0,), subgoal_scale=1.0,
                                      segment=5, num_subgoals=2, population=32, seed=0)
        plan = planner.plan(make_objective(model, torch.zeros(2), value=lambda s, k=sign: k * s[..., 0]))
        assert (sign * plan[:, 0] > 0).all()
        assert sign * planner.last_subgoals[0, -1, 0] > 0.5


def test_hierarchical_planner_rejects_bad_input():
    lo, hi = [-1.0], [1.0]
    with pytest.raises(ValueError, match="subgoal_dims: expected a non-empty"):
        HierarchicalPlanner(lo, hi, 3, subgoal_dims=())
    with pytest.raises(ValueError, match="subgoal_scale: expected a number > 0"):
        HierarchicalPlanner(lo, hi, 3, subgoal_dims=(0,), subgoal_scale=0.0)
    with pytest.raises(ValueError, match="subgoal_scale: expected a number > 0 or 1 of them"):
        HierarchicalPlanner(lo, hi, 3, subgoal_dims=(0,), subgoal_scale=[1.0, 2.0])
    with pytest.raises(ValueError, match="low: expected a planner with horizon 3"):
        HierarchicalPlanner(lo, hi, 3, subgoal_dims=(0,), low=CEM(lo, hi, horizon=4))
    with pytest.raises(ValueError, match="subgoal_every: expected an integer >= 1"):
        HierarchicalPlanner(lo, hi, 3, subgoal_dims=(0,), subgoal_every=0)
    planner = HierarchicalPlanner(lo, hi, 3, subgoal_dims=(5,))
    model = FunctionModel(lambda o, a: (o + a, o.sum(-1)), obs_dim=1, act_dim=1)
    with pytest.raises(ValueError, match="subgoal_dims: expected indices < the observation dim 1"):
        planner.plan(make_objective(model, torch.zeros(1)))
    with pytest.raises(ValueError, match="objective: the hierarchical planner rolls the model out itself"):
        HierarchicalPlanner(lo, hi, 3, subgoal_dims=(0,)).plan(lambda a: a.sum((-2, -1)))


def test_subgoal_model_rewards_closeness_to_each_envs_goal():
    model = FunctionModel(lambda o, a: (o + a, torch.zeros(o.shape[:-1])), obs_dim=2, act_dim=1 + 1)
    sub = SubgoalModel(model, [1], torch.tensor([[1.0], [3.0]]))
    pred = sub.predict(torch.zeros(2, 5, 2), torch.ones(2, 5, 2))
    assert torch.equal(pred.reward, torch.tensor([[0.0] * 5, [-2.0] * 5]))


def test_cli_plans_hierarchically_on_the_maze(tmp_path, capsys):
    run = tmp_path / "maze"
    assert main(["train", "--preset", "test", "--suite", "point-maze", "--support-max", "16", "--run-dir", str(run),
                 "--no-progress"]) == 0
    ctl = tmp_path / "h.csv"
    assert main(["evaluate", "--checkpoint", str(run), "--out", str(ctl), "--planner", "hierarchical",
                 "--plan-subgoal-population", "8", "--plan-segment", "4", "--plan-num-subgoals", "2",
                 "--no-progress"]) == 0
    c = pd.read_csv(ctl)
    assert set(c.planner) == {"hierarchical"} and c.success_rate.notna().all() and c.mean_return.notna().all()
    assert main(["evaluate", "--checkpoint", str(run), "--planner", "hierarchical", "--plan-subgoal-dims", "7"]) == 2
    assert "planner.subgoal_dims: expected observation indices < 4" in capsys.readouterr().err


def test_value_agent_plans_hierarchically_from_the_config():
    """``--agent-planner hierarchical``: the value-guided agent's planner is the subgoal planner; its subgoals are
    scored with the terminal value and the policy's proposals reach the low level."""
    from meta_mbrl import runs
    from meta_mbrl.config import make_config
    from meta_mbrl.evaluation import protocol_evaluation
    from meta_mbrl.models.actor_critic import ActorCritic

    suite = task_suites.make("point-maze", seed=0, max_episode_steps=15)
    cfg = make_config("test", {"agent.planner": "hierarchical", "planner.subgoal_population": 4,
                               "planner.segment": 3, "planner.num_subgoals": 2, "agent.population": 8}, suite="point-maze")
    learner = runs.build_learner(cfg, suite.obs_dim, suite.act_dim)
    ac = ActorCritic(4, 2, suite.action_low, suite.action_high, hidden=(16,), latent_dim=2, encoder_hidden=(8,))
    agent = runs.build_value_agent(cfg, learner, ac, suite, num_envs=2)
    assert isinstance(agent.planner, HierarchicalPlanner) and agent.planner.horizon == cfg.agent.horizon
    tasks = suite.test_tasks[:2]
    df, _ = protocol_evaluation(agent, suite, tasks, adaptation_episodes=1, evaluation_episodes=1, seed=0)
    assert np.isfinite(df.eval_return).all() and agent.planner.last_subgoals.shape == (2, 2, 2)


def test_rows_per_plan_is_what_the_model_is_asked_for(maze):
    """The equal-compute comparisons count model rows; the planner's own account must match the count."""

    class Counting:
        def __init__(self, model):
            self.model, self.rows = model, 0
            self.obs_dim, self.act_dim, self.dtype, self.device = 4, 2, model.dtype, model.device

        def predict(self, obs, act):
            self.rows += obs[..., 0].numel()
            return self.model.predict(obs, act)

    tasks = maze.test_tasks[:3]
    low = CEM(maze.action_low, maze.action_high, horizon=10, population=20, iterations=2, seed=1)
    planner = _hierarchical(maze, population=8, iterations=2, num_subgoals=2, segment=5, subgoal_every=3, low=low)
    model = Counting(FunctionModel(maze.true_dynamics(tasks), 4, 2, dtype=torch.float64))
    mpc = MPCController(planner, num_envs=3)
    obs = np.tile(np.array([[-0.5, -1.0, 0.0, 0.0]]), (3, 1))
    for _ in range(6):  # two high-level searches, four plans on kept subgoals
        mpc.act(obs, model)
    assert model.rows == 6 * 3 * planner.rows_per_plan()
