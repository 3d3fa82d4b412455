"""Model-based exploration: the ensemble-disagreement information bonus (Plan2Explore / MAX) in the
objective, the planner and agent that maximise it, its config, and the model-based loop collecting with it."""

import numpy as np
import pytest
import torch

import task_suites
from meta_mbrl import DynamicsMLP, collect
from meta_mbrl.adaptation import EnsembleAdaptedModel
from meta_mbrl.agent import MetaMBRLAgent
from meta_mbrl.config import RunConfig
from meta_mbrl.config.sections import LearnerSection, TrainSection
from meta_mbrl.meta import MAML, Ensemble
from meta_mbrl.models import FunctionModel
from meta_mbrl.planning import CEM, MPCController, imagine, make_objective
from meta_mbrl.training.model_based import agent_source, model_based_meta_train
from meta_mbrl.types import Prediction


class FnEnsemble:
    """``E`` hand-made members ``fn(obs, act) -> (next_obs, reward)``, stacked like an EnsembleAdaptedModel."""

    def __init__(self, fns, obs_dim=1, act_dim=1, delta_scale=None):
        self.fns, self.obs_dim, self.act_dim, self.ensemble_size = fns, obs_dim, act_dim, len(fns)
        self.delta_scale = delta_scale
        self.calls = 0

    def predict_members_unchecked(self, obs, act, per_member=False):
        self.calls += 1
        outs = [f(obs[i] if per_member else obs, act[i] if per_member else act) for i, f in enumerate(self.fns)]
        return Prediction(torch.stack([o[0] for o in outs]), torch.stack([o[1] for o in outs]))

    predict_members = predict_members_unchecked

    def predict(self, obs, act):
        p = self.predict_members(obs, act)
        return Prediction(p.next_obs.mean(0), p.reward.mean(0))


def _two_members():
    # member 0 moves by a and is rewarded its position; member 1 moves by 2a and earns nothing
    return FnEnsemble([lambda o, a: (o + a, (o + a).sum(-1)), lambda o, a: (o + 2 * a, torch.zeros(o.shape[:-1]))])


def _stacked_mlp(spread: float, seed: int = 0) -> EnsembleAdaptedModel:
    torch.manual_seed(seed)
    m = DynamicsMLP(3, 1, hidden=(16,))
    noise = {k: torch.randn_like(v) for k, v in m.named_parameters()}
    return EnsembleAdaptedModel(m, {k: torch.stack([v.detach(), v.detach() + spread * noise[k]])
                                    for k, v in m.named_parameters()})


# ---------------------------------------------------------------------------------------------- the bonus
def test_bonus_is_zero_when_members_agree_and_grows_with_disagreement():
    acts = torch.rand(16, 4, 1, generator=torch.Generator().manual_seed(0)) * 2 - 1
    obs = torch.zeros(3)
    same = imagine(_stacked_mlp(0.0), obs, acts, bonus_weight=1.0, reward_weight=0.0, propagation="mean")
    assert torch.equal(same, torch.zeros(16))
    bonus = [imagine(_stacked_mlp(s), obs, acts, bonus_weight=1.0, reward_weight=0.0, propagation="mean").mean()
             for s in (0.01, 0.1, 1.0)]
    assert 0 < bonus[0] < bonus[1] < bonus[2]
    # and under trajectory sampling (every member predicts every particle)
    ts = [imagine(_stacked_mlp(s), obs, acts, bonus_weight=1.0, reward_weight=0.0, propagation="tsinf").mean()
          for s in (0.0, 0.1)]
    assert ts[0] == 0 and ts[1] > 0


def test_bonus_enters_the_return_as_specified_on_a_hand_computed_two_step_case():
    obs, acts = torch.zeros(1), torch.ones(1, 2, 1)  # one candidate: a = 1, 1
    # members' mean: step 0 from 0 -> (1, 2): mean 1.5, var 0.25, rewards (1, 0); step 1 from 1.5 -> (2.5, 3.5):
    # var 0.25, rewards (2.5, 0). return 0.5 + 0.5 * 1.25 = 1.125; bonus 0.25 + 0.5 * 0.25 = 0.375
    out = imagine(_two_members(), obs, acts, discount=0.5, propagation="mean", particles=1, bonus_weight=3.0,
                  reward_weight=2.0)
    assert out.tolist() == [2 * 1.125 + 3 * 0.375]
    # TS-inf, one particle per member: particle 0 follows member 0 (0 -> 1 -> 2, rewards 1, 2: return 2),
    # particle 1 member 1 (0 -> 2 -> 4, return 0); both see var 0.25 at both steps: bonus 0.375
    out = imagine(_two_members(), obs, acts, discount=0.5, propagation="tsinf", bonus_weight=3.0, reward_weight=2.0)
    assert out.tolist() == [2 * 1.0 + 3 * 0.375]
    # the model's Δobs scale: the bonus is in normalized units (var / scale**2)
    scaled = _two_members()
    scaled.delta_scale = torch.tensor([0.5])
    out = imagine(scaled, obs, acts, discount=0.5, propagation="mean", particles=1, bonus_weight=1.0, reward_weight=0.0)
    assert out.tolist() == [0.375 * 4]


