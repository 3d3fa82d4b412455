"""The value-guided agent: the actor-critic's pieces, TD targets on a chain with known values, the training loop's
bit-identical resume after a kill, planning with true dynamics and a known value, and a learned agent that beats
random actions on held-out point-mass goals."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import task_suites
from meta_mbrl import MAML, DynamicsMLP, collect
from meta_mbrl.agent import MetaMBRLAgent
from meta_mbrl.data.buffer import TaskBuffer
from meta_mbrl.evaluation import protocol_evaluation, random_agent_returns
from meta_mbrl.models.actor_critic import ActorCritic
from meta_mbrl.planning import MPPI
from meta_mbrl.training.actor_critic import ActorCriticTrainer, sample_value_batch
from meta_mbrl.training.agent_loop import AGENT_BUFFER, AGENT_CHECKPOINT, train_value_agent
from meta_mbrl.types import Transitions, as_tensor_transitions


def small_ac(obs_dim=4, act_dim=2, **kw) -> ActorCritic:
    torch.manual_seed(0)
    return ActorCritic(obs_dim, act_dim, -np.ones(act_dim), np.ones(act_dim),
                       **{"hidden": (32, 32), "latent_dim": 4, "encoder_hidden": (32,), **kw})


# ---------------------------------------------------------------- the actor-critic's pieces
def test_encoder_is_order_invariant_and_empty_context_gives_the_prior_vector():
    ac = small_ac()
    g = torch.Generator().manual_seed(0)
    ctx = Transitions(torch.randn(3, 10, 4, generator=g), torch.rand(3, 10, 2, generator=g) * 2 - 1,
                      torch.randn(3, 10, generator=g), torch.randn(3, 10, 4, generator=g))
    perm = torch.randperm(10, generator=g)
    z = ac.encode(ctx)
    torch.testing.assert_close(ac.encode(Transitions(*(x[:, perm] for x in ctx))), z)
    assert z.shape == (3, 4) and not torch.allclose(z[0], z[1])
    torch.testing.assert_close(ac.encode(None, num_tasks=2), ac.z0.expand(2, 4))
    empty = Transitions(*(x[:, :0] for x in ctx))
    torch.testing.assert_close(ac.encode(empty), ac.z0.expand(3, 4))
    with pytest.raises(ValueError, match="num_tasks"):
        ac.encode(None)


def test_policy_stays_in_bounds_and_its_log_prob_is_a_density():
    torch.manual_seed(0)
    ac = ActorCritic(1, 1, [-2.0], [3.0], hidden=(16,), latent_dim=2, encoder_hidden=(8,))
    with torch.no_grad():
        ac.policy[-1].bias.copy_(torch.tensor([0.3, 0.5]))  # a wide distribution that reaches both bounds
    z = ac.encode(None, num_tasks=1).expand(200_000, 2)
    a, logp = ac.pi(torch.zeros(200_000, 1), z, generator=torch.Generator().manual_seed(0))
    assert a.min() >= -2.0 and a.max() <= 3.0
    # E_p[1 / p(a)] = the support's length: the log-probability is that of the action in the bounds' units
    assert abs(float((-logp.detach()).exp().mean()) - 5.0) < 0.25
    det, _ = ac.pi(torch.zeros(1, 1), z[:1], deterministic=True)
    assert torch.equal(det, ac.pi(torch.zeros(1, 1), z[:1], deterministic=True)[0])


def test_bound_value_and_policy_broadcast_task_vectors_over_candidates():
    ac = small_ac()
    z = torch.randn(3, 4)
    bound = ac.bind(z)
    obs = torch.randn(3, 5, 4)
    v = bound.value(obs)
    assert v.shape == (3, 5)
    torch.testing.assert_close(v[1], ac.value(obs[1], z[1].expand(5, 4)).detach())
    with pytest.raises(ValueError, match="obs"):
        bound.value(torch.randn(2, 5, 4))


# ---------------------------------------------------------------- TD targets on a chain with known values
def chain_buffer(n_states=5, episodes=4, length=12) -> TaskBuffer:
    """States ``0..4`` as one-hot observations, every action moves right; reward 1 per move, state 4 absorbs with 0."""
    rng = np.random.default_rng(0)
    buf = TaskBuffer(n_states, 1)
    eye = np.eye(n_states, dtype=np.float32)
    for _ in range(episodes):
        s = np.minimum(np.arange(length), n_states - 1)
        s2 = np.minimum(s + 1, n_states - 1)
        r = (s < n_states - 1).astype(np.float32)
        buf.add_trajectory("chain", eye[s], rng.uniform(-1, 1, (length, 1)), r, eye[s2])
    return buf


@pytest.mark.parametrize("nstep", [1, 3])
def test_td_targets_converge_to_the_chain_values(nstep):
    gamma = 0.9
    # V(4) = 0, V(k) = 1 + gamma V(k + 1): 3.439, 2.71, 1.9, 1, 0
    values = [sum(gamma ** i for i in range(4 - k)) for k in range(5)]
    buf = chain_buffer()
    torch.manual_seed(0)
    ac = ActorCritic(5, 1, [-1.0], [1.0], hidden=(32, 32), latent_dim=2, encoder_hidden=(8,), discount=gamma,
                     reward_scale=1.0)
    trainer = ActorCriticTrainer(ac, lr=3e-3, tau=0.05, nstep=nstep, alpha=0.0)
    rng, gen = np.random.default_rng(0), torch.Generator().manual_seed(0)
    for _ in range(600):  # measured: largest error 0.034 (1-step and 3-step)
        trainer.update(sample_value_batch(buf, rng, tasks=1, per_task=64, context=0, nstep=nstep), gen)
    obs = torch.eye(5)
    z = ac.encode(None, num_tasks=5)
    with torch.no_grad():
        q = ac.q(obs, torch.zeros(5, 1), z).mean(0)
        v = ac.value(obs, z)
    torch.testing.assert_close(q, torch.tensor(values), atol=0.06, rtol=0.0)
    torch.testing.assert_close(v, torch.tensor(values), atol=0.08, rtol=0.0)


def test_value_batch_windows_stay_inside_one_trajectory_and_sum_rewards():
    buf = TaskBuffer(1, 1)
    buf.add_trajectory("a", np.arange(5.0)[:, None], np.zeros((5, 1)), np.arange(5.0), np.arange(1.0, 6.0)[:, None])
    buf.add_trajectory("a", 100 + np.arange(5.0)[:, None], np.zeros((5, 1)), np.arange(5.0), 101 + np.arange(5.0)[:, None])
    b = sample_value_batch(buf, np.random.default_rng(0), tasks=1, per_task=200, context=3, nstep=3)
    start = b.obs[0, :, 0]
    # windows of 3 start at 0..2 of a 5-step trajectory; their rewards are the next 3, the next obs is 3 steps on
    assert set((start % 100).tolist()) <= {0.0, 1.0, 2.0}
    torch.testing.assert_close(b.next_obs[0, :, 0], start + 3)
    torch.testing.assert_close(b.rewards[0, :, 0], start % 100)
    assert b.context.obs.shape[1] <= 3


# ---------------------------------------------------------------- planning with true dynamics and a known value
def point_mass_truth(tasks):
    """The point mass's true dynamics and reward for ``tasks`` (one env each) as a batched model, and the goals."""
    from test_planning import point_mass_model

    goals = torch.tensor([t.payload["goal"] for t in tasks], dtype=torch.float32)
    return point_mass_model(tasks), goals


