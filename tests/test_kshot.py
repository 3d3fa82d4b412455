"""The honest few-shot benchmark: naive baselines, the guarded gap, intervals, the contact split, long contexts;
and ALPaCA, whose closed-form adaptation must improve with context."""

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import random_transitions, small_model

import meta_mbrl
from meta_mbrl import TaskBatch, Transitions, as_tensor_transitions
from meta_mbrl.data import TaskBuffer
from meta_mbrl.data.contact import object_moved
from meta_mbrl.evaluation import kshot_benchmark, summarize_kshot
from meta_mbrl.evaluation.baselines import ContextMean, Persistence, Ridge
from meta_mbrl.evaluation.kshot import KShotData, _windows, reference_network
from meta_mbrl.evaluation.kshot_stats import guarded_gap, kshot_table, paired_ratio
from meta_mbrl.meta import ALPaCA, make_learner

pytestmark = pytest.mark.usefixtures("one_thread")


# ---------------------------------------------------------------------------- naive baselines
def test_persistence_and_context_mean_predict_by_hand():
    ctx = Transitions(torch.zeros(2, 3, 2), torch.zeros(2, 3, 1), torch.tensor([[1., 2., 3.], [4., 6., 8.]]),
                      torch.tensor([[[1., 0.], [2., 0.], [3., 0.]], [[0., 0.], [0., 0.], [0., 3.]]]))
    obs, act = torch.full((2, 4, 2), 5.0), torch.zeros(2, 4, 1)
    p = Persistence(ctx).predict(obs, act)
    assert torch.equal(p.next_obs, obs) and p.reward[0].tolist() == [3.0] * 4 and p.reward[1].tolist() == [8.0] * 4
    c = ContextMean(ctx).predict(obs, act)
    assert c.next_obs[0, 0].tolist() == [7.0, 5.0] and c.next_obs[1, 3].tolist() == [5.0, 6.0]
    assert c.reward[0].tolist() == [2.0] * 4 and c.reward[1].tolist() == [6.0] * 4


def test_ridge_recovers_a_linear_task_and_picks_a_strong_penalty_for_noise():
    net = small_model(obs_dim=3, act_dim=2)
    g = torch.Generator().manual_seed(0)
    obs, act = torch.randn(2, 200, 3, generator=g), torch.randn(2, 200, 2, generator=g)
    a = torch.randn(3, 3, generator=g) * 0.1
    nxt = obs + obs @ a + 0.3 * act[..., :1]
    rew = obs[..., 1] - act[..., 0]
    noise = torch.randn(2, 200, generator=g)
    rew_noisy = torch.stack([rew[0], noise[1]])                 # task 1: pure noise reward
    r = Ridge(Transitions(obs[:, :150], act[:, :150], rew_noisy[:, :150], nxt[:, :150]), net)
    p = r.predict(obs[:, 150:], act[:, 150:])
    assert torch.allclose(p.next_obs, nxt[:, 150:], atol=1e-3)
    assert torch.allclose(p.reward[0], rew[0, 150:], atol=1e-3)
    # on noise the LOO choice shrinks to (about) the mean: no worse than predicting the context mean
    assert ((p.reward[1] - noise[1, 150:]) ** 2).mean() <= ((noise[1, :150].mean() - noise[1, 150:]) ** 2).mean() * 1.1


# ---------------------------------------------------------------------------- guarded gap and intervals
def _rows(spec, windows=4, metric="dyn_mse", k=8, noise=0.0, seed=0):
    rng = np.random.default_rng(seed)
    return pd.DataFrame([{"task": t, "window": w, "k": k, "method": m, metric: v + noise * rng.normal()}
                         for t, vals in spec.items() for m, v in zip(("prior", "adapted", "oracle"), vals)
                         for w in range(windows)])