def test_bonus_calls_the_members_once_per_step():
    model = _two_members()
    imagine(model, torch.zeros(1), torch.ones(5, 3, 1), propagation="ts1", bonus_weight=1.0,
            generator=torch.Generator().manual_seed(0))
    assert model.calls == 3


def test_bonus_weight_zero_is_the_plain_imagine_exactly():
    model = _stacked_mlp(0.3)
    obs, acts = torch.randn(2, 3), torch.rand(2, 32, 5, 1) * 2 - 1
    for prop in ("ts1", "tsinf", "mean"):
        a = imagine(model, obs, acts, propagation=prop, generator=torch.Generator().manual_seed(1))
        b = imagine(model, obs, acts, propagation=prop, generator=torch.Generator().manual_seed(1), bonus_weight=0.0,
                    reward_weight=1.0)
        assert torch.equal(a, b)
        c = make_objective(model, obs, propagation=prop, generator=torch.Generator().manual_seed(1), bonus_weight=0)(acts)
        assert torch.equal(a, c)
    # the reward weight alone scales the plain returns
    half = imagine(model, obs, acts, propagation="mean", reward_weight=0.5)
    assert torch.allclose(half, 0.5 * imagine(model, obs, acts, propagation="mean"))


def test_planner_with_bonus_only_goes_where_the_members_disagree():
    # the members agree on a <= 0 and disagree on a > 0 (member 1 moves a further); the reward prefers a = -1
    model = FnEnsemble([lambda o, a: (o + a, -(a - -1).square().sum(-1)),
                        lambda o, a: (o + a + a.clamp_min(0), -(a - -1).square().sum(-1))])
    obs = np.zeros((2, 1), np.float32)

    def first_action(**kw):
        mpc = MPCController(CEM([-1.0], [1.0], horizon=3, population=200, iterations=3, seed=0), num_envs=2,
                            propagation="mean", particles=1, **kw)
        return mpc.act(obs, model)

    assert (first_action(bonus_weight=1.0, reward_weight=0.0) > 0.8).all()
    assert (first_action() < -0.8).all()


# ---------------------------------------------------------------------------------------------- bad input
def test_bad_weights_and_single_models_are_rejected_by_name():
    single = FunctionModel(lambda o, a: (o + a, -o.square().sum(-1)), obs_dim=1, act_dim=1)
    obs, acts = torch.zeros(1), torch.zeros(4, 2, 1)
    with pytest.raises(ValueError, match="bonus_weight: .*needs an ensemble"):
        imagine(single, obs, acts, bonus_weight=0.5)
    with pytest.raises(ValueError, match="bonus_weight: .*needs an ensemble"):
        make_objective(single, obs, bonus_weight=0.5)
    one = FnEnsemble([lambda o, a: (o + a, o.sum(-1))])
    with pytest.raises(ValueError, match="bonus_weight: .*>= 2 members.*an ensemble of 1 member"):
        imagine(one, obs, acts, bonus_weight=0.5)
    with pytest.raises(ValueError, match=r"bonus_weight: expected a finite number in \[0.0, inf\], got -1"):
        imagine(_two_members(), obs, acts, bonus_weight=-1)
    with pytest.raises(ValueError, match=r"reward_weight: expected a finite number in \[0.0, inf\], got -0.5"):
        imagine(_two_members(), obs, acts, reward_weight=-0.5)
    with pytest.raises(ValueError, match="reward_weight/bonus_weight: expected at least one of them > 0"):
        imagine(_two_members(), obs, acts, reward_weight=0.0)
    with pytest.raises(ValueError, match="bonus_weight: expected a finite number"):
        MPCController(CEM([-1.0], [1.0], horizon=3, population=8), bonus_weight=float("nan"))
    learner = MAML(DynamicsMLP(4, 2, hidden=(8,)))
    with pytest.raises(ValueError, match="bonus_weight: .*needs an ensemble learner.*MAML"):
        MetaMBRLAgent(learner, CEM(-np.ones(2), np.ones(2), horizon=3, population=8), bonus_weight=1.0)


