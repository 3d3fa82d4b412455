"""Planning: planners find known optima inside the bounds, imagined returns equal hand-computed
rollouts, task-batched adapted models plan per env, and MPC with true dynamics reaches point-mass goals."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import small_model

import task_suites
from meta_mbrl.adaptation import AdaptedModel
from meta_mbrl.models import DynamicsMLP, FunctionModel
from meta_mbrl.planning import CEM, MPPI, MPCController, RandomShooting, imagine, make_objective

LOW, HIGH = -np.ones(2, np.float32), np.ones(2, np.float32)


def quadratic(target: torch.Tensor):
    """``-(a - a*)^2`` summed over steps and action dims; ``target (H, A)`` or per env ``(B, H, A)``."""
    t = target if target.dim() == 2 else target[:, None]
    return lambda a: -(a - t).square().sum((-2, -1))


# (maker, tolerance at an interior optimum, tolerance at an optimum on the bounds); random shooting plans
# over a shorter horizon (fewer dims), since the best of uniform samples is only roughly optimal.
# Worst errors over 8 seeds: cem 0.008 / 0.015, mppi 0.034 / 0.043, rs 0.19 (interior).
PLANNERS = {
    "cem": (lambda h, **kw: CEM(LOW, HIGH, h, iterations=10, **kw), 0.03, 0.03),
    "mppi": (lambda h, **kw: MPPI(LOW, HIGH, h, iterations=10, **kw), 0.05, 0.07),
    "rs": (lambda h, **kw: RandomShooting(LOW, HIGH, h, population=4000, **kw), 0.25, 0.15),
}


@pytest.mark.parametrize("name", PLANNERS)
def test_planner_finds_quadratic_optimum(name):
    make, tol, _ = PLANNERS[name]
    h = 2 if name == "rs" else 5
    g = torch.Generator().manual_seed(1)
    target = torch.rand(h, 2, generator=g) * 1.6 - 0.8
    plan = make(h, seed=0).plan(quadratic(target))
    assert plan.shape == (h, 2)
    assert (plan - target).abs().max() < tol


@pytest.mark.parametrize("name", PLANNERS)
def test_planner_batched_different_optima(name):
    make, tol, _ = PLANNERS[name]
    h = 2 if name == "rs" else 5
    g = torch.Generator().manual_seed(2)
    target = torch.rand(3, h, 2, generator=g) * 1.6 - 0.8
    calls = []

    def objective(a):
        calls.append(tuple(a.shape))
        return quadratic(target)(a)

    planner = make(h, seed=0)
    plan = planner.plan(objective, planner.initial_mean(3))
    assert plan.shape == (3, h, 2)
    assert all(len(c) == 4 and c[0] == 3 for c in calls)  # one call plans all envs
    assert (plan - target).abs().amax(dim=(1, 2)).max() < tol


@pytest.mark.parametrize("name", PLANNERS)
def test_planner_respects_bounds(name):
    make, _, tol = PLANNERS[name]
    target = torch.tensor([[1.5, -3.0], [-1.2, 2.0], [0.5, 0.0]])  # partly outside [-1, 1]
    h = 1 if name == "rs" else 3  # both dims of step 0 sit on a corner of the box
    target = target[:h]
    seen = []

    def objective(a):
        seen.append((a.min().item(), a.max().item()))
        return quadratic(target)(a)

    plan = make(h, seed=0).plan(objective)
    assert min(s[0] for s in seen) >= -1.0 and max(s[1] for s in seen) <= 1.0
    assert plan.min() >= -1.0 and plan.max() <= 1.0
    assert (plan - target.clamp(-1, 1)).abs().max() < tol


def test_planners_deterministic_with_seed_and_init_mean_none_is_mid_range():
    target = torch.full((4, 2), 0.3)
    a = CEM(LOW, HIGH, 4, population=64, seed=3).plan(quadratic(target))
    b = CEM(LOW, HIGH, 4, population=64, seed=3).plan(quadratic(target))
    assert torch.equal(a, b)
    planner = CEM(np.array([0.0, -2.0]), np.array([2.0, 0.0]), 4)
    assert torch.equal(planner.initial_mean(), torch.tensor([[1.0, -1.0]] * 4))


# ---------------------------------------------------------------- imagine
def linear_toy(obs_dim=3, act_dim=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    a_mat = torch.eye(obs_dim, dtype=torch.float64) + 0.1 * torch.randn(obs_dim, obs_dim, generator=g, dtype=torch.float64)
    b_mat = torch.randn(obs_dim, act_dim, generator=g, dtype=torch.float64)

    def fn(obs, act):
        nxt = obs @ a_mat.T + act @ b_mat.T
        return nxt, -nxt.square().sum(-1)

    return FunctionModel(fn, obs_dim, act_dim), a_mat, b_mat


def hand_return(a_mat, b_mat, obs, seq, discount):
    o, ret = obs.clone(), 0.0
    for h in range(seq.shape[0]):
        o = a_mat @ o + b_mat @ seq[h]
        ret += discount**h * -float((o**2).sum())
    return ret


@pytest.mark.parametrize("discount", [1.0, 0.9])
def test_imagine_equals_hand_rollout(discount):
    model, a_mat, b_mat = linear_toy()
    g = torch.Generator().manual_seed(0)
    obs = torch.randn(3, generator=g, dtype=torch.float64)
    acts = torch.randn(6, 4, 2, generator=g, dtype=torch.float64)
    ret = imagine(model, obs, acts, discount=discount)
    assert ret.shape == (6,)
    want = torch.tensor([hand_return(a_mat, b_mat, obs, acts[n], discount) for n in range(6)], dtype=torch.float64)
    torch.testing.assert_close(ret, want)

    obs_b = torch.randn(2, 3, generator=g, dtype=torch.float64)
    acts_b = torch.randn(2, 5, 4, 2, generator=g, dtype=torch.float64)
    ret_b = imagine(model, obs_b, acts_b, discount=discount)
    assert ret_b.shape == (2, 5)
    want_b = torch.tensor([[hand_return(a_mat, b_mat, obs_b[b], acts_b[b, n], discount) for n in range(5)] for b in range(2)],
                          dtype=torch.float64)
    torch.testing.assert_close(ret_b, want_b)
    torch.testing.assert_close(make_objective(model, obs_b, discount)(acts_b), want_b)
    torch.testing.assert_close(imagine(model, obs_b, acts_b, discount=discount, max_rows=4), want_b)  # chunks of 2 candidates


def test_imagine_gaussian_model_uses_mean():
    m = small_model(gaussian=True)
    obs, acts = torch.randn(5), torch.randn(4, 3, 2)
    r1, r2 = imagine(m, obs, acts), imagine(m, obs, acts)
    assert torch.equal(r1, r2)


def test_imagine_batched_adapted_model_matches_per_env_models():
    b = 3
    m = small_model()
    g = torch.Generator().manual_seed(0)
    params = {k: v.detach().expand(b, *v.shape) + 0.1 * torch.randn(b, *v.shape, generator=g) for k, v in m.named_parameters()}
    am = AdaptedModel(m, params, num_tasks=b)
    obs, acts = torch.randn(b, 5, generator=g), torch.randn(b, 7, 4, 2, generator=g)
    ret = imagine(am, obs, acts, discount=0.95)
    assert ret.shape == (b, 7)
    for i in range(b):
        torch.testing.assert_close(ret[i], imagine(am[i], obs[i], acts[i], discount=0.95), rtol=1e-5, atol=1e-5)
    # the expanded prior (same params for every env) equals the plain model
    same = AdaptedModel(m, {k: v.detach().expand(b, *v.shape) for k, v in m.named_parameters()}, num_tasks=b)
    for i in range(b):
        torch.testing.assert_close(imagine(same, obs, acts)[i], imagine(m, obs[i], acts[i]), rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------- MPC on the point mass with true dynamics
def point_mass_model(tasks) -> FunctionModel:
    """The point-mass dynamics of ``task_suites/point_mass.py`` in torch, one parameter set per env."""
    p = torch.tensor([[t.payload["mass"], t.payload["damping"], *t.payload["goal"]] for t in tasks], dtype=torch.float32)

    def fn(obs, act):  # obs (B, ..., 4), act (B, ..., 2)
        q = p.view(p.shape[0], *([1] * (obs.dim() - 2)), 4)
        act = act.clamp(-1, 1)
        pos, vel = obs[..., :2], obs[..., 2:]
        vel = vel + 0.1 * (act / q[..., 0:1] - q[..., 1:2] * vel)
        pos = (pos + 0.1 * vel).clamp(-2, 2)
        reward = -(pos - q[..., 2:4]).norm(dim=-1) - 0.01 * act.square().sum(-1)
        return torch.cat([pos, vel], -1), reward

    return FunctionModel(fn, 4, 2)


def run_episode(suite, tasks, policy):
    env = suite.make_vec_env(tasks, seed=0)
    obs, _ = env.reset(seed=0)
    for _ in range(suite.max_episode_steps):
        obs, _, _, trunc, info = env.step(policy(obs))
    assert trunc.all()
    goals = np.array([t.payload["goal"] for t in tasks])
    return np.linalg.norm(info["final_obs"][:, :2] - goals, axis=-1)


def test_mpc_with_true_dynamics_reaches_point_mass_goals():
    suite = task_suites.make("point-mass", seed=0)
    tasks = [suite.test_tasks[i] for i in (0, 1, 2, 5)]  # goals 0.9 to 1.4 from the start
    model = point_mass_model(tasks)
    mpc = MPCController(CEM(suite.action_low, suite.action_high, horizon=15, population=100, iterations=3, seed=0), num_envs=4)
    dist = run_episode(suite, tasks, lambda o: mpc.act(o, model))
    rng = np.random.default_rng(0)
    rand = run_episode(suite, tasks, lambda o: rng.uniform(-1, 1, size=(4, 2)).astype(np.float32))
    assert (dist < 0.15).all(), dist
    assert dist.mean() < 0.25 * rand.mean(), (dist, rand)


# ---------------------------------------------------------------- MPC state: warm start, reset, replan
class Recorder:
    """A planner wrapper that records each ``init_mean`` and counts calls."""

    def __init__(self, planner):
        self.planner, self.inits = planner, []
        self.horizon, self.action_low, self.action_high = planner.horizon, planner.action_low, planner.action_high

    def plan(self, objective, init_mean):
        self.inits.append(init_mean.clone())
        return self.planner.plan(objective, init_mean)


def toy_model():
    return FunctionModel(lambda o, a: (o + 0.1 * a, -(o - 0.5).square().sum(-1)), obs_dim=2, act_dim=2)


def test_mpc_warm_start_shifts_plan_and_reset_masks():
    rec = Recorder(CEM(LOW, HIGH, 4, population=32, iterations=2, seed=0))
    mpc = MPCController(rec, num_envs=3)
    obs = np.zeros((3, 2))
    assert mpc.last_plan is None
    a0 = mpc.act(obs, toy_model())
    assert a0.shape == (3, 2) and a0.dtype == np.float32
    assert torch.equal(rec.inits[0], torch.zeros(3, 4, 2))
    plan0 = mpc.last_plan.clone()
    np.testing.assert_allclose(a0, plan0[:, 0].numpy())
    mpc.act(obs, toy_model())
    torch.testing.assert_close(rec.inits[1][:, :-1], plan0[:, 1:])
    assert torch.equal(rec.inits[1][:, -1], torch.zeros(3, 2))  # mid-range fill
    plan1 = mpc.last_plan.clone()
    mpc.reset(np.array([False, True, False]))
    mpc.act(obs, toy_model())
    torch.testing.assert_close(rec.inits[2][[0, 2], :-1], plan1[[0, 2], 1:])
    assert torch.equal(rec.inits[2][1], torch.zeros(4, 2))
    mpc.reset()
    mpc.act(obs, toy_model())
    assert torch.equal(rec.inits[3], torch.zeros(3, 4, 2))


def test_mpc_replan_every_plays_cached_plan():
    rec = Recorder(CEM(LOW, HIGH, 5, population=32, iterations=2, seed=0))
    mpc = MPCController(rec, num_envs=2, replan_every=3)
    obs = np.zeros((2, 2))
    acts = [mpc.act(obs, toy_model()) for _ in range(7)]
    assert len(rec.inits) == 3 and mpc.num_plans == 3  # steps 0, 3, 6
    plan = mpc.last_plan
    np.testing.assert_allclose(acts[6], plan[:, 0].numpy())
    mpc2 = MPCController(Recorder(CEM(LOW, HIGH, 5, population=32, iterations=2, seed=0)), num_envs=2, replan_every=3)
    first = [mpc2.act(obs, toy_model()) for _ in range(3)]
    cached = mpc2.last_plan.clone()
    for k in range(3):
        np.testing.assert_allclose(first[k], cached[:, k].numpy())
    mpc2.act(obs, toy_model())
    torch.testing.assert_close(mpc2.planner.inits[1][:, :2], cached[:, 3:])  # shifted by the 3 steps played
    assert torch.equal(mpc2.planner.inits[1][:, 2:], torch.zeros(2, 3, 2))


def test_mpc_with_batched_adapted_model():
    b = 2
    m = small_model(obs_dim=5, act_dim=2)
    am = AdaptedModel(m, {k: v.detach().expand(b, *v.shape).clone() for k, v in m.named_parameters()}, num_tasks=b)
    mpc = MPCController(MPPI(LOW, HIGH, 3, population=16, iterations=2, seed=0), num_envs=b)
    a = mpc.act(np.zeros((b, 5)), am)
    assert a.shape == (b, 2) and (np.abs(a) <= 1).all()


# ---------------------------------------------------------------- bad input
def test_bad_input_raises_value_error_naming_the_argument():
    cem = CEM(LOW, HIGH, 4, population=16, iterations=1, seed=0)
    obj = quadratic(torch.zeros(4, 2))
    with pytest.raises(ValueError, match="init_mean"):
        cem.plan(obj, torch.zeros(3, 2))
    with pytest.raises(ValueError, match="init_mean"):
        cem.plan(obj, torch.zeros(2, 4, 3))
    with pytest.raises(ValueError, match="population"):
        CEM(LOW, HIGH, 4, population=0)
    with pytest.raises(ValueError, match="population"):
        MPPI(LOW, HIGH, 4, population=0)
    with pytest.raises(ValueError, match="population"):
        RandomShooting(LOW, HIGH, 4, population=-1)
    with pytest.raises(ValueError, match="num_elites"):
        CEM(LOW, HIGH, 4, population=10, num_elites=11)
    with pytest.raises(ValueError, match="horizon"):
        CEM(LOW, HIGH, 0)
    with pytest.raises(ValueError, match="action_high"):
        CEM(LOW, HIGH[:1], 4)
    with pytest.raises(ValueError, match="temperature"):
        MPPI(LOW, HIGH, 4, temperature=0.0)
    with pytest.raises(ValueError, match="objective"):
        cem.plan(lambda a: a.sum(-1))  # wrong return shape
    model = toy_model()
    with pytest.raises(ValueError, match="obs"):
        imagine(model, torch.zeros(3), torch.zeros(5, 4, 2))
    with pytest.raises(ValueError, match="actions"):
        imagine(model, torch.zeros(2), torch.zeros(5, 4, 3))
    with pytest.raises(ValueError, match="actions"):
        imagine(model, torch.zeros(3, 2), torch.zeros(2, 5, 4, 2))  # B mismatch
    with pytest.raises(ValueError, match="obs"):
        make_objective(model, torch.zeros(3, 7))
    with pytest.raises(ValueError, match="discount"):
        make_objective(model, torch.zeros(2), discount=1.5)
    with pytest.raises(ValueError, match="obs"):
        MPCController(cem, num_envs=2).act(np.zeros((3, 2)), model)
    with pytest.raises(ValueError, match="obs"):
        MPCController(cem, num_envs=2).act(np.zeros((2, 3)), model)
    with pytest.raises(ValueError, match="replan_every"):
        MPCController(cem, replan_every=5)
    with pytest.raises(ValueError, match="mask"):
        MPCController(cem, num_envs=2).reset(np.ones(3, bool))
    with pytest.raises(ValueError, match="obs_dim"):
        FunctionModel(lambda o, a: (o, o[..., 0]), 0, 2)
    assert isinstance(DynamicsMLP(3, 1, hidden=(8,)), DynamicsMLP)


# ---------------------------------------------------------------- dtypes, shapes and overflow
def test_imagine_and_objective_reject_wrong_dtypes_instead_of_casting():
    am = AdaptedModel.from_prior(small_model(hidden=(8,)))  # float32, obs 5, act 2
    obs, acts = torch.zeros(5), torch.zeros(4, 3, 2)
    assert imagine(am, obs, acts).shape == (4,)
    with pytest.raises(ValueError, match=r"^actions: expected dtype torch.float32, got torch.float64"):
        imagine(am, obs, acts.double())
    with pytest.raises(ValueError, match=r"^actions: expected dtype torch.float32, got torch.int64"):
        imagine(am, obs, acts.long())
    with pytest.raises(ValueError, match=r"^obs: expected dtype torch.float32, got torch.float64"):
        imagine(am, obs.double(), acts.double())
    with pytest.raises(ValueError, match=r"^obs: expected dtype torch.float32, got torch.int64"):
        imagine(am, obs.long(), acts)
    with pytest.raises(ValueError, match=r"^obs: expected dtype torch.float32 \(or a dtype that casts to it exactly\), got torch.float64"):
        make_objective(am, obs.double())
    with pytest.raises(ValueError, match=r"^obs: expected an array of floats, got dtype int64"):
        make_objective(am, np.zeros(5, np.int64))
    objective = make_objective(am, np.zeros(5))  # an env's float64 numpy obs: converted at the boundary
    assert objective.obs.dtype == torch.float32
    with pytest.raises(ValueError, match=r"^actions: expected dtype torch.float32 \(or a dtype that casts to it exactly\)"):
        objective(acts.double())
    assert objective(acts.half()).shape == (4,)  # float16 -> float32 is exact
    model64 = FunctionModel(lambda o, a: (o + a, -o.square().sum(-1)), 2, 2, dtype=torch.float64)
    assert make_objective(model64, torch.zeros(2))(torch.zeros(3, 2, 2)).shape == (3,)  # the planners' float32 samples
    with pytest.raises(ValueError, match=r"^actions: expected dtype torch.float64, got torch.float32"):
        imagine(model64, torch.zeros(2, dtype=torch.float64), torch.zeros(3, 2, 2))  # imagine itself never casts


@pytest.mark.parametrize("name", PLANNERS)
def test_planners_reject_wrong_init_mean_dtypes_and_shapes(name):
    planner = PLANNERS[name][0](3, seed=0) if name != "rs" else RandomShooting(LOW, HIGH, 3, population=8, seed=0)
    obj = quadratic(torch.zeros(3, 2))
    assert planner.plan(obj, np.zeros((3, 2))).shape == (3, 2)  # float64 numpy: converted
    for bad, msg in ((torch.zeros(3, 2, dtype=torch.float64), r"expected dtype torch.float32 \(or a dtype"),
                     (torch.zeros(3, 2, dtype=torch.int32), r"expected dtype torch.float32, got torch.int32"),
                     (np.zeros((3, 2), np.int64), r"expected an array of floats, got dtype int64"),
                     (torch.zeros(3, 3), r"expected shape \(3, 2\)"), (torch.zeros(0, 3, 2), r"expected shape"),
                     ([[0.0, 0.0]] * 3, r"expected a tensor")):
        with pytest.raises(ValueError, match=rf"^init_mean: {msg}"):
            planner.plan(obj, bad)


def test_mpc_rejects_integer_and_narrowing_obs():
    am = AdaptedModel.from_prior(small_model(hidden=(8,)))
    mpc = MPCController(CEM(LOW, HIGH, 3, population=8, iterations=1, seed=0), num_envs=2)
    assert mpc.act(np.zeros((2, 5)), am).shape == (2, 2)  # float64 numpy from an env
    with pytest.raises(ValueError, match=r"^obs: expected an array of floats, got dtype int64"):
        mpc.act(np.zeros((2, 5), np.int64), am)
    with pytest.raises(ValueError, match=r"^obs: expected dtype torch.float32 \(or a dtype that casts to it exactly\), got torch.float64"):
        mpc.act(torch.zeros(2, 5, dtype=torch.float64), am)
    with pytest.raises(ValueError, match=r"^obs: expected a floating-point dtype, got torch.int64"):
        mpc.act(torch.zeros(2, 5, dtype=torch.long), am)
    with pytest.raises(ValueError, match=r"^device: 'cuda' is not available"):
        if torch.cuda.is_available():
            raise ValueError("device: 'cuda' is not available (skipped on a GPU machine)")
        MPCController(CEM(LOW, HIGH, 3), device="cuda")


def test_imagine_raises_when_the_rollout_overflows():
    grow = FunctionModel(lambda o, a: (o * 1e20 + a, o.sum(-1)), obs_dim=2, act_dim=2)  # finite inputs, inf after 2 steps
    with pytest.raises(ValueError, match=r"^obs: the imagined returns are not finite for 4 of 4 candidate\(s\) although obs "
                                         r"and actions are finite"):
        imagine(grow, torch.ones(2), torch.zeros(4, 3, 2))
    with pytest.raises(ValueError, match=r"^obs: the imagined returns are not finite"):
        make_objective(grow, torch.ones(1, 2))(torch.zeros(1, 4, 3, 2))
    assert torch.isfinite(imagine(grow, torch.ones(2), torch.zeros(4, 1, 2))).all()  # one step: fine
    model = small_model(hidden=(8,))
    model.obs_norm.std.fill_(1e-3)  # 1e36 normalizes to 1e39: beyond float32
    am = AdaptedModel.from_prior(model)
    with pytest.raises(ValueError, match=r"^obs: the imagined returns are not finite for 4 of 4"):  # names imagine's arguments
        imagine(am, torch.full((5,), 1e36), torch.zeros(4, 3, 2))
    with pytest.raises(ValueError, match=r"^actions: the imagined returns are not finite"):  # not predict's "act"
        imagine(am, torch.zeros(5), torch.full((4, 3, 2), 3.4e38))


# ---------------------------------------------------------------- terminal value (TD-MPC2 style)
VALUE_C = torch.tensor([0.5, -1.0, 2.0], dtype=torch.float64)


def linear_value(s):
    """A linear state value ``c . s + 1`` on any leading dims."""
    return s @ VALUE_C.to(s.dtype) + 1.0


def hand_value_return(a_mat, b_mat, obs, seq, discount, value):
    o = obs.clone()
    for h in range(seq.shape[0]):
        o = a_mat @ o + b_mat @ seq[h]
    return hand_return(a_mat, b_mat, obs, seq, discount) + discount ** seq.shape[0] * float(value(o))


def test_imagine_with_value_equals_hand_computed_sum():
    model, a_mat, b_mat = linear_toy()
    g = torch.Generator().manual_seed(3)
    obs = torch.randn(3, generator=g, dtype=torch.float64)
    acts = torch.randn(6, 3, 2, generator=g, dtype=torch.float64)  # H=3
    want = torch.tensor([hand_value_return(a_mat, b_mat, obs, acts[n], 0.9, linear_value) for n in range(6)], dtype=torch.float64)
    torch.testing.assert_close(imagine(model, obs, acts, discount=0.9, value=linear_value), want)
    torch.testing.assert_close(make_objective(model, obs, 0.9, value=linear_value)(acts), want)
    # batched (B, N), whole and in chunks of 2 candidates (the value sees each chunk's (B, n, O) final states)
    obs_b = torch.randn(2, 3, generator=g, dtype=torch.float64)
    acts_b = torch.randn(2, 5, 3, 2, generator=g, dtype=torch.float64)
    want_b = torch.tensor([[hand_value_return(a_mat, b_mat, obs_b[b], acts_b[b, n], 0.9, linear_value) for n in range(5)]
                           for b in range(2)], dtype=torch.float64)
    shapes = []

    def recording(s):
        shapes.append(tuple(s.shape))
        return linear_value(s)

    torch.testing.assert_close(imagine(model, obs_b, acts_b, discount=0.9, value=linear_value), want_b)
    torch.testing.assert_close(imagine(model, obs_b, acts_b, discount=0.9, max_rows=4, value=recording), want_b)
    assert shapes == [(2, 2, 3), (2, 2, 3), (2, 1, 3)]
    torch.testing.assert_close(make_objective(model, obs_b, 0.9, max_rows=4, value=linear_value)(acts_b), want_b)
    # value=None is the plain return, bit for bit; a zero value changes nothing either
    plain = imagine(model, obs_b, acts_b, discount=0.9)
    assert torch.equal(imagine(model, obs_b, acts_b, discount=0.9, value=None), plain)
    assert torch.equal(make_objective(model, obs_b, 0.9, value=None)(acts_b), plain)
    assert torch.equal(imagine(model, obs_b, acts_b, discount=0.9, value=lambda s: s.new_zeros(s.shape[:-1])), plain)


def test_imagine_with_value_over_ensemble_particles_and_bonus():
    from test_exploration import _two_members  # member 0 moves by a and earns its position, member 1 moves by 2a

    ens, d = _two_members(), 0.9
    value = lambda s: 3.0 * s[..., 0] - 1.0
    g = torch.Generator().manual_seed(0)
    obs = torch.rand(2, 1, generator=g)
    acts = torch.rand(2, 5, 3, 1, generator=g) * 2 - 1  # (B, N, H, A), H=3
    cum = acts[..., 0].cumsum(-1)  # (B, N, H): sum of the first h+1 actions
    o0, o0h = obs, obs[:, :, None]  # (B, 1) against (B, N), (B, 1, 1) against (B, N, H)
    disc = d ** torch.arange(3.0)
    ret0 = ((o0h + cum) * disc).sum(-1)  # member 0's return; member 1 earns nothing
    v0, v1 = value((o0 + cum[..., -1])[..., None]), value((o0 + 2 * cum[..., -1])[..., None])
    # TS-inf with 4 particles: particles 0, 2 follow member 0, particles 1, 3 member 1; value per particle, then the mean
    want = (ret0 + d**3 * v0 + d**3 * v1) / 2
    shapes = []

    def recording(s):
        shapes.append(tuple(s.shape))
        return value(s)

    got = imagine(ens, obs, acts, discount=d, particles=4, propagation="tsinf", value=recording)
    torch.testing.assert_close(got, want)
    assert shapes == [(2, 5, 4, 1)]  # each particle's final state
    torch.testing.assert_close(imagine(ens, obs, acts, discount=d, particles=4, propagation="tsinf", value=value, max_rows=8),
                               want)  # chunks of 1 candidate
    # TS-1: the value term is each particle's own final state, so with a constant value it adds exactly d**3 * 2
    ts1 = dict(discount=d, particles=4, propagation="ts1")
    const = lambda s: s.new_full(s.shape[:-1], 2.0)
    torch.testing.assert_close(imagine(ens, obs, acts, generator=torch.Generator().manual_seed(1), value=const, **ts1),
                               imagine(ens, obs, acts, generator=torch.Generator().manual_seed(1), **ts1) + d**3 * 2)
    # the bonus rollout with the members' mean: states move by 1.5 a, the value term is reward_weight * d**3 * value(s_H)
    kw = dict(discount=d, propagation="mean", particles=1, bonus_weight=0.3, reward_weight=0.5)
    with_value = imagine(ens, obs, acts, value=value, **kw)
    vm = value((o0 + 1.5 * cum[..., -1])[..., None])
    torch.testing.assert_close(with_value, imagine(ens, obs, acts, **kw) + 0.5 * d**3 * vm)
    bonus = (acts[..., 0] / 2).square()  # members' variance of next_obs: ((a - 2a) / 2)^2
    reward = 0.5 * (o0h + 1.5 * cum - 0.5 * acts[..., 0])  # members' mean reward at o_h = o_0 + 1.5 * (a_0 + ... + a_{h-1})
    torch.testing.assert_close(with_value, 0.5 * (reward * disc).sum(-1) + 0.5 * d**3 * vm
                               + 0.3 * (bonus * disc).sum(-1))


def test_value_bad_input_names_value():
    model = toy_model()
    obs, acts = torch.zeros(2), torch.zeros(5, 3, 2)
    with pytest.raises(ValueError, match=r"^value: expected None or a callable"):
        imagine(model, obs, acts, value=3.0)
    with pytest.raises(ValueError, match=r"^value: expected None or a callable"):
        make_objective(model, obs, value="q")
    with pytest.raises(ValueError, match=r"^value: expected values of shape \(5,\) for final observations of shape \(5, 2\), "
                                         r"got shape \(5, 1\)"):
        imagine(model, obs, acts, value=lambda s: s[..., :1])  # a Q head's (..., 1) is not squeezed silently
    with pytest.raises(ValueError, match=r"^value: expected values of shape \(3, 5\) .* got shape \(\)"):
        make_objective(model, torch.zeros(3, 2), value=lambda s: s.sum())(torch.zeros(3, 5, 3, 2))
    with pytest.raises(ValueError, match=r"^value: expected values of shape \(5,\) .* got list"):
        imagine(model, obs, acts, value=lambda s: [0.0] * 5)
    with pytest.raises(ValueError, match=r"^value: expected finite values, got 5 non-finite of 5"):
        imagine(model, obs, acts, value=lambda s: torch.full(s.shape[:-1], float("nan")))


# ---------------------------------------------------------------- policy proposals in the planners
TINY = {  # one iteration over 4 samples: too few to find an optimum by chance
    "cem": lambda h, **kw: CEM(LOW, HIGH, h, population=4, iterations=1, num_elites=1, return_mean=False, **kw),
    "mppi": lambda h, **kw: MPPI(LOW, HIGH, h, population=4, iterations=1, temperature=1e-3, **kw),
    "rs": lambda h, **kw: RandomShooting(LOW, HIGH, h, population=4, **kw),
}


@pytest.mark.parametrize("name", TINY)
def test_proposal_at_the_optimum_is_found_with_a_tiny_population(name):
    g = torch.Generator().manual_seed(4)
    target = torch.rand(3, 5, 2, generator=g) * 1.6 - 0.8  # (B, H, A)
    props = torch.stack([target, torch.zeros_like(target)], 1)  # (B, M=2, H, A): the optimum and a decoy
    planner = TINY[name](5, seed=0)
    without = planner.plan(quadratic(target), planner.initial_mean(3))
    assert (without - target).abs().max() > 0.2
    plan = TINY[name](5, seed=0).plan(quadratic(target), planner.initial_mean(3), proposals=props)
    assert plan.shape == (3, 5, 2)
    torch.testing.assert_close(plan, target, atol=1e-6, rtol=0)
    one = TINY[name](5, seed=0).plan(quadratic(target[1]), proposals=props[1].numpy())  # one env, numpy proposals
    assert one.shape == (5, 2)
    torch.testing.assert_close(one, target[1], atol=1e-6, rtol=0)


@pytest.mark.parametrize("name", PLANNERS)
def test_proposals_are_clipped_evaluated_each_iteration_and_plans_stay_in_bounds(name):
    make = PLANNERS[name][0]
    seen = []

    def objective(a):
        seen.append((tuple(a.shape), a.min().item(), a.max().item()))
        return quadratic(torch.full((3, 2), 0.9))(a)

    props = torch.randn(2, 7, 3, 2, generator=torch.Generator().manual_seed(0)) * 50  # far outside [-1, 1]
    planner = make(3, seed=0)
    plan = planner.plan(objective, planner.initial_mean(2), proposals=props)
    assert plan.shape == (2, 3, 2) and plan.min() >= -1.0 and plan.max() <= 1.0
    assert min(s[1] for s in seen) >= -1.0 and max(s[2] for s in seen) <= 1.0  # the objective never sees them outside
    iterations = getattr(planner, "iterations", 1)
    assert [s[0] for s in seen] == [(2, planner.population + 7, 3, 2)] * iterations  # N + M every iteration


@pytest.mark.parametrize("name", PLANNERS)
def test_proposals_none_leaves_the_plan_unchanged(name):
    make = PLANNERS[name][0]
    obj = quadratic(torch.full((3, 2), 0.4))
    a = make(3, seed=5).plan(obj, None)
    b = make(3, seed=5).plan(obj, None, proposals=None)
    assert torch.equal(a, b)


def test_proposals_bad_input_names_proposals():
    cem = CEM(LOW, HIGH, 4, population=8, iterations=1, seed=0)
    obj = quadratic(torch.zeros(4, 2))
    for bad, msg in ((torch.zeros(3, 4, 3), r"expected shape \(M, 4, 2\)"),
                     (torch.zeros(2, 3, 4, 2), r"expected shape \(M, 4, 2\)"),  # batched proposals for one env
                     (torch.zeros(0, 4, 2), r"expected shape \(M, 4, 2\) .*at least one"),
                     (torch.zeros(3, 4, 2, dtype=torch.float64), r"expected dtype torch.float32 \(or a dtype"),
                     (np.zeros((3, 4, 2), np.int64), r"expected an array of floats"),
                     (torch.full((3, 4, 2), float("nan")), r"expected finite values"),
                     ([[0.0, 0.0]] * 4, r"expected a tensor of shape \(M, 4, 2\)")):
        with pytest.raises(ValueError, match=rf"^proposals: {msg}"):
            cem.plan(obj, proposals=bad)
    with pytest.raises(ValueError, match=r"^proposals: expected shape \(B=3, M, 4, 2\).* got \(2, 5, 4, 2\)"):
        cem.plan(obj, cem.initial_mean(3), proposals=torch.zeros(2, 5, 4, 2))  # B mismatch
    with pytest.raises(ValueError, match=r"^proposals: expected shape \(B=3, M, 4, 2\)"):
        cem.plan(obj, cem.initial_mean(3), proposals=torch.zeros(5, 4, 2))

    class OldPlanner(CEM):
        def _plan(self, objective, mean, batched):
            return mean

    old = OldPlanner(LOW, HIGH, 4, population=8, iterations=1, seed=0)
    assert old.plan(obj).shape == (4, 2)
    with pytest.raises(ValueError, match=r"^proposals: OldPlanner._plan takes no proposals"):
        old.plan(obj, proposals=torch.zeros(2, 4, 2))


# ---------------------------------------------------------------- MPC with a value and a policy prior
def reach_model():
    """``o' = o + a``, reward ``-|o'|^2``: from ``o`` the optimal first action is ``-o`` (inside the bounds), then 0."""
    return FunctionModel(lambda o, a: (o + a, -(o + a).square().sum(-1)), obs_dim=2, act_dim=2)


def test_mpc_policy_proposals_roll_the_policy_through_the_model():
    mpc = MPCController(CEM(LOW, HIGH, 3, population=4, iterations=1, seed=0), num_envs=2, policy_samples=5)
    seen = []

    def policy(o):
        seen.append(o.clone())
        return 0.5 - o + torch.zeros(o.shape[:-1] + (2,))  # moves each state to 0.5, beyond the bounds from far away

    obs = np.array([[0.2, -0.4], [3.0, 0.0]])
    props = mpc.policy_proposals(obs, reach_model(), policy)
    assert props.shape == (2, 5, 3, 2) and props.dtype == torch.float32
    assert [tuple(s.shape) for s in seen] == [(2, 5, 2)] * 3
    torch.testing.assert_close(seen[0], torch.tensor(obs, dtype=torch.float32)[:, None].expand(2, 5, 2))
    want0 = torch.tensor([[0.3, 0.9], [-1.0, 0.5]])  # clipped: env 1 can only move by -1
    torch.testing.assert_close(props[:, :, 0], want0[:, None].expand(2, 5, 2))
    torch.testing.assert_close(seen[1][1, 0], torch.tensor([2.0, 0.5]))  # moved by the clipped action
    torch.testing.assert_close(props[1, 0, 1], torch.tensor([-1.0, 0.0]))
    assert props.abs().max() <= 1.0
    assert MPCController(CEM(LOW, HIGH, 3), num_envs=2, policy_samples=0).policy_proposals(obs, reach_model(), policy).shape == (2, 0, 3, 2)


def test_mpc_with_optimal_policy_and_tiny_planner_plays_the_policy():
    obs = np.array([[0.5, -0.3], [-0.8, 0.1], [0.2, 0.9]], np.float32)
    policy = lambda o: -o  # optimal for reach_model
    for make in TINY.values():
        mpc = MPCController(make(3, seed=0), num_envs=3, policy_samples=4)
        action = mpc.act(obs, reach_model(), policy=policy)
        np.testing.assert_allclose(action, -obs, atol=1e-6)
        torch.testing.assert_close(mpc.last_plan, mpc.policy_proposals(obs, reach_model(), policy)[:, 0], atol=1e-6, rtol=0)
    # without the policy the tiny planner does not find it
    far = MPCController(TINY["cem"](3, seed=0), num_envs=3).act(obs, reach_model())
    assert np.abs(far + obs).max() > 0.2


def test_mpc_value_steers_a_one_step_plan():
    # no reward at all: only the terminal value (distance to 0.3) tells the planner where to go
    model = FunctionModel(lambda o, a: (o + 0.5 * a, torch.zeros(o.shape[:-1])), obs_dim=2, act_dim=2)
    mpc = MPCController(CEM(LOW, HIGH, 1, population=200, iterations=4, seed=0), num_envs=2, discount=0.9)
    obs = np.array([[0.0, 0.0], [0.5, 0.5]], np.float32)
    a = mpc.act(obs, model, value=lambda s: -(s - 0.3).square().sum(-1))
    np.testing.assert_allclose(obs + 0.5 * a, np.full((2, 2), 0.3), atol=0.02)


def test_mpc_without_value_and_policy_is_unchanged_and_bad_input():
    obs = np.full((3, 2), 0.2)
    runs = []
    for kw in ({}, {"value": None, "policy": None}):
        mpc = MPCController(MPPI(LOW, HIGH, 4, population=16, iterations=2, seed=0), num_envs=3, seed=0)
        runs.append(np.stack([mpc.act(obs, toy_model(), **kw) for _ in range(3)]))
    assert np.array_equal(runs[0], runs[1])
    # policy_samples=0 ignores the policy: the same plans as without it
    mpc0 = MPCController(MPPI(LOW, HIGH, 4, population=16, iterations=2, seed=0), num_envs=3, seed=0, policy_samples=0)
    assert np.array_equal(np.stack([mpc0.act(obs, toy_model(), policy=lambda o: -o) for _ in range(3)]), runs[0])
    with pytest.raises(ValueError, match="policy_samples"):
        MPCController(CEM(LOW, HIGH, 3), policy_samples=-1)
    mpc = MPCController(CEM(LOW, HIGH, 4, population=8, iterations=1, seed=0), num_envs=3)
    with pytest.raises(ValueError, match=r"^policy: expected None or a callable"):
        mpc.act(obs, toy_model(), policy=1)
    with pytest.raises(ValueError, match=r"^policy: expected actions of shape \(3, 24, 2\) for observations of shape "
                                         r"\(3, 24, 2\), got shape \(3, 24, 1\)"):
        mpc.act(obs, toy_model(), policy=lambda o: o[..., :1])
    with pytest.raises(ValueError, match=r"^policy: expected finite actions"):
        mpc.act(obs, toy_model(), policy=lambda o: o * float("nan"))
    with pytest.raises(ValueError, match=r"^value: expected None or a callable"):
        mpc.act(obs, toy_model(), value=2)
    rec = MPCController(Recorder(CEM(LOW, HIGH, 4, population=8, iterations=1, seed=0)), num_envs=3)
    assert rec.act(obs, toy_model()).shape == (3, 2)  # a user's planner without proposals plans as before
    with pytest.raises(ValueError, match=r"^planner: expected a plan\(objective, init_mean, proposals=None\)"):
        rec.act(obs, toy_model(), policy=lambda o: -o)