def test_guarded_gap_leaves_out_tasks_where_the_oracle_does_not_beat_the_prior():
    # task "worse-oracle": adapted improves on the prior by 12%, but the oracle is worse than the prior:
    # unguarded, (1 - 0.88) / (1 - 1.19) = -0.63 would be averaged in
    df = _rows({"a": (1.0, 0.4, 0.2), "b": (2.0, 1.0, 0.0), "worse-oracle": (1.0, 0.88, 1.19),
                "tie": (1.0, 0.9, 0.98)})
    g = guarded_gap(df)
    assert g.loc[8, "gap"] == pytest.approx((0.75 + 0.5) / 2)
    assert g.loc[8, "tasks"] == 2 and g.loc[8, "excluded"] == 2
    assert "worse-oracle (oracle error +19% vs prior)" in g.loc[8, "excluded_tasks"] and "tie" in g.loc[8, "excluded_tasks"]
    wide = summarize_kshot(df)[1]
    assert np.isnan(wide.loc["worse-oracle", 8]) and wide.loc["mean", 8] == pytest.approx(0.625)
    # no task qualifies: NaN, not a number made up from the others
    none = guarded_gap(_rows({"x": (1.0, 0.5, 1.0)}))
    assert np.isnan(none.loc[8, "gap"]) and none.loc[8, "tasks"] == 0


def test_intervals_cover_the_mean_and_narrow_with_more_windows():
    wide = guarded_gap(_rows({f"t{i}": (1.0, 0.5, 0.0) for i in range(6)}, windows=4, noise=0.1))
    narrow = guarded_gap(_rows({f"t{i}": (1.0, 0.5, 0.0) for i in range(6)}, windows=64, noise=0.1))
    for g in (wide, narrow):
        assert g.loc[8, "gap_lo"] <= g.loc[8, "gap"] <= g.loc[8, "gap_hi"]
    assert narrow.loc[8, "gap_hi"] - narrow.loc[8, "gap_lo"] < wide.loc[8, "gap_hi"] - wide.loc[8, "gap_lo"]
    t = kshot_table(_rows({f"t{i}": (1.0, 0.5, 0.0) for i in range(6)}, windows=16, noise=0.1), ["dyn_mse"])
    assert (t.dyn_mse_lo <= t.dyn_mse).all() and (t.dyn_mse <= t.dyn_mse_hi).all()
    assert t.loc[(8, "adapted"), "dyn_mse_hi"] < t.loc[(8, "prior"), "dyn_mse_lo"]   # 0.5 vs 1.0 with small noise


def test_moved_errors_pool_over_the_transitions_that_move_an_object():
    # window 0 holds 1 moved transition with error 4, window 1 holds 3 with error 0: pooled 1.0, not (4 + 0) / 2
    df = pd.DataFrame({"task": "a", "window": [0, 1], "k": 8, "method": "adapted", "dyn_mse": [1.0, 1.0],
                       "dyn_mse_moved": [4.0, 0.0], "dyn_mse_still": [0.0, np.nan], "n_moved": [1, 3],
                       "eval_length": 3})
    t = kshot_table(df, ["dyn_mse_moved", "dyn_mse_still"])
    assert t.loc[(8, "adapted"), "dyn_mse_moved"] == pytest.approx(1.0)
    assert t.loc[(8, "adapted"), "dyn_mse_still"] == pytest.approx(0.0)
    assert t.loc[(8, "adapted"), "moved_frac"] == pytest.approx(4 / 6)


def test_paired_ratio_sees_a_uniform_improvement_that_separate_intervals_hide():
    rng = np.random.default_rng(0)
    scale = {f"t{i}": 10.0 ** i for i in range(5)}           # tasks whose errors differ by orders of magnitude
    rows = [{"task": t, "window": w, "k": 8, "method": m, "dyn_mse": s * (0.9 if m == "a" else 1.0) * rng.uniform(0.95, 1.05)}
            for t, s in scale.items() for w in range(8) for m in ("a", "b")]
    df = pd.DataFrame(rows)
    t = kshot_table(df, ["dyn_mse"])
    assert t.loc[(8, "a"), "dyn_mse_hi"] > t.loc[(8, "b"), "dyn_mse_lo"]     # the separate intervals overlap
    r = paired_ratio(df, "a", "b")
    assert r.loc[8, "ratio_lo"] <= r.loc[8, "ratio"] <= r.loc[8, "ratio_hi"] < 1.0
    assert r.loc[8, "ratio"] == pytest.approx(0.9, abs=0.03)
    with pytest.raises(ValueError, match="method"):
        paired_ratio(df, "a", "nope")


