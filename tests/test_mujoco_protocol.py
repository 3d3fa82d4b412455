"""CaDM's protocol on the MuJoCo suites: the known reward, episodes per model-based round, bench learners on a
run's data, the published table and the report that sets our runs beside it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import task_suites
from meta_mbrl import MAML, DynamicsMLP
from meta_mbrl.agent import MetaMBRLAgent
from meta_mbrl.cli import main
from meta_mbrl.config import make_config
from meta_mbrl.data import ColoredNoisePolicy, TaskBuffer
from meta_mbrl.evaluation.published import CADM_TABLE1_MODERATE, cadm_env_of, cadm_regime, published_table
from meta_mbrl.models import FunctionModel, KnownRewardModel
from meta_mbrl.planning import CEM, MPCController

ROOT = Path(__file__).resolve().parents[1]


def test_known_reward_model_replaces_the_reward_and_keeps_the_rest():
    model = FunctionModel(lambda o, a: (o + a, torch.full(o.shape[:-1], -5.0)), obs_dim=2, act_dim=2)
    known = KnownRewardModel(model, lambda o, a, n: n.sum(-1))
    pred = known.predict(torch.ones(3, 4, 2), torch.ones(3, 4, 2))
    assert pred.reward.shape == (3, 4) and torch.equal(pred.reward, torch.full((3, 4), 4.0))
    assert torch.equal(pred.next_obs, torch.full((3, 4, 2), 2.0)) and pred.reward_std is None
    assert (known.obs_dim, known.act_dim) == (2, 2)
    with pytest.raises(ValueError, match=r"reward_fn: expected a reward of shape \(3,\)"):
        KnownRewardModel(model, lambda o, a, n: n).predict(torch.ones(3, 2), torch.ones(3, 2))
    with pytest.raises(ValueError, match="reward_fn: expected a callable"):
        KnownRewardModel(model, 3.0)
    with pytest.raises(ValueError, match="model: expected a DynamicsModel"):
        KnownRewardModel(object(), lambda o, a, n: n[..., 0])


def test_mpc_plans_with_the_known_reward_not_the_models():
    # the model's reward pulls to -1, the known reward to +1: the plan follows the known one
    model = FunctionModel(lambda o, a: (o + a, -(o + a - (-1.0)).square().sum(-1)), obs_dim=1, act_dim=1)
    obs = np.zeros((2, 1), np.float32)

    def first_action(reward_fn):
        planner = CEM(-np.ones(1), np.ones(1), horizon=3, population=64, iterations=3, seed=0)
        return MPCController(planner, num_envs=2, seed=0, reward_fn=reward_fn).act(obs, model)

    assert (first_action(None) < -0.5).all()
    assert (first_action(lambda o, a, n: -(n - 1.0).square().sum(-1)) > 0.5).all()
    with pytest.raises(ValueError, match="reward_fn: expected None or a callable"):
        MPCController(CEM(-np.ones(1), np.ones(1), horizon=3), reward_fn="x")


@pytest.mark.parametrize("name", ["cadm:halfcheetah-mass", "cadm:crippled-halfcheetah"])
def test_halfcheetah_known_reward_tracks_the_envs_reward(name):
    suite = task_suites.make(name, max_episode_steps=300)
    fn = suite.reward_fn
    for task in (suite.train_tasks[0], suite.test_tasks[-1]):
        env = suite.make_env(task, seed=0)
        policy = ColoredNoisePolicy(suite.action_low, suite.action_high, episode_length=300, seed=0)
        obs, _ = env.reset(seed=0)
        env_r, fn_r, ctrl = [], [], []
        for _ in range(300):
            act = policy(obs[None])[0]
            nxt, r, *_ = env.step(act)
            env_r.append(r)
            fn_r.append(float(fn(*(torch.as_tensor(x, dtype=torch.float64) for x in (obs, act, nxt)))))
            ctrl.append(-0.1 * float(np.square(act).sum()))
            obs = nxt
        env_r, fn_r = np.array(env_r), np.array(fn_r)
        assert np.corrcoef(env_r, fn_r)[0, 1] > 0.9
        assert abs(env_r.sum() - fn_r.sum()) < 0.1 * np.abs(env_r).sum()
        # the velocity term carries it: the control cost alone tracks the env's reward far worse
        assert np.corrcoef(env_r, ctrl)[0, 1] < np.corrcoef(env_r, fn_r)[0, 1] - 0.3


def test_suites_without_a_known_reward_refuse_planner_known_reward(tmp_path, capsys):
    assert task_suites.make("cadm:ant-mass").reward_fn is None
    assert task_suites.make("grbal:crippled-ant").reward_fn is None
    assert main(["train", "--suite", "cadm:ant-mass", "--preset", "test", "--plan-known-reward", "--run-dir",
                 str(tmp_path / "r"), "--no-progress"]) != 0
    assert "planner.known_reward: expected a suite with a known reward function" in capsys.readouterr().err
    assert not (tmp_path / "r" / "train_buffer.npz").exists()  # refused before any work


def test_build_agent_hands_the_known_reward_to_the_planner():
    from meta_mbrl import runs

    suite = task_suites.make("cadm:halfcheetah-mass")
    learner = MAML(DynamicsMLP(suite.obs_dim, suite.act_dim, hidden=(8,)))
    cfg = make_config("test", {"data.suite": "cadm:halfcheetah-mass", "planner.known_reward": True})
    agent = runs.build_agent(cfg, learner, suite, num_envs=2)
    assert isinstance(agent, MetaMBRLAgent) and agent.controller.reward_fn is suite.reward_fn
    plain = runs.build_agent(make_config("test", {"data.suite": "cadm:halfcheetah-mass"}), learner, suite, 2)
    assert plain.controller.reward_fn is None


def test_mb_episodes_per_task_sets_the_agents_episodes_per_round(tmp_path):
    run = tmp_path / "mb"
    args = ["train", "--suite", "point-mass", "--preset", "test", "--tasks-per-class", "0", "--mb-rounds", "2",
            "--mb-tasks-per-class", "0", "--mb-episodes-per-task", "2", "--run-dir", str(run), "--no-progress"]
    assert main(args) == 0
    buf = TaskBuffer.load(run / "train_buffer.npz")
    # 40 tasks x 50 steps of colored noise, then one agent round of 2 episodes on each of the 40 tasks
    assert buf.env_steps == 40 * 50 + 2 * 40 * 50
    agent = [s for s in buf.sources if s["policy"] == "mpc-agent/round1"]
    assert sum(s["env_steps"] for s in agent) == 2 * 40 * 50
    with pytest.raises(ValueError, match="train.mb_episodes_per_task"):
        make_config("test", {"train.mb_episodes_per_task": 0})


def test_bench_learners_trains_on_a_given_buffer_and_refuses_another_suites(tmp_path, capsys):
    suite = task_suites.make("point-mass", seed=0)
    from meta_mbrl.data import collect

    buf = collect(suite, suite.train_tasks[:4], episodes_per_task=1, seed=0, progress=False)
    buf.save(tmp_path / "data.npz")
    out = tmp_path / "learners.csv"
    assert main(["bench", "learners", "--preset", "test", "--suite", "point-mass", "--learners", "maml", "pearl",
                 "--data", str(tmp_path / "data.npz"), "--kshot-tasks-per-class", "1", "--out", str(out),
                 "--no-progress"]) == 0
    table = pd.read_csv(out)
    assert list(table["learner"]) == ["maml", "pearl"] and (table["meta_train_env_steps"] == buf.env_steps).all()
    control = pd.read_csv(out.with_suffix(".control.csv"))
    assert set(control["learner"]) == {"maml", "pearl"} and set(control["task"]) <= {t.id for t in suite.test_tasks}
    assert main(["bench", "learners", "--preset", "test", "--suite", "point-maze", "--learners", "maml", "--data",
                 str(tmp_path / "data.npz"), "--out", str(tmp_path / "x.csv"), "--no-progress"]) != 0
    assert "data: expected a TaskBuffer of point-maze's training tasks" in capsys.readouterr().err


def test_cadm_regimes_and_the_published_table():
    suite = task_suites.make("cadm:halfcheetah-mass")
    regimes = {t.payload["mass"]: cadm_regime(t.payload) for t in suite.test_tasks}
    assert regimes == {0.2: "extreme", 0.3: "extreme", 0.4: "moderate", 0.5: "moderate", 1.5: "moderate",
                       1.6: "moderate", 1.7: "extreme", 1.8: "extreme"}
    ant = task_suites.make("cadm:ant-mass")
    assert [cadm_regime(t.payload) for t in ant.test_tasks] == ["extreme"] * 4 + ["moderate"] * 5
    assert all(cadm_regime(t.payload) == "moderate" for t in task_suites.make("cadm:crippled-halfcheetah").test_tasks)
    with pytest.raises(ValueError, match="payload: expected"):
        cadm_regime({"goal": 1})
    for name in ("cadm:halfcheetah-mass", "cadm:ant-mass", "cadm:crippled-halfcheetah", "cadm:slim-humanoid"):
        table = published_table(name)
        assert len(table) == 4 and table["return_moderate"].notna().all() and (table["env_steps"] == 200_000).all()
    assert cadm_env_of("grbal:crippled-ant") is None and published_table("grbal:crippled-ant").empty
    assert len(CADM_TABLE1_MODERATE) == 16


def _fake_run(run: Path, returns: dict[int, float], known: bool = True) -> None:
    """A run directory as ``meta-mbrl train`` writes it, with made-up returns per test task index."""
    import json

    run.mkdir(parents=True)
    cfg = {"seed": 0, "data": {"suite": "cadm:halfcheetah-mass"}, "learner": {"name": "cadm"},
           "planner": {"known_reward": known}}
    (run / "config.json").write_text(json.dumps({"format": "meta_mbrl.config/2", "config": cfg}))
    pd.DataFrame([dict(task=f"cadm:halfcheetah-mass/test/{i:02d}", eval_return=r, agent="flat planner",
                       planner="cem", plan_horizon=15, plan_population=100, plan_iterations=3, adaptation_episodes=1,
                       seed=0, meta_train_env_steps=200_000, track="rl") for i, r in returns.items()]).to_csv(
        run / "control.csv", index=False)
    pd.DataFrame([dict(k=8, method=m, dyn_mse=v, reward_mse=v, dyn_mse_h10=v)
                  for m, v in (("adapted", 0.1), ("prior", 0.2), ("persistence", 0.5))]).to_csv(
        run / "kshot.summary.csv", index=False)


def test_report_mujoco_sets_a_run_beside_the_published_rows(tmp_path):
    run = tmp_path / "hc"
    _fake_run(run, {i: float(i) for i in range(8)})  # tasks 2..5 are CaDM's moderate regime (0.4, 0.5, 1.5, 1.6)
    results = tmp_path / "results"
    script = ROOT / "benchmarks" / "report_mujoco.py"
    code = (f"import sys, runpy; sys.path.insert(0, {str(script.parent)!r}); import _common; "
            f"_common.RESULTS = __import__('pathlib').Path({str(results)!r}); "
            f"sys.argv = ['report_mujoco.py', {str(run)!r}]; runpy.run_path({str(script)!r}, run_name='__main__')")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    table = pd.read_csv(results / "mujoco_cadm_halfcheetah_mass.csv")
    ours = table[table["run"] == "hc"].iloc[0]
    assert ours["reward"] == "known" and ours["tasks"] == 8 and ours["env_steps"] == 200_000
    assert ours["return_moderate"] == pytest.approx((2 + 3 + 4 + 5) / 4)
    assert ours["return_extreme"] == pytest.approx((0 + 1 + 6 + 7) / 4)
    assert (table["method"] == "Vanilla DM + CaDM (CaDM paper)").any()
    kshot = pd.read_csv(results / "mujoco_cadm_halfcheetah_mass_kshot.csv")
    assert set(kshot["method"]) == {"adapted", "prior", "persistence"} and (kshot["learner"] == "cadm").all()
    bad = tmp_path / "bad"
    _fake_run(bad, {0: 1.0})
    (bad / "control.csv").write_text("task,eval_return\nml10/foo,1.0\n")
    res = subprocess.run([sys.executable, "-c", code.replace(str(run), str(bad))], capture_output=True, text=True,
                         timeout=300)
    assert res.returncode != 0 and "are not test tasks of cadm:halfcheetah-mass" in res.stderr


@pytest.mark.parametrize("ensemble", [1, 3])
def test_the_planners_objective_scores_the_known_reward_of_an_adapted_model(ensemble):
    """The objective's fast paths (predict_unchecked, predict_members_unchecked) must see the known reward too."""
    from meta_mbrl.meta import Ensemble
    from meta_mbrl.planning import make_objective

    torch.manual_seed(0)

    net = DynamicsMLP(3, 2, hidden=(16,))
    learner = MAML(net, inner_lr=0.1) if ensemble == 1 else Ensemble(net, member="maml", size=ensemble)
    model = learner.prior(2)
    fn = lambda o, a, n: n[..., 0] - a.square().sum(-1)  # noqa: E731
    known = KnownRewardModel(model, fn)
    obs, actions = torch.randn(2, 3), torch.rand(2, 5, 4, 2) * 2 - 1  # (B, N candidates, H, A)
    for propagation in ("ts1", "mean") if ensemble > 1 else ("ts1",):
        got = make_objective(known, obs, propagation=propagation, particles=ensemble)(actions)
        plain = make_objective(model, obs, propagation=propagation, particles=ensemble)(actions)
        assert not torch.allclose(got, plain)  # the learned reward is not the known one
        if ensemble == 1:  # a single model's rollout by hand: the sum of the known rewards
            o, want = obs[:, None].expand(2, 5, 3), torch.zeros(2, 5)
            for h in range(4):
                a = actions[:, :, h]
                n = model.predict(o, a).next_obs
                want, o = want + fn(o, a, n), n
            torch.testing.assert_close(got, want)