def test_config_validates_the_exploration_weights_before_any_work():
    with pytest.raises(ValueError, match=r"train.mb_bonus_weight: expected a finite number in \[0.0"):
        TrainSection(mb_bonus_weight=-0.1)
    with pytest.raises(ValueError, match=r"train.mb_reward_weight: expected a finite number in \[0.0"):
        TrainSection(mb_reward_weight=-1.0)
    with pytest.raises(ValueError, match="train.mb_bonus_weight: .*learner.ensemble > 1.*got learner.ensemble=1"):
        RunConfig(train=TrainSection(mb_rounds=2, mb_bonus_weight=0.5))
    with pytest.raises(ValueError, match="train.mb_reward_weight/train.mb_bonus_weight: expected at least one"):
        TrainSection(mb_reward_weight=0.0)
    # without model-based rounds the bonus is unused; with an ensemble it is fine
    RunConfig(train=TrainSection(mb_rounds=1, mb_bonus_weight=0.5))
    RunConfig(train=TrainSection(mb_rounds=2, mb_bonus_weight=0.5), learner=LearnerSection(ensemble=2))


# ---------------------------------------------------------------------------------------------- the data loop
def test_model_based_loop_explores_with_the_bonus_and_counts_its_env_steps():
    suite = task_suites.make("point-mass", seed=0)
    tasks = suite.train_tasks[:4]
    buf = collect(suite, tasks, episodes_per_task=1, progress=False)
    first = buf.env_steps
    torch.manual_seed(0)
    learner = Ensemble(DynamicsMLP(4, 2, hidden=(16,), context_dim=4), member="cadm", size=2)
    made = []

    def make_agent(lr, n):
        made.append(MetaMBRLAgent(lr, CEM(suite.action_low, suite.action_high, horizon=3, population=16, iterations=1,
                                          seed=0), num_envs=n, bonus_weight=0.5, seed=0))
        return made[-1]

    log = model_based_meta_train(learner, suite, tasks, buf, make_agent, rounds=2, steps_per_round=5, envs_per_chunk=4,
                                 tasks_per_batch=4, progress=False)
    assert list(log["round"].unique()) == [0, 1]
    assert buf.env_steps == first + len(tasks) * suite.max_episode_steps
    assert sum(a.env_steps["adapt"] for a in made) == len(tasks) * suite.max_episode_steps
    assert [s["policy"] for s in buf.sources] == ["colored-noise", "mpc-agent+bonus0.5/round1"]
    assert agent_source(made[0]) == "mpc-agent+bonus0.5"


def test_the_cli_rejects_a_bonus_without_an_ensemble_before_any_work(tmp_path, capsys):
    from meta_mbrl.cli import main

    run = tmp_path / "run"
    assert main(["train", "--suite", "point-mass", "--preset", "test", "--mb-rounds", "2", "--mb-bonus-weight", "0.5",
                 "--run-dir", str(run), "--no-progress"]) == 2
    assert "train.mb_bonus_weight: the information bonus" in capsys.readouterr().err
    assert not run.exists()


def test_train_run_collects_with_the_bonus_and_evaluates_without_it(tmp_path, monkeypatch):
    from meta_mbrl import runs
    from meta_mbrl.cli import main
    from meta_mbrl.training import load_checkpoint

    built = []
    build = runs.build_agent
    monkeypatch.setattr(runs, "build_agent", lambda *a, **kw: built.append(build(*a, **kw)) or built[-1])
    run = tmp_path / "run"
    assert main(["train", "--suite", "point-mass", "--preset", "test", "--learner", "cadm", "--ensemble", "2",
                 "--mb-rounds", "2", "--mb-bonus-weight", "0.5", "--kshot-ks", "8", "--run-dir", str(run),
                 "--no-progress"]) == 0
    sources = load_checkpoint(run)["sources"]
    assert sources[-1]["policy"] == "mpc-agent+bonus0.5/round1"
    assert {a.bonus_weight for a in built} == {0.5, 0.0}  # the collecting agent, then evaluation's
    assert built[0].bonus_weight == 0.5 and built[-1].bonus_weight == 0.0


def test_a_run_started_before_the_bonus_settings_existed_resumes(tmp_path):
    import json

    from meta_mbrl.config import CONFIG_FORMAT, to_dict
    from meta_mbrl.runs import check_run_config

    cfg = RunConfig()
    old = to_dict(cfg)
    del old["train"]["mb_bonus_weight"], old["train"]["mb_reward_weight"]
    (tmp_path / "config.json").write_text(json.dumps({"format": CONFIG_FORMAT, "config": old}))
    check_run_config(cfg, tmp_path)  # the same settings: resumes
    with pytest.raises(ValueError, match=r"train.mb_bonus_weight: 0.0 -> 0.5"):
        check_run_config(RunConfig(train=TrainSection(mb_bonus_weight=0.5)), tmp_path)
