"""Ensembles of any learner: stacked members, one vmapped adapt, trajectory sampling in the planners."""

import pytest
import torch
from conftest import random_transitions

import meta_mbrl
from meta_mbrl import TaskBatch
from meta_mbrl.adaptation import EnsembleAdaptedModel
from meta_mbrl.meta import LEARNER_NAMES, Ensemble, make_learner
from meta_mbrl.training import learner_from_checkpoint, save_checkpoint

E = 3


pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_ensemble(name, size=E, seed=0, **kw):
    ens = make_learner(name, 5, 2, hidden=(16, 16), seed=seed, ensemble=size, **kw)
    ens.fit_normalizers(random_transitions(200, seed=seed + 1))
    return ens


def opts(name):
    return {"steps": 3} if name == "finetune" else {}


@pytest.mark.parametrize("name", LEARNER_NAMES)
@pytest.mark.parametrize("tasks", [None, 4])
@pytest.mark.parametrize("mode", ["vmap", "loop"])
def test_ensemble_prediction_equals_members_stacked_predictions(name, tasks, mode):
    ens = tiny_ensemble(name)
    ens.adapt_mode = mode
    assert isinstance(ens, Ensemble) and len(ens.members) == E
    ctx = random_transitions(16, seed=3) if tasks is None else random_transitions(tasks, 16, seed=3)
    adapted = ens.adapt(ctx, **opts(name))
    assert isinstance(adapted, EnsembleAdaptedModel) and adapted.ensemble_size == E and adapted.num_tasks == tasks
    lead = (7,) if tasks is None else (tasks, 7)
    obs, act = torch.randn(*lead, 5), torch.randn(*lead, 2)
    stacked = adapted.predict_members(obs, act)
    # each member adapted on its own (its own adapt call, no vmap) predicts exactly its slice
    own = [m.adapt(ctx, **opts(name)).predict(obs, act) for m in ens.members]
    torch.testing.assert_close(stacked.next_obs, torch.stack([p.next_obs for p in own]), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(stacked.reward, torch.stack([p.reward for p in own]), atol=1e-5, rtol=1e-5)
    mean = adapted.predict(obs, act)
    torch.testing.assert_close(mean.next_obs, stacked.next_obs.mean(0))
    torch.testing.assert_close(mean.reward_std, stacked.reward.std(0, unbiased=False))
    # members start from different weights, so they disagree
    assert not torch.allclose(stacked.next_obs[0], stacked.next_obs[1])


@pytest.mark.parametrize("name", ["maml", "cadm", "multitask"])
def test_ensemble_prior_and_batch_indexing(name):
    ens = tiny_ensemble(name)
    prior = ens.prior(4)
    obs, act = torch.randn(4, 6, 5), torch.randn(4, 6, 2)
    stacked = prior.predict_members(obs, act)
    for e, m in enumerate(ens.members):
        torch.testing.assert_close(stacked.reward[e], m.prior(4).predict(obs, act).reward)
    adapted = ens.adapt(random_transitions(4, 16, seed=5))
    torch.testing.assert_close(adapted[2].predict(obs[2], act[2]).next_obs, adapted.predict(obs, act).next_obs[2],
                               atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(adapted.member(1).predict(obs, act).reward, adapted.predict_members(obs, act).reward[1])


@pytest.mark.parametrize("bootstrap", [False, True])
def test_ensemble_adapt_never_mutates_members_and_meta_loss_reaches_every_member(bootstrap):
    ens = tiny_ensemble("maml")
    ens.bootstrap = bootstrap
    before = {k: v.clone() for k, v in ens.state_dict().items()}
    ens.adapt(random_transitions(3, 16, seed=4))
    assert all(torch.equal(v, before[k]) for k, v in ens.state_dict().items())
    loss, info = ens.meta_loss(TaskBatch(random_transitions(4, 8, seed=1), random_transitions(4, 8, seed=2)))
    assert {"query_loss", "query_loss_pre"} <= set(info)
    loss.backward()
    for e, m in enumerate(ens.members):
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in m.parameters()), f"member {e} got no gradient"


def test_ensemble_trains_and_its_checkpoint_rebuilds_it(pm_suite, tmp_path):
    data = meta_mbrl.collect(pm_suite, pm_suite.train_tasks[:4], episodes_per_task=2, seed=0, progress=False)
    ens = make_learner("cadm", 4, 2, hidden=(16,), seed=0, ensemble=2)
    log = meta_mbrl.meta_train(ens, data, steps=60, tasks_per_batch=4, support=8, query=8, lr=3e-3,
                                  log_every=10, progress=False, run_dir=tmp_path)
    assert log["query_loss"].iloc[-1] < log["query_loss"].iloc[0]
    # fit_normalizers reached every member, not member 0 only
    torch.testing.assert_close(ens.members[1].model.obs_norm.mean, ens.members[0].model.obs_norm.mean)
    assert not torch.equal(ens.members[1].model.obs_norm.std, torch.ones_like(ens.members[1].model.obs_norm.std))
    rebuilt = learner_from_checkpoint(tmp_path)
    assert isinstance(rebuilt, Ensemble) and rebuilt.member == "cadm" and rebuilt.size == 2
    ctx = random_transitions(8, obs_dim=4, seed=2)
    obs, act = torch.randn(5, 4), torch.randn(5, 2)
    torch.testing.assert_close(rebuilt.adapt(ctx).predict_members(obs, act).next_obs,
                               ens.adapt(ctx).predict_members(obs, act).next_obs)
    save_checkpoint(tmp_path / "again.pt", rebuilt)


def test_ensemble_bad_arguments_are_named():
    with pytest.raises(ValueError, match="ensemble: expected an int >= 1"):
        make_learner("maml", 5, 2, ensemble=0)
    with pytest.raises(ValueError, match="member: expected one of"):
        Ensemble(torch.nn.Linear(2, 2), member="nope", size=2)
    ens = tiny_ensemble("maml")
    with pytest.raises(ValueError, match="context"):
        ens.adapt(random_transitions(16, obs_dim=4, seed=0))
    adapted = ens.adapt(random_transitions(16, seed=0))
    with pytest.raises(ValueError, match="obs: expected a leading member dim of 3"):
        adapted.predict_members(torch.zeros(2, 4, 5), torch.zeros(2, 4, 2), per_member=True)


# ---------------------------------------------------------------------------- trajectory sampling in the planners
def toy_ensemble(size=2, num_tasks=None, seed=0, gaussian=False):
    """An EnsembleAdaptedModel over a small MLP with clearly different members (random weights, scaled up)."""
    from conftest import small_model

    m = small_model(obs_dim=3, act_dim=1, hidden=(16,), seed=seed, gaussian=gaussian)
    g = torch.Generator().manual_seed(seed)
    params = {k: torch.randn(size, *v.shape, generator=g) * 0.5 for k, v in m.param_dict().items()}
    if num_tasks is not None:
        params = {k: v.unsqueeze(1).expand(size, num_tasks, *v.shape[1:]).contiguous() for k, v in params.items()}
    return EnsembleAdaptedModel(m, params, num_tasks)


def member_sequence_return(ens, obs, actions, seq):
    """Hand rollout: step h uses member seq[h] (plain AdaptedModel.predict of that member)."""
    o, ret = obs.expand(actions.shape[0], obs.shape[-1]), torch.zeros(actions.shape[0])
    for h, e in enumerate(seq):
        p = ens.member(e).predict(o, actions[:, h])
        ret, o = ret + p.reward, p.next_obs
    return ret


def test_ts_inf_equals_hand_rollout_of_each_particles_member():
    from meta_mbrl.planning import imagine

    ens = toy_ensemble(size=2)
    obs, actions = torch.randn(3), torch.randn(5, 4, 1)
    # particle p follows member p % E for the whole horizon: with 4 particles, two follow each member
    want = (member_sequence_return(ens, obs, actions, [0] * 4) + member_sequence_return(ens, obs, actions, [1] * 4)) / 2
    torch.testing.assert_close(imagine(ens, obs, actions, particles=4, propagation="tsinf"), want, atol=1e-5, rtol=1e-5)
    # "mean" rolls out the members' mean prediction instead
    mean = imagine(ens, obs, actions, propagation="mean")
    assert not torch.allclose(mean, want)
    o, ret = obs.expand(5, 3), torch.zeros(5)
    for h in range(4):
        p = ens.predict(o, actions[:, h])
        ret, o = ret + p.reward, p.next_obs
    torch.testing.assert_close(mean, ret, atol=1e-5, rtol=1e-5)


def test_ts1_averages_over_member_sequences():
    import itertools

    from meta_mbrl.planning import imagine

    ens = toy_ensemble(size=2, seed=3)
    obs, actions = torch.randn(3), torch.randn(2, 3, 1)
    every = torch.stack([member_sequence_return(ens, obs, actions, s) for s in itertools.product(range(2), repeat=3)])
    constant = (member_sequence_return(ens, obs, actions, [0] * 3) + member_sequence_return(ens, obs, actions, [1] * 3)) / 2
    g = torch.Generator().manual_seed(0)
    ts1 = imagine(ens, obs, actions, particles=2000, propagation="ts1", generator=g)
    # TS-1 re-draws the member every step: its mean return is that of a uniformly random member sequence,
    # not that of TS-inf's constant sequences (the members are far apart, so the two differ clearly)
    gap = (every.mean(0) - constant).abs()
    assert bool((gap > 0.05).all()), gap
    assert bool(((ts1 - every.mean(0)).abs() < 0.2 * gap).all()), (ts1, every.mean(0), constant)
    again = imagine(ens, obs, actions, particles=2000, propagation="ts1", generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(ts1, again)  # seeded: reproducible


def test_ts_batched_over_envs_matches_per_env_and_chunks():
    from meta_mbrl.planning import imagine

    ens = toy_ensemble(size=3, num_tasks=2, seed=1)
    obs, actions = torch.randn(2, 3), torch.randn(2, 7, 4, 1)
    batched = imagine(ens, obs, actions, particles=6, propagation="tsinf")
    for b in range(2):
        torch.testing.assert_close(batched[b], imagine(ens[b], obs[b], actions[b], particles=6, propagation="tsinf"),
                                   atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(imagine(ens, obs, actions, particles=6, propagation="tsinf", max_rows=12), batched,
                               atol=1e-5, rtol=1e-5)


def test_gaussian_particles_are_sampled_and_identical_members_agree():
    from meta_mbrl.planning import imagine

    ens = toy_ensemble(size=2, seed=2, gaussian=True)
    obs, actions = torch.randn(3), torch.randn(4, 3, 1)
    a = imagine(ens, obs, actions, particles=4, generator=torch.Generator().manual_seed(0))
    b = imagine(ens, obs, actions, particles=4, generator=torch.Generator().manual_seed(1))
    assert torch.isfinite(a).all() and not torch.allclose(a, b)
    det = toy_ensemble(size=2)
    same = EnsembleAdaptedModel(det.model, {k: v[:1].expand(2, *v.shape[1:]) for k, v in det.params.items()})
    outs = [imagine(same, obs, actions, particles=2, propagation=p) for p in ("ts1", "tsinf", "mean")]
    for o in outs[1:]:
        torch.testing.assert_close(o, outs[0], atol=1e-5, rtol=1e-5)


def test_mpc_agent_plans_with_an_ensemble(pm_suite):
    import numpy as np

    from meta_mbrl.agent import MetaMBRLAgent
    from meta_mbrl.planning import CEM, MPCController, make_objective

    ens = make_learner("maml", 4, 2, hidden=(16,), seed=0, ensemble=2)
    planner = CEM(pm_suite.action_low, pm_suite.action_high, horizon=4, population=16, iterations=2, seed=0)
    agent = MetaMBRLAgent(ens, planner, num_envs=3, particles=4, propagation="ts1", seed=0)
    actions = agent.act(np.zeros((3, 4), np.float32))
    assert actions.shape == (3, 2) and np.all(actions <= pm_suite.action_high)
    with pytest.raises(ValueError, match="particles: expected a multiple of the ensemble size 2"):
        make_objective(ens.prior(), torch.zeros(4), particles=3)
    with pytest.raises(ValueError, match="propagation: expected one of ts1|tsinf|mean"):
        MPCController(planner, propagation="ts2")


# ---------------------------------------------------------------------------- adapt options and overflow, both modes
@pytest.mark.parametrize("mode", ["vmap", "loop"])
def test_ensemble_forwards_adapt_options_to_members_in_both_modes(mode):
    ctx = random_transitions(2, 8, seed=3)
    ens = tiny_ensemble("maml", size=2)
    ens.adapt_mode = mode
    assert ens.ADAPT_OPTIONS == ("steps", "lr")
    for opts in ({"steps": 0}, {"steps": 3, "lr": 0.05}):
        got = ens.adapt(ctx, **opts)
        for e, m in enumerate(ens.members):
            want = m.adapt(ctx, **opts)
            for k, v in want.params.items():
                torch.testing.assert_close(got.params[k][e], v, atol=1e-5, rtol=1e-5)
    for bad, msg in (({"steps": 1.5}, r"^steps: expected an integer"), ({"lr": float("nan")}, r"^lr: expected"),
                     ({"sample": True}, r"^sample: maml"), ({"foo": 1}, r"^foo: not an adapt option of maml")):
        with pytest.raises(ValueError, match=msg):
            ens.adapt(ctx, **bad)
    big = random_transitions(8, seed=4)
    big.obs[0, 0] = 1e30
    with pytest.raises(ValueError, match=r"^context: adaptation produced non-finite parameters"):
        ens.adapt(big)


@pytest.mark.parametrize("mode", ["vmap", "loop"])
def test_ensemble_of_pearl_samples_with_a_generator_and_cadm_rejects_steps(mode):
    ctx = random_transitions(8, seed=5)
    pearl = tiny_ensemble("pearl", size=2)
    pearl.adapt_mode = mode
    assert pearl.ADAPT_OPTIONS == ("sample", "generator")
    z1 = pearl.adapt(ctx, sample=True, generator=torch.Generator().manual_seed(0)).task_vector
    z2 = pearl.adapt(ctx, sample=True, generator=torch.Generator().manual_seed(0)).task_vector
    torch.testing.assert_close(z1, z2)
    assert not torch.equal(z1[0], z1[1]) and not torch.equal(z1, pearl.adapt(ctx).task_vector)
    cadm = tiny_ensemble("cadm", size=2)
    cadm.adapt_mode = mode
    assert cadm.ADAPT_OPTIONS == ()
    cadm.adapt(ctx, steps=None)
    with pytest.raises(ValueError, match=r"^steps: cadm adapts in one forward pass"):
        cadm.adapt(ctx, steps=2)
