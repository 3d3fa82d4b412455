"""MAML: meta-gradients against `higher`, adaptation properties, the analytic backward pass."""

import copy

import pytest
import torch
from conftest import random_transitions, small_model

from meta_mbrl import MAML, TaskBatch

higher = pytest.importorskip("higher")


def higher_meta_grads(model, batch, inner_lr, steps, first_order):
    """Reference meta-gradient computed by `higher`, one task at a time."""
    model = copy.deepcopy(model)
    model.zero_grad()
    opt = torch.optim.SGD(model.parameters(), lr=inner_lr)
    t = batch.support.obs.shape[0]
    for i in range(t):
        s, q = batch.support.index(i), batch.query.index(i)
        with higher.innerloop_ctx(model, opt, copy_initial_weights=False, track_higher_grads=not first_order) as (f, d):
            for _ in range(steps):
                d.step(model.loss_from_output(f(s.obs, s.act), model.targets(s)))
            ql = model.loss_from_output(f(q.obs, q.act), model.targets(q)) / t
            if first_order:  # FOMAML: the query gradient at the adapted weights is applied to the prior
                for p, g in zip(model.parameters(), torch.autograd.grad(ql, list(f.parameters()))):
                    p.grad = g if p.grad is None else p.grad + g
            else:
                ql.backward()
    return [p.grad.clone() for p in model.parameters()]


@pytest.mark.parametrize("backend", ["batched", "func"])
@pytest.mark.parametrize("first_order", [False, True])
@pytest.mark.parametrize("gaussian", [False, True])
def test_meta_gradient_matches_higher(backend, first_order, gaussian):
    torch.set_default_dtype(torch.float64)
    try:
        model = small_model(gaussian=gaussian)
        batch = TaskBatch(random_transitions(4, 8, dtype=torch.float64, seed=3),
                          random_transitions(4, 8, dtype=torch.float64, seed=4))
        learner = MAML(model, inner_lr=0.1, inner_steps=2, first_order=first_order, backend=backend)
        model.zero_grad()
        learner.meta_loss(batch)[0].backward()
        ours = [p.grad.clone() for p in model.parameters()]
        ref = higher_meta_grads(model, batch, 0.1, 2, first_order)
        for a, b in zip(ours, ref):
            torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
        # the second-order terms are really there: first- and second-order gradients differ
        if not first_order:
            fo = higher_meta_grads(model, batch, 0.1, 2, True)
            assert max((a - b).abs().max() for a, b in zip(ours, fo)) > 1e-4
    finally:
        torch.set_default_dtype(torch.float32)


def test_backends_agree_for_meta_sgd_and_anil():
    model = small_model()
    batch = TaskBatch(random_transitions(3, 8, seed=5), random_transitions(3, 8, seed=6))
    grads = []
    for backend in ("batched", "func"):
        learner = MAML(model, inner_lr=0.05, inner_steps=2, meta_sgd=True, backend=backend,
                       adapt_params=["layers.2.weight", "layers.2.bias"])
        learner.zero_grad()
        learner.meta_loss(batch)[0].backward()
        grads.append([p.grad.clone() for p in learner.parameters()])
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)
    assert all(g.abs().sum() > 0 for g in grads[0])  # learned inner lrs receive gradient too


def test_gradients_reach_every_prior_parameter():
    model = small_model()
    learner = MAML(model, inner_lr=0.05, inner_steps=1)
    batch = TaskBatch(random_transitions(4, 8, seed=1), random_transitions(4, 8, seed=2))
    learner.meta_loss(batch)[0].backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


@pytest.mark.parametrize("gaussian,activation,expanded", [
    (False, "silu", False), (True, "silu", False), (False, "relu", False), (False, "tanh", True), (True, "silu", True)])
def test_analytic_backward_matches_autograd(gaussian, activation, expanded):
    model = small_model(gaussian=gaussian, activation=activation)
    tr = random_transitions(3, 10, seed=7)
    params = {k: v.detach().expand(3, *v.shape).clone().requires_grad_() for k, v in model.param_dict().items()}
    if expanded:  # the stride-0 fast path that shares one GEMM across tasks
        params = {k: v.detach().clone().requires_grad_() for k, v in model.param_dict().items()}
        params_b = {k: v.expand(3, *v.shape) for k, v in params.items()}
        loss, grads = model.loss_grad(params_b, tr, return_loss=True)
        for i in range(3):  # reference: plain autograd, one task at a time
            ref_loss = model.task_loss(params, tr.index(i))
            ref = torch.autograd.grad(ref_loss, list(params.values()))
            torch.testing.assert_close(loss[i], ref_loss.detach())
            for k, r in zip(params, ref):
                torch.testing.assert_close(grads[k][i], r, atol=1e-6, rtol=1e-5, msg=k)
        return
    loss, grads = model.loss_grad(params, tr, return_loss=True)
    ref_loss = model.task_loss(params, tr)
    ref = torch.autograd.grad(ref_loss.sum(), list(params.values()))
    torch.testing.assert_close(loss, ref_loss.detach())
    for k, r in zip(params, ref):
        torch.testing.assert_close(grads[k], r, atol=1e-6, rtol=1e-5, msg=k)