class OracleActorCritic:
    """A known value and policy: ``V(s) = -|p - goal| / (1 - gamma)``, the policy a noisy push toward the goal."""

    def __init__(self, goals: torch.Tensor, gamma: float = 0.9):
        self.goals, self.gamma, self.obs_dim, self.act_dim = goals, gamma, 4, 2

    def encode(self, context, num_tasks=None):
        return self.goals.clone()

    def bind(self, z, generator=None):
        oracle = self

        class Bound:
            def _goal(self, obs):
                return z.reshape(z.shape[0], *([1] * (obs.dim() - 2)), 2)

            def value(self, obs):
                return -(obs[..., :2] - self._goal(obs)).norm(dim=-1) / (1 - oracle.gamma)

            def policy(self, obs):
                push = (self._goal(obs) - obs[..., :2]) * 2 - obs[..., 2:]
                noise = 0.3 * torch.randn(obs.shape[:-1] + (2,), generator=generator)
                return (push + noise).clamp(-1, 1)

            def act(self, obs, deterministic=False):
                return self.policy(obs)

        return Bound()


class TrueLearner:
    """A 'learner' whose prior and adapted models are the true dynamics."""

    def __init__(self, model):
        self.model = torch.nn.Linear(1, 1)  # parameters for the agent's device/dtype
        self.model.obs_dim, self.model.act_dim = 4, 2
        self.truth = model

    def prior(self, n):
        return self.truth

    def adapt(self, ctx, **kw):
        return self.truth


