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


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def tiny_ensemble(name, size=E, seed=0, **kw):
    ens = make_learner(name, 5, 2, hidden=(16, 16), seed=seed, ensemble=size, **kw)
    ens.fit_normalizers(random_transitions(200, seed=seed + 1))
    return ens


def opts(name):
    return {"steps": 3} if name == "finetune" else {}


@pytest.mark.parametrize("name", LEARNER_NAMES)
@pytest.mark.parametrize("tasks", [None, 4])
def test_ensemble_prediction_equals_members_stacked_predictions(name, tasks):
    ens = tiny_ensemble(name)
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


def test_ensemble_adapt_never_mutates_members_and_meta_loss_reaches_every_member():
    ens = tiny_ensemble("maml")
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