# ---------------------------------------------------------------------------- windows and the contact split
def test_windows_allow_contexts_across_episodes_but_keep_evaluation_in_one():
    owner = np.repeat([0, 1], 50)                                  # two 50-step episodes
    pts = _windows(owner, kmax=60, length=10, num=100, rng=np.random.default_rng(0))
    assert pts.min() >= 60 and (owner[pts] == owner[pts + 9]).all() and pts.max() <= 90
    with pytest.raises(ValueError, match="kshot.eval_episodes"):
        _windows(owner, kmax=95, length=10, num=4, rng=np.random.default_rng(0))


def _object_suite_data(pm_suite, moving_every=4):
    """Evaluation data on point-mass where dims 0:2 (the position) play an 'object' that moves in every
    ``moving_every``-th transition only, so the split is known exactly."""
    buf = TaskBuffer(4, 2)
    rng = np.random.default_rng(0)
    for task in pm_suite.test_tasks[:2]:
        for _ in range(2):
            obs = rng.normal(size=(60, 4)).astype(np.float32)
            nxt = obs.copy()
            nxt[::moving_every, :2] += 0.5
            buf.add_trajectory(task.id, obs, rng.uniform(-1, 1, (60, 2)).astype(np.float32),
                               rng.normal(size=60).astype(np.float32), nxt)
    return buf


def test_benchmark_rows_hold_baselines_long_contexts_and_the_contact_split(pm_suite):
    learner = make_learner("alpaca", 4, 2, hidden=(16,), seed=0)
    buf = _object_suite_data(pm_suite)
    tr = as_tensor_transitions(buf.transitions())
    learner.model.fit_normalizers(tr)
    ref = reference_network(learner.model)
    tasks = pm_suite.test_tasks[:2]
    oracle = meta_mbrl.evaluation.fit_models(ref, [as_tensor_transitions(buf.transitions([t.id])) for t in tasks],
                                             steps=5, batch_size=32)
    data = KShotData(tasks, buf, ref, oracle, {"eval_policy": "hand-made", "object_slices": [[0, 2]]})
    df, _ = kshot_benchmark(learner, ks=(8, 64), windows=3, eval_length=8, horizon=4, scratch_steps=2, data=data,
                            progress=False)
    assert set(df.method) == {"prior", "adapted", "scratch", "oracle", "persistence", "context_mean", "ridge"}
    assert len(df) == 2 * 3 * 7 * 2 and set(df.k) == {8, 64}            # tasks x windows x methods x K
    assert (df.n_moved == 2).all()                                     # 8 steps, every 4th moves (stream offset 60 = 0 mod 4)
    # persistence predicts no motion: zero error on still transitions, all of its error on moved ones
    pers = df[df.method == "persistence"]
    assert np.allclose(pers.dyn_mse_still, 0) and (pers.dyn_mse_moved > 0).all()
    assert np.allclose(pers.dyn_mse, pers.dyn_mse_moved * 2 / 8)
    # the same windows for every K: the prior's rows do not depend on K
    prior = df[df.method == "prior"].pivot_table(index=["task", "window"], columns="k", values="dyn_mse")
    assert np.allclose(prior[8], prior[64])
    # a second learner on the same data reuses the learner-independent fits, with the same rows
    calls = []
    real_fit = meta_mbrl.evaluation.kshot.fit_models
    meta_mbrl.evaluation.kshot.fit_models = lambda *a, **k: calls.append(1) or real_fit(*a, **k)
    try:
        again, _ = kshot_benchmark(learner, ks=(8, 64), windows=3, eval_length=8, horizon=4, scratch_steps=2, data=data,
                                   progress=False)
    finally:
        meta_mbrl.evaluation.kshot.fit_models = real_fit
    assert not calls and again.equals(df)
    # a suite without objects gets no split columns
    data.info["object_slices"] = []
    df2, _ = kshot_benchmark(learner, ks=(8,), windows=2, eval_length=8, horizon=4, scratch_steps=2, data=data,
                             progress=False, baselines=False)
    assert "dyn_mse_moved" not in df2.columns and set(df2.method) == {"prior", "adapted", "scratch", "oracle"}


def test_object_moved_on_tensors_and_bad_input():
    obs = torch.zeros(2, 5, 6)
    nxt = obs.clone()
    nxt[1, 2, 3] = 0.01
    m = object_moved(obs, nxt, [(0, 3), (3, 6)])
    assert m.dtype == torch.bool and m.sum() == 1 and bool(m[1, 2])
    with pytest.raises(ValueError, match="object_slices"):
        object_moved(obs, nxt, [(4, 9)])
    with pytest.raises(ValueError, match="next_obs"):
        object_moved(obs, nxt[:, :3], [(0, 3)])