def _final_distances(suite, tasks, model, goals, actor_critic):
    agent = MetaMBRLAgent(TrueLearner(model), MPPI(suite.action_low, suite.action_high, horizon=3, population=32,
                                                   iterations=3, seed=0),
                          num_envs=len(tasks), actor_critic=actor_critic, mode="plan", seed=0)
    env = suite.make_vec_env(tasks, seed=0)
    obs, _ = env.reset(seed=0)
    agent.reset()
    for _ in range(suite.max_episode_steps - 1):  # the last step would auto-reset the env
        obs, *_ = env.step(agent.eval_action(obs))
    assert agent.controller.num_plans == suite.max_episode_steps - 1
    return np.linalg.norm(obs[:, :2] - goals.numpy(), axis=-1)


def test_agent_with_true_dynamics_and_known_value_solves_point_mass():
    suite = task_suites.make("point-mass", seed=0)
    tasks = list(suite.test_tasks)
    model, goals = point_mass_truth(tasks)
    dist = _final_distances(suite, tasks, model, goals, OracleActorCritic(goals))
    # measured: every goal within 0.15 (9 of 10 within 0.06); the same H=3 planner without the value and the
    # policy's proposals stops 0.62 short of the slowest goal (test/03), 0.67 summed over goals against 0.20
    assert (dist < 0.15).all(), dist
    flat = _final_distances(suite, tasks, model, goals, None)
    assert dist.sum() < 0.6 * flat.sum(), (dist, flat)


# ---------------------------------------------------------------- the training loop
def _pm_setup(train_tasks=4):
    suite = task_suites.make("point-mass", seed=0)
    buf = collect(suite, suite.train_tasks[:train_tasks], episodes_per_task=1, seed=0, progress=False)
    torch.manual_seed(0)
    learner = MAML(DynamicsMLP(4, 2, hidden=(16,)))
    learner.model.fit_normalizers(as_tensor_transitions(buf.transitions()))
    return suite, buf, learner


def _make_agent(suite):
    def make(learner, ac, n, seed):
        planner = MPPI(suite.action_low, suite.action_high, horizon=2, population=8, iterations=1, seed=seed)
        return MetaMBRLAgent(learner, planner, num_envs=n, actor_critic=ac, seed=seed, mode="policy", plan_share=0.2,
                             policy_samples=4)
    return make


def _train(run, env_steps, fail_at=None, model_steps=2):
    suite, buf, learner = _pm_setup()
    ac = small_ac()
    make = _make_agent(suite)
    calls = [0]

    def make_or_die(*a):
        calls[0] += 1
        if fail_at is not None and calls[0] == fail_at:
            raise KeyboardInterrupt  # killed mid-run, before this round collects
        return make(*a)

    log = train_value_agent(learner, ac, suite, suite.train_tasks[:4], buf, make_or_die, env_steps=env_steps,
                            tasks_per_round=2, updates_per_step=0.1, batch_tasks=2, batch_per_task=8, context=8,
                            nstep=2, model_steps=model_steps, model_kwargs={"tasks_per_batch": 2, "support": 4, "query": 4},
                            run_dir=run, checkpoint_minutes=0, seed=3, progress=False)
    return learner, ac, buf, log


def test_training_resumes_bit_identically_after_a_kill(tmp_path):
    learner_a, ac_a, buf_a, log_a = _train(tmp_path / "a", env_steps=600)
    with pytest.raises(KeyboardInterrupt):
        _train(tmp_path / "b", env_steps=600, fail_at=3)
    assert (tmp_path / "b" / AGENT_CHECKPOINT).exists() and (tmp_path / "b" / AGENT_BUFFER).exists()
    learner_b, ac_b, buf_b, log_b = _train(tmp_path / "b", env_steps=600)
    for k, v in ac_a.state_dict().items():
        assert torch.equal(v, ac_b.state_dict()[k]), k
    for k, v in learner_a.state_dict().items():
        assert torch.equal(v, learner_b.state_dict()[k]), k
    assert buf_a.env_steps == buf_b.env_steps == 600
    np.testing.assert_array_equal(buf_a.transitions().obs, buf_b.transitions().obs)
    assert log_a.drop(columns=["seconds", "seconds_collect"]).equals(log_b.drop(columns=["seconds", "seconds_collect"]))
    assert [s["policy"] for s in buf_b.sources] == ["colored-noise"] + [f"value-agent/round{r}" for r in range(1, 5)]
    # every env step counted: four colored-noise episodes, then four rounds of two 50-step episodes
    assert log_a["env_steps"].tolist() == [300, 400, 500, 600]


def test_replay_saved_after_the_checkpoint_is_cut_back_on_resume(tmp_path):
    _train(tmp_path, env_steps=400)
    state = torch.load(tmp_path / AGENT_CHECKPOINT, weights_only=False)
    # simulate a kill between writing the replay and the checkpoint of the next round
    buf = TaskBuffer.load(tmp_path / AGENT_BUFFER)
    buf.add_trajectory("point-mass/train/00", *(np.zeros((50, d)) for d in (4, 2)), np.zeros(50), np.zeros((50, 4)))
    buf.env_steps += 50
    buf.save(tmp_path / AGENT_BUFFER)
    learner, ac, buf2, _ = _train(tmp_path, env_steps=400)
    assert buf2.num_trajectories == state["buffer"]["num_trajectories"] and buf2.env_steps == 400


