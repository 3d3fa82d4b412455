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