# ---------------------------------------------------------------------------- ALPaCA
def _linear_tasks(num_tasks, n, seed=0, noise=0.05):
    """Tasks whose Δobs and reward are linear in [obs, act] with task-specific weights."""
    g = torch.Generator().manual_seed(seed)
    obs, act = torch.randn(num_tasks, n, 3, generator=g), torch.randn(num_tasks, n, 2, generator=g)
    w = torch.randn(num_tasks, 5, 4, generator=g)
    out = torch.cat([obs, act], -1) @ w + noise * torch.randn(num_tasks, n, 4, generator=g)
    return Transitions(obs, act, out[..., 3], obs + out[..., :3])


def test_alpaca_error_falls_with_k_and_beats_the_prior():
    learner = make_learner("alpaca", 3, 2, hidden=(32,), seed=0)
    learner.model.fit_normalizers(_linear_tasks(20, 100, seed=1))
    tasks = _linear_tasks(6, 600, seed=2)
    query = tasks.index((slice(None), slice(500, 600)))
    errs = []
    for k in (4, 16, 64, 256):
        am = learner.adapt(tasks.index((slice(None), slice(0, k))))
        with torch.no_grad():
            errs.append(float(learner.model.task_loss(am.params, query).mean()))
    with torch.no_grad():
        prior = float(learner.model.task_loss(learner.prior(6).params, query).mean())
    assert errs == sorted(errs, reverse=True) and errs[-1] < 0.5 * prior, (errs, prior)


def test_alpaca_meta_gradient_reaches_features_prior_head_and_precision():
    learner = make_learner("alpaca", 5, 2, hidden=(16, 16), seed=0)
    learner.model.fit_normalizers(random_transitions(200, seed=1))
    batch = TaskBatch(random_transitions(3, 8, seed=2), random_transitions(3, 8, seed=3))
    before = {k: v.clone() for k, v in learner.state_dict().items()}
    learner.adapt(batch.support)
    assert all(torch.equal(before[k], v) for k, v in learner.state_dict().items())   # adapt never mutates the prior
    loss, info = learner.meta_loss(batch)
    loss.backward()
    for name in ("model.layers.0.weight", "model.layers.2.weight", "precision_diag", "precision_tril"):
        g = dict(learner.named_parameters())[name].grad
        assert g is not None and float(g.abs().sum()) > 0, name
    assert set(info) == {"query_loss", "query_loss_pre", "support_loss_pre"}


def test_alpaca_posterior_matches_the_closed_form_by_hand():
    torch.manual_seed(0)
    learner = ALPaCA(small_model(obs_dim=3, act_dim=1, hidden=(4,)), prior_precision=2.0)
    ctx = random_transitions(10, obs_dim=3, act_dim=1, seed=4)
    am = learner.adapt(ctx)
    m = learner.model
    params = m.param_dict()
    phi = torch.cat([m.features_params(params, ctx.obs, ctx.act), torch.ones(10, 1)], -1)
    w0 = torch.cat([params["layers.1.weight"], params["layers.1.bias"][:, None]], -1).T
    lam = 2.0 * torch.eye(5)
    post = torch.linalg.solve(phi.T @ phi + lam, phi.T @ m.targets(ctx) + lam @ w0).T
    assert torch.allclose(am.params["layers.1.weight"], post[:, :4], atol=1e-4)
    assert torch.allclose(am.params["layers.1.bias"], post[:, 4], atol=1e-4)
    with pytest.raises(ValueError, match="prior_precision"):
        ALPaCA(small_model(), prior_precision=0.0)
    with pytest.raises(ValueError, match="model: expected an unconditioned"):
        ALPaCA(small_model(context_dim=2))


