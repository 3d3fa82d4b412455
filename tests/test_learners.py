"""The learner family behind one contract: adaptation helps on held-out tasks, encoders ignore context
order, batched adapt equals per-task adapt, the prior is never mutated, checkpoints rebuild exactly."""

import numpy as np
import pytest
import torch
from conftest import random_transitions, small_model

import meta_mbrl
from meta_mbrl import TaskBatch, Transitions, as_tensor_transitions
from meta_mbrl.adaptation import AdaptedModel
from meta_mbrl.meta import LEARNER_NAMES, PEARL, CaDM, MultiTask, Reptile, build_learner, make_learner
from meta_mbrl.training import learner_from_checkpoint, save_checkpoint

NAMES = list(LEARNER_NAMES)
CONTEXT_K = 32


pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_learner(name, seed=0, **kw):
    """A learner over a small model with fitted normalizers (5-dim obs, 2-dim act)."""
    learner = make_learner(name, 5, 2, hidden=(16, 16), seed=seed, **kw)
    learner.model.fit_normalizers(random_transitions(200, seed=seed + 1))
    return learner


def fast_opts(name):
    return {"steps": 5} if name == "finetune" else {}


# ---------------------------------------------------------------------------- trained on the fast suite
@pytest.fixture(scope="module")
def pm_data(pm_suite):
    train = meta_mbrl.collect(pm_suite, pm_suite.train_tasks, episodes_per_task=4, seed=0, progress=False)
    test = meta_mbrl.collect(pm_suite, pm_suite.test_tasks, episodes_per_task=4, seed=1, progress=False)
    ids = [t.id for t in pm_suite.test_tasks]

    def stack(fn):
        return as_tensor_transitions(Transitions(*(np.stack([fn(test.trajectories(i), f) for i in ids]) for f in Transitions._fields)))

    context = stack(lambda trajs, f: getattr(trajs[0], f)[:CONTEXT_K])  # (T, K): the start of episode 0
    held_out = stack(lambda trajs, f: np.concatenate([getattr(tr, f) for tr in trajs[1:]]))  # other episodes
    return train, context, held_out


_TRAINED: dict = {}


def trained(name, pm_data):
    if name not in _TRAINED:
        learner = make_learner(name, 4, 2, hidden=(64, 64), seed=0)
        meta_mbrl.meta_train(learner, pm_data[0], steps=600, tasks_per_batch=10, support=16, query=16, lr=3e-3,
                             progress=False, query_mode="task")
        _TRAINED[name] = learner
    return _TRAINED[name]


def normalized_error(model, am, tr):
    """Reward + mean dynamics MSE in the model's normalized units (the training loss's weighting)."""
    pred = am.predict(tr.obs, tr.act)
    dyn = (model.delta_norm.normalize(pred.next_obs - tr.obs) - model.delta_norm.normalize(tr.next_obs - tr.obs)).pow(2).mean()
    rew = ((pred.reward - tr.reward) / model.reward_norm.std[0]).pow(2).mean()
    return float(dyn + rew)


@pytest.mark.parametrize("name", NAMES)
def test_adapt_beats_prior_on_held_out_tasks(name, pm_data):
    learner = trained(name, pm_data)
    _, context, held_out = pm_data
    t = context.obs.shape[0]
    prior = normalized_error(learner.model, learner.prior(t), held_out)
    adapted = normalized_error(learner.model, learner.adapt(context), held_out)
    assert adapted < 0.97 * prior, (name, prior, adapted)