def test_learned_value_agent_beats_random_actions_on_heldout_point_mass_goals():
    """About 25 s: 20k env steps of training on the point-mass training goals, scored on the held-out ones."""
    suite = task_suites.make("point-mass", seed=0)
    buf = collect(suite, suite.train_tasks, episodes_per_task=1, seed=0, progress=False)
    torch.manual_seed(0)
    learner = MAML(DynamicsMLP(4, 2, hidden=(16,)))
    learner.model.fit_normalizers(as_tensor_transitions(buf.transitions()))
    ac = small_ac(hidden=(64, 64), latent_dim=8, encoder_hidden=(64,), discount=0.95, reward_scale=1.0)
    log = train_value_agent(learner, ac, suite, suite.train_tasks, buf, _make_agent(suite), env_steps=15_000,
                            tasks_per_round=10, updates_per_step=0.5, nstep=3, seed=0, progress=False)
    assert log["env_steps"].iloc[-1] >= 15_000 and log["updates"].iloc[-1] > 0.45 * (15_000 - 1000)
    tasks = suite.test_tasks
    agent = MetaMBRLAgent(learner, MPPI(suite.action_low, suite.action_high, horizon=3, population=16, iterations=1,
                                        seed=0), len(tasks), actor_critic=ac, seed=0, mode="policy")
    df, _ = protocol_evaluation(agent, suite, tasks, adaptation_episodes=2, evaluation_episodes=1, seed=3)
    rand = random_agent_returns(suite, tasks, episodes=3, seed=3)
    print(f"value agent {df.eval_return.mean():.1f}, random {rand.mean():.1f}")
    assert df.eval_return.mean() > rand.mean() + 0.15 * abs(rand.mean()), (df.eval_return.mean(), rand.mean())
    assert math.isfinite(float(log["critic_loss"].iloc[-1]))


@pytest.mark.parametrize("name,ensemble", [("maml", 1), ("cadm", 1), ("cadm", 2), ("alpaca", 1)])
def test_value_agent_plans_over_any_prior_and_ensembles(name, ensemble):
    """The value and policy prior are the agent's own: MAML's adapted weights, CaDM's context vector and an ensemble's
    members all plan with the policy's proposals and the terminal value, adapting on the episodes seen."""
    from meta_mbrl.meta import make_learner

    suite = task_suites.make("point-mass", seed=0)
    tasks = suite.test_tasks[:3]
    learner = make_learner(name, 4, 2, hidden=(16,), ensemble=ensemble, seed=0)
    ac = small_ac()
    agent = MetaMBRLAgent(learner, MPPI(suite.action_low, suite.action_high, horizon=3, population=8, iterations=2,
                                        seed=0), len(tasks), actor_critic=ac, mode="plan", policy_samples=4, seed=0)
    df, info = protocol_evaluation(agent, suite, tasks, adaptation_episodes=1, evaluation_episodes=1, seed=0)
    assert np.isfinite(df.eval_return).all() and info["eval_env_steps"] == len(tasks) * suite.max_episode_steps
    assert agent.controller.num_plans >= suite.max_episode_steps
    assert agent.num_context == [suite.max_episode_steps - 1] * len(tasks)  # the adaptation episode's transitions
    z_prior = ac.encode(None, num_tasks=len(tasks))
    assert not torch.allclose(agent.task.z, z_prior)  # the task vectors were inferred from them


def test_task_vector_is_refreshed_when_a_metaworld_adaptation_episode_ends():
    """Meta-World's harness calls no reset between adaptation episodes: ``step`` refreshes the posterior itself."""
    from metaworld.evaluation import Timestep

    suite, _, learner = _pm_setup()
    ac = small_ac()
    agent = MetaMBRLAgent(learner, MPPI(suite.action_low, suite.action_high, horizon=2, population=4, iterations=1),
                          num_envs=2, actor_critic=ac, seed=0)
    z0 = agent.task.z.clone()
    rng = np.random.default_rng(0)
    for t in range(6):
        ended = np.array([t == 5, False])
        agent.step(Timestep(rng.normal(size=(2, 4)), rng.uniform(-1, 1, (2, 2)), rng.normal(size=2), ended,
                            np.zeros(2, bool), {}))
        if t < 5:
            assert torch.equal(agent.task.z, z0)
    assert not torch.allclose(agent.task.z, z0)
    assert agent.num_context == [5, 5]