def test_adapt_lowers_support_loss_and_keeps_prior():
    model = small_model()
    learner = MAML(model, inner_lr=0.2, inner_steps=10)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    ctx = random_transitions(32, seed=9)
    adapted = learner.adapt(ctx)
    prior_loss = model.task_loss(model.param_dict(), ctx)
    adapted_loss = model.task_loss(adapted.params, ctx)
    assert adapted_loss < prior_loss * 0.9
    losses = [model.task_loss(learner.adapt(ctx, steps=s).params, ctx).item() for s in range(4)]
    assert all(b < a for a, b in zip(losses, losses[1:])), losses
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), f"adapt mutated the prior's {k}"


def test_batched_adapt_equals_per_task_adapt():
    model = small_model()
    learner = MAML(model, inner_lr=0.05, inner_steps=2)
    ctx = random_transitions(4, 16, seed=11)
    batched = learner.adapt(ctx)
    assert batched.num_tasks == 4
    obs, act = torch.randn(4, 6, 5), torch.randn(4, 6, 2)
    pred = batched.predict(obs, act)
    for i in range(4):
        single = learner.adapt(ctx.index(i)).predict(obs[i], act[i])
        torch.testing.assert_close(pred.next_obs[i], single.next_obs, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(batched[i].predict(obs[i], act[i]).reward, single.reward, atol=1e-5, rtol=1e-5)


def test_adapt_zero_steps_is_prior_and_overrides_apply():
    model = small_model()
    learner = MAML(model, inner_lr=0.05, inner_steps=1)
    ctx = random_transitions(8, seed=2)
    obs, act = torch.randn(3, 5), torch.randn(3, 2)
    torch.testing.assert_close(learner.adapt(ctx, steps=0).predict(obs, act).next_obs, model.predict(obs, act).next_obs)
    other = MAML(model, inner_lr=0.2, inner_steps=3)
    a1 = learner.adapt(ctx, steps=3, lr=0.2).predict(obs, act).next_obs
    torch.testing.assert_close(a1, other.adapt(ctx).predict(obs, act).next_obs)
    with pytest.raises(ValueError, match=r"^lr: expected a finite number in \(0\.0, 10000\.0\], got 0\.0"):
        learner.adapt(ctx, lr=0.0)  # a zero step size is steps=0 in disguise: rejected like any non-positive lr


def test_meta_training_step_improves_post_adaptation_loss():
    model = small_model(hidden=(32, 32))
    learner = MAML(model, inner_lr=0.05, inner_steps=1)
    batch = TaskBatch(random_transitions(4, 16, seed=1), random_transitions(4, 16, seed=2))
    opt = torch.optim.Adam(learner.parameters(), lr=1e-3)
    first = learner.meta_loss(batch)[0].item()
    for _ in range(50):
        opt.zero_grad()
        learner.meta_loss(batch)[0].backward()
        opt.step()
    assert learner.meta_loss(batch)[0].item() < first


def test_constructor_rejects_bad_arguments():
    model = small_model()
    with pytest.raises(ValueError, match="backend"):
        MAML(model, backend="jax")
    with pytest.raises(ValueError, match="adapt_params"):
        MAML(model, adapt_params=["nope"])
    with pytest.raises(ValueError, match="inner_steps"):
        MAML(model, inner_steps=-1)


def test_constructor_rejects_bad_learning_rates_and_step_counts():
    model = small_model()
    for bad in (float("nan"), float("inf"), 0.0, -0.01, 1e30, True):
        with pytest.raises(ValueError, match=r"^inner_lr: expected a finite number in \(0\.0, 10000\.0\]"):
            MAML(model, inner_lr=bad)
    for bad in (1.5, True, "2", -1):
        with pytest.raises(ValueError, match=r"^inner_steps: expected an integer >= 0"):
            MAML(model, inner_steps=bad)
    with pytest.raises(ValueError, match=r"^first_order: expected True or False, got 'no'"):
        MAML(model, first_order="no")
    with pytest.raises(ValueError, match=r"^adapt_params: expected a list of parameter names"):
        MAML(model, adapt_params="layers.0.weight")