# ---------------------------------------------------------------------------- encoders
def test_encoders_are_permutation_invariant():
    ctx = random_transitions(3, 24, seed=4)
    perm = torch.randperm(24, generator=torch.Generator().manual_seed(0))
    shuffled = ctx.index((slice(None), perm))
    cadm, pearl = tiny_learner("cadm"), tiny_learner("pearl")
    with torch.no_grad():
        torch.testing.assert_close(cadm.encode(shuffled), cadm.encode(ctx), atol=1e-5, rtol=1e-5)
        for a, b in zip(pearl.posterior(shuffled), pearl.posterior(ctx)):
            torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(cadm.adapt(shuffled).task_vector, cadm.adapt(ctx).task_vector, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(cadm.encode(ctx)[0], cadm.encode(ctx)[1])  # and it does depend on the context


def test_pearl_posterior_variance_shrinks_with_k():
    pearl = tiny_learner("pearl")
    ctx = random_transitions(64, seed=6)
    with torch.no_grad():
        variances = [pearl.posterior(ctx.index(slice(0, k)))[1] for k in (4, 16, 64)]
    for small, large in zip(variances, variances[1:]):
        assert bool((large < small).all())
    assert bool((variances[0] < 1).all())  # any context is sharper than the N(0, I) prior


def test_pearl_samples_follow_the_generator():
    pearl = tiny_learner("pearl")
    ctx = random_transitions(16, seed=2)
    z1 = pearl.adapt(ctx, sample=True, generator=torch.Generator().manual_seed(3)).task_vector
    z2 = pearl.adapt(ctx, sample=True, generator=torch.Generator().manual_seed(3)).task_vector
    torch.testing.assert_close(z1, z2)
    assert not torch.equal(z1, pearl.adapt(ctx).task_vector)


# ---------------------------------------------------------------------------- the contract, every learner
@pytest.mark.parametrize("name", NAMES)
def test_batched_adapt_equals_per_task_adapt(name):
    learner = tiny_learner(name)
    ctx = random_transitions(4, 16, seed=11)
    batched = learner.adapt(ctx, **fast_opts(name))
    assert batched.num_tasks == 4 and len(batched) == 4
    obs, act = torch.randn(4, 6, 5), torch.randn(4, 6, 2)
    pred = batched.predict(obs, act)
    for i in range(4):
        single = learner.adapt(ctx.index(i), **fast_opts(name)).predict(obs[i], act[i])
        torch.testing.assert_close(pred.next_obs[i], single.next_obs, atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(batched[i].predict(obs[i], act[i]).reward, single.reward, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("name", NAMES)
def test_prior_is_unchanged_by_adapt_and_gets_gradients(name):
    learner = tiny_learner(name)
    before = {k: v.clone() for k, v in learner.state_dict().items()}
    learner.adapt(random_transitions(16, seed=3), **fast_opts(name))
    learner.adapt(random_transitions(3, 16, seed=4), **fast_opts(name))
    for k, v in learner.state_dict().items():
        assert torch.equal(v, before[k]), f"adapt mutated {k}"
    batch = TaskBatch(random_transitions(4, 8, seed=1), random_transitions(4, 8, seed=2))
    loss, info = learner.meta_loss(batch)
    assert {"query_loss", "query_loss_pre"} <= set(info) and all(isinstance(v, float) for v in info.values())
    loss.backward()
    for k, p in learner.named_parameters():  # the prior network and any encoder / inner lrs / backward model
        assert p.grad is not None and p.grad.abs().sum() > 0, f"no gradient reaches {k}"


@pytest.mark.parametrize("name", NAMES)
def test_prior_predicts_for_one_or_many_tasks(name):
    learner = tiny_learner(name)
    obs, act = torch.randn(3, 7, 5), torch.randn(3, 7, 2)
    many = learner.prior(3).predict(obs, act)
    one = learner.prior().predict(obs[1], act[1])
    torch.testing.assert_close(many.next_obs[1], one.next_obs)
    torch.testing.assert_close(learner.prior(3)[2].predict(obs[2], act[2]).reward, many.reward[2])


@pytest.mark.parametrize("name", NAMES)
def test_bad_context_raises_naming_the_argument(name):
    learner = tiny_learner(name)
    with pytest.raises(ValueError, match=r"context: expected at least one transition"):
        learner.adapt(random_transitions(0))
    with pytest.raises(ValueError, match=r"context\.obs: expected last dimension 5, got shape \(8, 6\)"):
        learner.adapt(random_transitions(8, obs_dim=6))
    with pytest.raises(ValueError, match=r"context\.obs: expected 1\.\.2 batch dims"):
        learner.adapt(random_transitions(2, 3, 8))


@pytest.mark.parametrize("name", NAMES)
def test_checkpoint_round_trip(name, tmp_path):
    learner = tiny_learner(name, seed=1)
    opt = torch.optim.Adam(learner.parameters(), lr=1e-2)
    for i in range(3):  # move every parameter away from its initialization
        opt.zero_grad()
        learner.meta_loss(TaskBatch(random_transitions(4, 8, seed=i), random_transitions(4, 8, seed=i + 10)))[0].backward()
        opt.step()
    save_checkpoint(tmp_path / "ckpt.pt", learner, opt, step=3)
    rebuilt = learner_from_checkpoint(tmp_path / "ckpt.pt")
    assert type(rebuilt) is type(learner) and rebuilt.init_kwargs() == learner.init_kwargs()
    ctx = random_transitions(2, 16, seed=7)
    obs, act = torch.randn(2, 5, 5), torch.randn(2, 5, 2)
    for a, b in ((learner.prior(2), rebuilt.prior(2)), (learner.adapt(ctx, **fast_opts(name)), rebuilt.adapt(ctx, **fast_opts(name)))):
        pa, pb = a.predict(obs, act), b.predict(obs, act)
        assert torch.equal(pa.next_obs, pb.next_obs) and torch.equal(pa.reward, pb.reward)


# ---------------------------------------------------------------------------- learner-specific properties
def test_reptile_gradient_is_prior_minus_mean_adapted():
    learner = tiny_learner("reptile", inner_steps=3, inner_lr=0.05, inner_data="support")
    batch = TaskBatch(random_transitions(4, 8, seed=1), random_transitions(4, 8, seed=2))
    learner.meta_loss(batch)[0].backward()
    adapted = learner.adapt(batch.support).params
    for k, p in learner.model.named_parameters():
        torch.testing.assert_close(p.grad, p.detach() - adapted[k].mean(0), atol=1e-6, rtol=1e-5, msg=k)


def test_multitask_second_order_matches_autograd():
    torch.manual_seed(0)
    learner = MultiTask(small_model(context_dim=3), inner_lr=0.5, inner_steps=2, first_order=False)
    model = learner.model
    batch = TaskBatch(random_transitions(3, 8, seed=1), random_transitions(3, 8, seed=2))
    learner.meta_loss(batch)[0].backward()
    ours = [p.grad.clone() for p in model.parameters()]
    params = model.param_dict()  # reference: autograd through the inner steps
    z = torch.zeros(3, 3, requires_grad=True)
    for _ in range(2):
        (g,) = torch.autograd.grad(model.task_loss(params, batch.support, z).sum(), z, create_graph=True)
        z = z - 0.5 * g
    ref = torch.autograd.grad(model.task_loss(params, batch.query, z).mean(), list(model.parameters()))
    for a, b in zip(ours, ref):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


def test_multitask_adapt_lowers_context_loss():
    learner = tiny_learner("multitask")
    ctx = random_transitions(32, seed=9)
    params = learner.model.param_dict()
    with torch.no_grad():
        losses = [float(learner.model.task_loss(params, ctx, learner.adapt(ctx, steps=s, lr=0.3).task_vector)) for s in range(4)]
    assert all(b < a for a, b in zip(losses, losses[1:])), losses


def test_finetune_adapt_lowers_context_loss():
    learner = tiny_learner("finetune")
    ctx = random_transitions(32, seed=9)
    losses = [float(learner.model.task_loss(learner.adapt(ctx, steps=s, lr=1e-2).params, ctx)) for s in (0, 10, 50)]
    assert losses[2] < losses[1] < losses[0]


def test_cadm_backward_weight_zero_drops_the_backward_model():
    with_b, without = tiny_learner("cadm"), tiny_learner("cadm", backward_weight=0.0)
    assert any(k.startswith("backward.") for k in with_b.state_dict())
    assert not any(k.startswith("backward.") for k in without.state_dict())
    batch = TaskBatch(random_transitions(2, 8, seed=1), random_transitions(2, 8, seed=2))
    assert "backward_loss" in with_b.meta_loss(batch)[1] and "backward_loss" not in without.meta_loss(batch)[1]


# ---------------------------------------------------------------------------- building blocks
def test_conditioned_model_equals_concatenated_input():
    model = small_model(context_dim=3, activation="silu")
    obs, act, z = torch.randn(4, 6, 5), torch.randn(4, 6, 2), torch.randn(4, 3)
    out = model.forward_params(model.param_dict(), obs, act, z)
    x = torch.cat([model.obs_norm.normalize(obs), act, z[:, None].expand(4, 6, 3)], -1)
    ref = x
    for i, layer in enumerate(model.layers):
        ref = layer(ref) if i == len(model.layers) - 1 else torch.nn.functional.silu(layer(ref))
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    params = {k: v.detach().expand(4, *v.shape) for k, v in model.param_dict().items()}  # task-batched, shared z
    torch.testing.assert_close(model.forward_params(params, obs, act, z), out, atol=1e-5, rtol=1e-5)
    cloned = {k: v.clone() for k, v in params.items()}
    torch.testing.assert_close(model.forward_params(cloned, obs, act, z), out, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(model.forward_params(model.param_dict(), obs[0], act[0], z[0]), out[0], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("batched_params", [False, True])
def test_conditioned_analytic_gradients_match_autograd(batched_params):
    model = small_model(context_dim=3, gaussian=True)
    lead = (3, 10) if batched_params else (10,)
    tr = random_transitions(*lead, seed=7)
    base = model.param_dict()
    params = {k: (v.detach().expand(3, *v.shape) if batched_params else v.detach()).clone().requires_grad_() for k, v in base.items()}
    z = torch.randn(*lead[:-1], 3, requires_grad=True)
    loss, grads = model.loss_grad(params, tr, return_loss=True, z=z)
    ref_loss = model.task_loss(params, tr, z)
    ref = torch.autograd.grad(ref_loss.sum(), [*params.values(), z])
    torch.testing.assert_close(loss, ref_loss.detach())
    for k, r in zip(params, ref):
        torch.testing.assert_close(grads[k], r, atol=1e-6, rtol=1e-5, msg=k)
    torch.testing.assert_close(model.z_grad(params, tr, z)[1], ref[-1], atol=1e-6, rtol=1e-5)


def test_z_grad_with_shared_params_and_task_batched_z():
    model = small_model(context_dim=3, activation="tanh")
    tr = random_transitions(4, 10, seed=8)
    z = torch.randn(4, 3, requires_grad=True)
    (ref,) = torch.autograd.grad(model.task_loss(model.param_dict(), tr, z).sum(), z)
    torch.testing.assert_close(model.z_grad(model.param_dict(), tr, z)[1], ref, atol=1e-6, rtol=1e-5)


def test_conditioned_model_checks_z():
    model = small_model(context_dim=3)
    obs, act = torch.randn(4, 6, 5), torch.randn(4, 6, 2)
    with pytest.raises(ValueError, match=r"z: expected a task vector with last dimension 3"):
        model.predict(obs, act)
    with pytest.raises(ValueError, match=r"z: expected shape \(\*prefix, 3\).*got \(5, 3\)"):
        model.predict(obs, act, z=torch.zeros(5, 3))
    with pytest.raises(ValueError, match=r"z: this model has context_dim=0"):
        small_model().predict(obs, act, z=torch.zeros(4, 3))


def test_adapted_model_task_vector_checks_and_indexing():
    model = small_model(context_dim=2)
    params = {k: v.detach() for k, v in model.param_dict().items()}
    with pytest.raises(ValueError, match=r"task_vector: expected shape \(3, Z\) for 3 tasks, got \(2, 2\)"):
        AdaptedModel(model, params, 3, task_vector=torch.zeros(2, 2))
    with pytest.raises(ValueError, match=r"task_vector: expected shape \(Z,\) for a single task"):
        AdaptedModel(model, params, task_vector=torch.zeros(3, 2))
    am = AdaptedModel(model, params, 3, task_vector=torch.randn(3, 2))
    assert not am.params_batched and am[1].params is params
    torch.testing.assert_close(am[1].task_vector, am.task_vector[1])
    with pytest.raises(ValueError, match=r"obs: expected a leading task dim of 3"):
        am.predict(torch.zeros(2, 5), torch.zeros(2, 2))


def test_make_learner_builds_every_name_and_rejects_unknown():
    for name in NAMES:
        learner = make_learner(name, 5, 2, hidden=(8,))
        assert learner.model.context_dim == (10 if name in ("cadm", "pearl") else 8 if name == "multitask" else 0)
    assert make_learner("fomaml", 5, 2, hidden=(8,)).first_order and make_learner("metasgd", 5, 2, hidden=(8,)).meta_sgd
    assert make_learner("anil", 5, 2, hidden=(8, 8)).adapt_names == ["layers.2.weight", "layers.2.bias"]
    a, b = make_learner("pearl", 5, 2, hidden=(8,), seed=3), make_learner("pearl", 5, 2, hidden=(8,), seed=3)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    with pytest.raises(ValueError, match="name: expected one of maml"):
        make_learner("nope", 5, 2)
    with pytest.raises(ValueError, match="model: expected a network conditioned"):
        build_learner("cadm", small_model())
    for cls in (CaDM, PEARL, MultiTask):
        with pytest.raises(ValueError, match="context_dim=0"):
            cls(small_model())
    with pytest.raises(ValueError, match="inner_data"):
        Reptile(small_model(), inner_data="query")


def test_compare_learners_one_table_and_a_diverging_learner_keeps_its_row(pm_suite):
    from meta_mbrl.evaluation.learners import compare_learners

    buffer = meta_mbrl.collect(pm_suite, pm_suite.train_tasks[:6], episodes_per_task=2, seed=0, progress=False)

    def make(name):
        return make_learner(name, 4, 2, hidden=(16,), seed=0, **({"ensemble": 2} if name == "cadm" else {}))

    def train(learner):
        if isinstance(learner, Reptile):
            raise FloatingPointError("meta_loss: expected a finite loss, got inf at step 3; lower inner_lr")
        return meta_mbrl.meta_train(learner, buffer, steps=20, tasks_per_batch=4, support=8, query=8, log_every=10,
                                    progress=False)

    table, kshot = compare_learners(
        ["maml", "reptile", "cadm"], make, train, pm_suite, pm_suite.test_tasks[:2], buffer, ks=(4, 8),
        kshot_kwargs=dict(eval_episodes=1, oracle_transitions=200, oracle_steps=20, windows=2, eval_length=12,
                          horizon=4, scratch_steps=5),
        latency_k=8, progress=False, out=lambda s: None, heldout=("held", pm_suite, pm_suite.test_tasks[2:4]),
    )
    assert list(table["learner"]) == ["maml", "reptile", "cadm"]
    held = kshot[kshot["split"] == "held"]
    assert set(kshot["split"]) == {"test", "held"} and set(held["learner"]) == {"maml", "cadm"}
    assert set(held["task"]) == {t.id for t in pm_suite.test_tasks[2:4]}
    assert not set(held["task"]) & set(kshot[kshot["split"] == "test"]["task"])
    assert list(table["status"]) == ["ok", "diverged: meta_loss: expected a finite loss, got inf at step 3", "ok"]
    ok = table[table["status"] == "ok"]
    cols = ["dyn_mse@4", "reward_mse@8", "gap_dyn@8", "adapt_ms_1", "adapt_ms_64", "ratio_64_vs_1", "train_ms_per_step"]
    assert np.isfinite(ok[cols].to_numpy(float)).all()
    assert table.loc[1, cols].isna().all()
    assert set(kshot["learner"]) == {"maml", "cadm"} and set(kshot["k"]) == {4, 8}


@pytest.mark.parametrize("name", NAMES)
def test_agent_style_adapt_options_work_or_are_rejected_by_name(name):
    """What the agent and the CLI pass to any learner: ``adapt(context, steps=N)``; never a TypeError."""
    learner = tiny_learner(name)
    ctx = random_transitions(2, 8, seed=6)
    cls = type(learner)
    assert cls.ADAPT_OPTIONS == learner.ADAPT_OPTIONS
    if "steps" in cls.ADAPT_OPTIONS:
        assert learner.adapt(ctx, steps=2).num_tasks == 2
    else:
        with pytest.raises(ValueError, match=rf"^steps: {name} adapts in one forward pass"):
            learner.adapt(ctx, steps=2)
    with pytest.raises(ValueError, match=rf"^nope: not an adapt option of {name}; expected one of"):
        learner.adapt(ctx, nope=1)


def test_compare_learners_keeps_the_row_of_a_learner_whose_adapted_model_blows_up(pm_suite):
    from meta_mbrl.evaluation.learners import compare_learners
    from meta_mbrl.meta import MAML

    class Exploding(MAML):
        def adapt(self, context, **opts):
            raise ValueError("obs: the model's prediction is not finite for these finite inputs")

    buffer = meta_mbrl.collect(pm_suite, pm_suite.train_tasks[:4], episodes_per_task=1, seed=0, progress=False)

    def make(name):
        learner = make_learner("maml", 4, 2, hidden=(8,), seed=0)
        return Exploding(learner.model) if name == "reptile" else learner

    table, kshot = compare_learners(
        ["reptile", "maml"], make, lambda lr: meta_mbrl.meta_train(lr, buffer, steps=3, tasks_per_batch=2, support=4,
                                                                   query=4, progress=False),
        pm_suite, pm_suite.test_tasks[:1], buffer, ks=(4,),
        kshot_kwargs=dict(eval_episodes=1, oracle_transitions=100, oracle_steps=2, windows=1, eval_length=8, horizon=2,
                          scratch_steps=1),
        latency_k=4, progress=False, out=lambda s: None,
    )
    assert table.loc[0, "status"].startswith("failed in the few-shot benchmark: obs: the model's prediction")
    assert table.loc[1, "status"] == "ok" and set(kshot["learner"]) == {"maml"}