def test_meta_train_draws_support_lengths_up_to_support_max(pm_suite):
    buf = meta_mbrl.collect(pm_suite, pm_suite.train_tasks[:4], episodes_per_task=1, seed=0, progress=False)
    seen = []

    class Spy(ALPaCA):
        def meta_loss(self, batch):
            seen.append(batch.support.obs.shape[1])
            return super().meta_loss(batch)

    learner = Spy(small_model(obs_dim=4, act_dim=2))
    meta_mbrl.meta_train(learner, buf, steps=40, tasks_per_batch=2, support=4, support_max=30, query=8, progress=False)
    assert min(seen) >= 4 and max(seen) <= 30 and len(set(seen)) > 5
    with pytest.raises(ValueError, match="support_max"):
        meta_mbrl.meta_train(learner, buf, steps=1, support_max=-1, progress=False)


def test_alpaca_with_a_linear_skip_solves_linear_tasks_from_context_like_ridge():
    learner = make_learner("alpaca", 3, 2, hidden=(16,), seed=0)
    assert learner.model.skip_inputs == 5 and learner.precision().shape == (16 + 5 + 1,) * 2
    learner.model.fit_normalizers(_linear_tasks(20, 100, seed=1, noise=0.0))
    tasks = _linear_tasks(4, 400, seed=3, noise=0.0)
    ctx, query = tasks.index((slice(None), slice(0, 256))), tasks.index((slice(None), slice(300, 400)))
    with torch.no_grad():
        err = float(learner.model.task_loss(learner.adapt(ctx).params, query).mean())
        prior = float(learner.model.task_loss(learner.prior(4).params, query).mean())
    assert err < 1e-3 * prior, (err, prior)
    # the closed form by hand, features [hidden, normalized inputs, 1]
    m = learner.model
    one = ctx.index(0)
    p = m.param_dict()
    phi = torch.cat([m.features_params(p, one.obs, one.act), m._inputs(one.obs, one.act), torch.ones(256, 1)], -1)
    w0 = torch.cat([p["layers.1.weight"], p["skip.weight"], p["layers.1.bias"][:, None]], -1).T
    lam = learner.precision().detach()
    post = torch.linalg.solve(phi.T @ phi + lam, phi.T @ m.targets(one) + lam @ w0).T
    am = learner.adapt(one)
    assert torch.allclose(am.params["skip.weight"], post[:, 16:21], atol=1e-3)
    assert torch.allclose(am.params["layers.1.bias"], post[:, 21], atol=1e-3)
    with pytest.raises(ValueError, match="analytic gradients"):
        m.loss_grad(p, one)


def test_alpaca_recency_weighting_matches_the_weighted_closed_form_and_learns_its_half_life():
    torch.manual_seed(0)
    learner = ALPaCA(small_model(obs_dim=3, act_dim=1, hidden=(4,)), prior_precision=2.0, half_life=3.0)
    ctx = random_transitions(10, obs_dim=3, act_dim=1, seed=4)
    m, params = learner.model, learner.model.param_dict()
    w = 0.5 ** (torch.arange(9, -1, -1.0) / 3.0)                        # the newest (last) transition weighs 1
    assert torch.allclose(learner.recency(10), w)
    phi = torch.cat([m.features_params(params, ctx.obs, ctx.act), torch.ones(10, 1)], -1)
    w0 = torch.cat([params["layers.1.weight"], params["layers.1.bias"][:, None]], -1).T
    lam = 2.0 * torch.eye(5)
    post = torch.linalg.solve(phi.T @ (w[:, None] * phi) + lam, phi.T @ (w[:, None] * m.targets(ctx)) + lam @ w0).T
    assert torch.allclose(learner.adapt(ctx).params["layers.1.weight"], post[:, :4], atol=1e-4)
    # order matters with recency weighting, not without
    rev = Transitions(*(x.flip(0) for x in ctx))
    assert not torch.allclose(learner.adapt(rev).params["layers.1.bias"], learner.adapt(ctx).params["layers.1.bias"])
    plain = ALPaCA(small_model(obs_dim=3, act_dim=1, hidden=(4,)))
    assert torch.allclose(plain.adapt(rev).params["layers.1.bias"], plain.adapt(ctx).params["layers.1.bias"], atol=1e-5)
    loss, _ = learner.meta_loss(TaskBatch(random_transitions(2, 6, obs_dim=3, act_dim=1, seed=5),
                                          random_transitions(2, 6, obs_dim=3, act_dim=1, seed=6)))
    loss.backward()
    assert learner.log_half_life.grad is not None and float(learner.log_half_life.grad.abs()) > 0
    assert learner.init_kwargs() == {"prior_precision": 2.0, "half_life": 3.0}
