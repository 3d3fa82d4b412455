"""Property-based fuzzing (Hypothesis) of the four entry points a user feeds data to: ``adapt``, ``predict``,
``imagine`` and ``plan`` (CEM, MPPI, random shooting), over several learners and two ensembles (deterministic
and Gaussian MAML members).

The property, for every generated input: the call either returns a correct result (right shape, finite
values) or raises a ``ValueError`` (``TypeError`` tolerated) whose message starts with the name of an
argument that was actually wrong (``"steps: ..."``, ``"context.obs: ..."``); inputs that are valid and of a
moderate scale must succeed; finite inputs never give non-finite outputs without an error; ``adapt`` never
mutates the prior (its ``state_dict`` is compared before and after, also when it raises).

Inputs are drawn as shapes (valid and invalid batch dims, context sizes ``K`` 0..40, tasks ``T`` 1..4,
horizons 1..4), dtypes (float32, float64, float16, int32/int64), values (normal, zeros, 1e3, huge up to
~1e38 -- which overflow to ``inf`` in float32 --, NaN, ``±inf``, subnormals, sprinkled into normal data)
and option values (steps: ints, negatives, floats, bools, strings; lr: NaN, ``±inf``, 0, negatives, huge;
unknown option names).

Each property is a plain function returning its outcome (``"ok"``, ``"ValueError"``, ``"TypeError"``) so
``benchmarks/bench_fuzz.py`` runs the very same properties at 10,000+ examples and tabulates outcomes.
Example counts come from a settings profile: ``META_MBRL_FUZZ_PROFILE=ci`` (default: ~1,000 examples per
entry point, deterministic: ``derandomize=True``, no example database) or ``bench``.
"""

from __future__ import annotations

import math
import os
import re

import numpy as np
import pytest
import torch
from conftest import random_transitions, small_model
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from meta_mbrl.adaptation import AdaptedModel, EnsembleAdaptedModel
from meta_mbrl.meta import Ensemble, build_learner
from meta_mbrl.planning import CEM, MPPI, RandomShooting, imagine, make_objective
from meta_mbrl.types import Transitions

OBS, A, Z = 3, 2, 4  # obs dim, action dim, task-vector size of the conditioned learners
T_BATCH = 3  # tasks of the task-batched adapted models
MODERATE = 1e3  # inputs up to this |x| are "moderate": valid ones must succeed
SMALL_LR = 0.1  # step sizes above this may make adaptation diverge (a ValueError naming the context is then fine)

settings.register_profile("meta_mbrl_fuzz_ci", max_examples=1000, deadline=None, derandomize=True, database=None,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                                 HealthCheck.function_scoped_fixture])
settings.register_profile("meta_mbrl_fuzz_bench", parent=settings.get_profile("meta_mbrl_fuzz_ci"), max_examples=10_000)
settings.register_profile("meta_mbrl_fuzz_quick", parent=settings.get_profile("meta_mbrl_fuzz_ci"), max_examples=100)
PROFILE = f"meta_mbrl_fuzz_{os.environ.get('META_MBRL_FUZZ_PROFILE', 'ci')}"
FUZZ = settings(settings.get_profile(PROFILE))  # applied per test: the global profile of other tests is untouched

pytestmark = pytest.mark.usefixtures("one_thread")


# ---------------------------------------------------------------------------- the models, built once per module
LEARNER_KWARGS = {"maml": {"inner_lr": 0.05}, "reptile": {"inner_lr": 0.05, "inner_steps": 2},
                  "cadm": {"encoder_hidden": (8,)}, "pearl": {"encoder_hidden": (8,)}, "multitask": {"inner_steps": 2},
                  "finetune": {"adapt_steps": 3}}
CONDITIONED = ("cadm", "pearl", "multitask")
ENSEMBLE, GAUSSIAN_ENSEMBLE = "maml x2", "gaussian maml x2"  # the second: PETS-style Gaussian members, sampled particles
LEARNER_NAMES = (*LEARNER_KWARGS, ENSEMBLE, GAUSSIAN_ENSEMBLE)


def _build(name: str):
    if name in (ENSEMBLE, GAUSSIAN_ENSEMBLE):
        model = small_model(OBS, A, hidden=(8,), seed=7, gaussian=name == GAUSSIAN_ENSEMBLE)
        ens = Ensemble(model, member="maml", size=2, member_kwargs={"inner_lr": 0.05})
        ens.fit_normalizers(random_transitions(200, obs_dim=OBS, act_dim=A, seed=8))
        return ens
    model = small_model(OBS, A, hidden=(8,), seed=3, **({"context_dim": Z} if name in CONDITIONED else {}))
    return build_learner(name, model, **LEARNER_KWARGS[name])


_CACHE: dict = {}


def learner(name: str):
    """The learner ``name`` (tiny: ``hidden=(8,)``), built once per process."""
    if name not in _CACHE:
        torch.manual_seed(0)
        _CACHE[name] = _build(name)
    return _CACHE[name]


def adapted(name: str, batched: bool):
    """An adapted model of ``name`` from a normal context: one task, or a batch of ``T_BATCH``."""
    key = (name, batched)
    if key not in _CACHE:
        ctx = random_transitions(*((T_BATCH,) if batched else ()), 16, obs_dim=OBS, act_dim=A, seed=11)
        _CACHE[key] = learner(name).adapt(ctx)
    return _CACHE[key]


# ---------------------------------------------------------------------------- value, dtype and shape strategies
SPECIALS = (math.nan, math.inf, -math.inf, 1e-40, -1e-45, 5e-324, 0.0, -0.0, 3.4e38, -3.4e38, 1e38, 1e30)
VALUE_KINDS = ("normal", "normal", "normal", "normal", "zeros", "big", "huge", "special", "subnormal")
FLOATS = (torch.float32,) * 6 + (torch.float64, torch.float16)
DTYPES = FLOATS + (torch.int64, torch.int32)


CLEAN_KINDS = ("normal", "normal", "normal", "zeros", "subnormal")


@st.composite
def arrays(draw, shape: tuple[int, ...], clean: bool = False) -> np.ndarray:
    """A float64 array of ``shape``: normal data, scaled (zeros, 1e3, huge, subnormal), or with special values sprinkled in.

    ``clean``: moderate values only (normal, zeros, subnormal)."""
    kind = draw(st.sampled_from(CLEAN_KINDS if clean else VALUE_KINDS))
    x = np.random.default_rng(draw(st.integers(0, 2**32 - 1))).standard_normal(shape)
    if kind == "zeros":
        x[...] = 0.0
    elif kind == "big":
        x *= 1e3
    elif kind == "huge":
        x *= draw(st.sampled_from((1e20, 1e30, 1e36, 1e38)))
    elif kind == "subnormal":
        x *= 1e-40
    elif kind == "special" and x.size:
        idx = draw(st.lists(st.integers(0, x.size - 1), min_size=1, max_size=3))
        x.flat[idx] = draw(st.sampled_from(SPECIALS))
    return x


def tensor(x: np.ndarray, dtype: torch.dtype) -> torch.Tensor:
    t = torch.from_numpy(x)
    if not dtype.is_floating_point:
        t = torch.nan_to_num(t, nan=0.0, posinf=0.0, neginf=0.0).clamp(-1e9, 1e9)  # ints: representable values
    return t.to(dtype)


def scale(*ts: torch.Tensor) -> float:
    """``max |x|`` over the tensors (``inf`` if any entry is NaN/inf; 0 for none)."""
    m = 0.0
    for t in ts:
        if isinstance(t, torch.Tensor) and t.numel():
            t = t.double()
            if not bool(torch.isfinite(t).all()):
                return math.inf
            m = max(m, float(t.abs().max()))
    return m


def batch_shape(draw, *, valid: bool, batched_tasks: int | None = None) -> tuple[int, ...]:
    """Leading batch dims: ``(K,)`` / ``(T, K)`` when valid, else something adapt must reject."""
    k = draw(st.integers(0, 40))
    if valid:
        return (k,) if batched_tasks is None else (batched_tasks, k)
    return draw(st.sampled_from([(), (2, 3, k), (1, 1, 1, k)]))


# ---------------------------------------------------------------------------- how an error must look
NAME_RE = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)(?:\.[A-Za-z_]+)*: ")


def check_error(err: Exception, suspects: set[str]) -> str:
    """The outcome of a raised error: a ValueError/TypeError whose message starts with a suspect argument's name."""
    assert isinstance(err, (ValueError, TypeError)), f"{type(err).__name__} (not ValueError/TypeError): {err}"
    msg = str(err)
    m = NAME_RE.match(msg)
    assert m is not None, f"message does not start with an argument name: {msg!r}"
    assert m.group(1) in suspects, f"message names {m.group(1)!r}, expected one of {sorted(suspects)}: {msg!r}"
    assert "\n" not in msg.split(";")[0], f"not a one-line message: {msg!r}"
    return type(err).__name__


def all_finite(*ts) -> bool:
    return all(t is None or bool(torch.isfinite(t).all()) for t in ts)


# ---------------------------------------------------------------------------- adapt
STEPS = st.one_of(st.none(), st.integers(0, 6), st.integers(-3, -1), st.sampled_from([1.5, 2.0, True, False, "3", np.int64(2)]))
LRS = st.one_of(st.none(), st.floats(1e-4, SMALL_LR), st.floats(SMALL_LR, 1e4),
                st.sampled_from([0.0, -0.01, math.nan, math.inf, -math.inf, 1e30, True, "0.1", np.float32(0.01)]))


def _valid_steps(v) -> bool:
    return v is None or (not isinstance(v, (bool, np.bool_, str, float)) and int(v) >= 0)


def _valid_lr(v) -> bool:
    return v is None or (isinstance(v, (float, np.floating)) and not isinstance(v, bool) and 0 < v <= 1e4)


def clean_case(draw) -> bool:
    """A third of the examples are drawn valid and moderate throughout (the rest freely), so every property sees
    plenty of inputs that must succeed as well as every kind of bad one."""
    return draw(st.integers(0, 2)) == 0


CLEAN_OPTIONS = {"steps": st.one_of(st.none(), st.integers(0, 6)), "lr": st.one_of(st.none(), st.floats(1e-4, SMALL_LR)),
                 "sample": st.sampled_from([None, True, False]), "generator": st.sampled_from([None, "gen"])}


@st.composite
def adapt_cases(draw):
    name = draw(st.sampled_from(LEARNER_NAMES))
    accepted = learner(name).ADAPT_OPTIONS
    clean = clean_case(draw)
    suspects: set[str] = set()
    tasks = draw(st.sampled_from([None, None, 1, 2, 4]))
    good_shape = clean or draw(st.integers(0, 9)) > 0
    batch = batch_shape(draw, valid=good_shape, batched_tasks=tasks)
    if clean and 0 in batch:
        batch = batch[:-1] + (1 + draw(st.integers(0, 39)),)
    if not good_shape or 0 in batch:
        suspects.add("context")
    dtype = torch.float32 if clean else draw(st.sampled_from(DTYPES))
    if dtype != torch.float32:
        suspects.add("context")
    dims = {"obs": OBS, "act": A, "reward": None, "next_obs": OBS}
    fields = {}
    for f, d in dims.items():
        shape = batch + (() if d is None else (d,))
        if not clean and draw(st.integers(0, 24)) == 0:  # one field of a wrong size or dtype
            shape = shape[:-1] + (shape[-1] + 1,) if shape else (1,)
            suspects.add("context")
        fdtype = dtype if clean or draw(st.integers(0, 24)) else draw(st.sampled_from(DTYPES))
        if fdtype != torch.float32:
            suspects.add("context")
        fields[f] = tensor(draw(arrays(shape, clean)), fdtype)
    context: object = Transitions(fields["obs"], fields["act"], fields["reward"], fields["next_obs"])
    if not clean and draw(st.integers(0, 29)) == 0:
        context = tuple(context)  # not a Transitions
        suspects.add("context")
    big = scale(*fields.values())
    if big > MODERATE:  # NaN/inf are rejected by name, huge finite values may overflow: both name the context
        suspects.add("context")
    opts = {}
    for key, strategy in (("steps", STEPS), ("lr", LRS), ("sample", st.sampled_from([None, True, False, 1, "yes"])),
                          ("generator", st.sampled_from([None, "gen", 3]))):
        if clean and key not in accepted:
            continue
        if draw(st.booleans()):
            value = draw(CLEAN_OPTIONS[key] if clean else strategy)
            value = torch.Generator().manual_seed(0) if value == "gen" else value
            opts[key] = value
            if value is None:
                continue
            ok = {"steps": _valid_steps, "lr": _valid_lr, "sample": lambda v: isinstance(v, bool),
                  "generator": lambda v: isinstance(v, torch.Generator)}[key](value)
            if key not in accepted or not ok:
                suspects.add(key)
            if key == "lr" and ok and value > SMALL_LR:
                suspects.add("context")  # a large step may diverge on this context: the error names the context
    if name == "finetune" and opts.get("steps") is None:
        opts["steps"] = 2  # keep the fine-tuning baseline cheap
    if not clean and draw(st.integers(0, 19)) == 0:
        opts[draw(st.sampled_from(["stepz", "learning_rate", "n"]))] = 1
        suspects.update(k for k in opts if k not in ("steps", "lr", "sample", "generator"))
    return name, context, opts, suspects, (None if tasks is None else tasks)


def check_adapt(case) -> str:
    """Property of ``learner.adapt(context, **opts)``; returns the outcome."""
    name, context, opts, suspects, tasks = case
    lrn = learner(name)
    before = {k: v.clone() for k, v in lrn.state_dict().items()}
    try:
        am = lrn.adapt(context, **opts)
    except Exception as e:  # noqa: BLE001 -- the property is about which exceptions
        outcome = check_error(e, suspects)
    else:
        outcome = "ok"
        assert isinstance(am, (AdaptedModel, EnsembleAdaptedModel))
        assert am.num_tasks == tasks, (am.num_tasks, tasks)
        assert all_finite(*am.params.values(), am.task_vector), "adapt returned non-finite parameters"
        obs = torch.zeros((tasks, 2, OBS) if tasks else (2, OBS))
        pred = am.predict(obs, torch.zeros(*obs.shape[:-1], A)) if not suspects else None
        assert pred is None or (pred.next_obs.shape == obs.shape and all_finite(pred.next_obs, pred.reward))
    for k, v in lrn.state_dict().items():
        assert torch.equal(v, before[k]), f"adapt mutated the prior's {k}"
    if not suspects:
        assert outcome == "ok", f"valid input of moderate scale was rejected ({outcome})"
    return outcome


# ---------------------------------------------------------------------------- predict
@st.composite
def predict_cases(draw):
    name = draw(st.sampled_from(LEARNER_NAMES))
    batched = draw(st.booleans())
    clean = clean_case(draw)
    suspects: set[str] = set()
    lead = draw(st.sampled_from([(), (0,), (5,), (2, 3)]))
    if batched:
        t = T_BATCH if clean or draw(st.integers(0, 7)) else draw(st.sampled_from([1, 2, 4]))
        if t != T_BATCH:
            suspects.add("obs")
        lead = (t, *lead[1:]) if lead else (t,)
        if not lead[1:] and draw(st.booleans()):
            lead = (t,)  # obs (T, obs_dim): one sample per task
    shapes = {"obs": lead + (OBS,), "act": lead + (A,)}
    if not clean and draw(st.integers(0, 14)) == 0:
        which = draw(st.sampled_from(["obs", "act"]))
        shapes[which] = shapes[which][:-1] + (shapes[which][-1] + draw(st.sampled_from([-1, 1])),)
        suspects.add(which)
    if not clean and draw(st.integers(0, 14)) == 0 and lead:
        shapes["act"] = (lead[0] + 1,) + shapes["act"][1:]
        suspects.add("act")
    xs = {}
    for key in ("obs", "act"):
        dtype = torch.float32 if clean else draw(st.sampled_from(DTYPES))
        if dtype != torch.float32:
            suspects.add(key)
        xs[key] = tensor(draw(arrays(shapes[key], clean)), dtype)
        if scale(xs[key]) > MODERATE:
            suspects.add(key)
    return name, batched, xs["obs"], xs["act"], suspects


def check_predict(case) -> str:
    """Property of ``adapted.predict(obs, act)`` (for an ensemble also ``predict_members``)."""
    name, batched, obs, act, suspects = case
    am = adapted(name, batched)
    calls = [(am.predict, ())] + ([(am.predict_members, (am.ensemble_size,))] if isinstance(am, EnsembleAdaptedModel) else [])
    outcome = "ok"
    for fn, lead in calls:
        try:
            pred = fn(obs, act)
        except Exception as e:  # noqa: BLE001
            outcome = check_error(e, suspects)
            continue
        assert pred.next_obs.shape == lead + tuple(obs.shape) and pred.reward.shape == lead + tuple(obs.shape[:-1])
        assert all_finite(*pred), "predict returned non-finite values for finite inputs without an error"
    if not suspects:
        assert outcome == "ok", f"valid input of moderate scale was rejected ({outcome})"
    return outcome


# ---------------------------------------------------------------------------- imagine
@st.composite
def imagine_cases(draw):
    name = draw(st.sampled_from(LEARNER_NAMES))
    batched = draw(st.booleans())
    clean = clean_case(draw)
    suspects: set[str] = set()
    n, h = draw(st.integers(1, 8)), draw(st.integers(1, 4))
    if not clean and draw(st.integers(0, 14)) == 0:
        n, h = (0, h) if draw(st.booleans()) else (n, 0)
        suspects.add("actions")
    if batched:
        b = T_BATCH if clean or draw(st.integers(0, 7)) else draw(st.sampled_from([1, 2, 4]))
        if b != T_BATCH:
            suspects.add("obs")
        obs_shape, act_shape = (b, OBS), (b, n, h, A)
    else:
        env = draw(st.booleans())  # a single-task model plans for B envs just as well
        b = draw(st.integers(1, 3))
        obs_shape, act_shape = ((b, OBS), (b, n, h, A)) if env else ((OBS,), (n, h, A))
    bad = -1 if clean else draw(st.integers(0, 11))
    if bad == 0:
        obs_shape = obs_shape[:-1] + (OBS + 1,)
        suspects.add("obs")
    elif bad == 1:
        act_shape = act_shape[:-1] + (A + 1,)
        suspects.add("actions")
    elif bad == 2:
        act_shape = act_shape[1:] if len(act_shape) == 4 else (2, *act_shape)
        suspects.add("actions")
    elif bad == 3:
        obs_shape = (2, *obs_shape)
        suspects.update({"obs", "actions"})  # obs and actions no longer agree: either may be named
    obs_dtype = torch.float32 if clean else draw(st.sampled_from(DTYPES))
    act_dtype = obs_dtype if clean or draw(st.integers(0, 3)) else draw(st.sampled_from(DTYPES))
    if obs_dtype != torch.float32:
        suspects.add("obs")
    if act_dtype != obs_dtype:
        suspects.add("actions")
    obs, actions = tensor(draw(arrays(obs_shape, clean)), obs_dtype), tensor(draw(arrays(act_shape, clean)), act_dtype)
    if scale(obs, actions) > MODERATE:
        suspects.update({"obs", "actions"})
    kwargs = {}
    if draw(st.booleans()):
        bad_discounts = st.sampled_from([1.5, -0.1, math.nan, "0.9", True])
        kwargs["discount"] = draw(st.floats(0, 1) if clean else st.one_of(st.floats(0, 1), bad_discounts))
        d = kwargs["discount"]
        if isinstance(d, (bool, str)) or not 0 <= d <= 1:
            suspects.add("discount")
    if draw(st.booleans()):
        kwargs["max_rows"] = draw(st.sampled_from([None, 1, 7, 64] if clean else [None, 1, 7, 64, 0, -1, 2.5]))
        if kwargs["max_rows"] in (0, -1, 2.5):
            suspects.add("max_rows")
    if name in (ENSEMBLE, GAUSSIAN_ENSEMBLE) and draw(st.booleans()):
        kwargs["propagation"] = draw(st.sampled_from(["ts1", "tsinf", "mean"] + ([] if clean else ["ts2", 1])))
        kwargs["particles"] = draw(st.sampled_from([None, 2, 4] if clean else [None, 1, 2, 4, 3, 0]))
        if kwargs["propagation"] not in ("ts1", "tsinf", "mean"):
            suspects.add("propagation")
        p = kwargs["particles"]
        if p == 0 or (p is not None and p % 2 and kwargs["propagation"] != "mean"):
            suspects.add("particles")
        kwargs["generator"] = torch.Generator().manual_seed(0)
    return name, batched, obs, actions, kwargs, suspects


def check_imagine(case) -> str:
    """Property of ``imagine(model, obs, actions, **kwargs)``."""
    name, batched, obs, actions, kwargs, suspects = case
    model = adapted(name, batched)
    try:
        ret = imagine(model, obs, actions, **kwargs)
    except Exception as e:  # noqa: BLE001
        outcome = check_error(e, suspects)
    else:
        outcome = "ok"
        assert ret.shape == actions.shape[:-2], (ret.shape, actions.shape)
        assert all_finite(ret), "imagine returned non-finite returns without an error"
    if not suspects:
        assert outcome == "ok", f"valid input of moderate scale was rejected ({outcome})"
    return outcome


# ---------------------------------------------------------------------------- plan
PLANNER_ARGS = {
    "cem": {"population": [16, 1, 0, -2, 2.5, True], "iterations": [2, 1, 0, 1.5], "elite_frac": [0.25, 1.0, 0.0, 1.5, math.nan],
            "init_std": [0.5, 0.0, math.inf], "alpha": [0.1, 0.0, 1.0, -0.5]},
    "mppi": {"population": [16, 1, 0, 2.5], "iterations": [2, 0, True], "temperature": [0.5, 0.0, -1.0, math.nan],
             "noise_std": [0.5, 0.0], "noise_beta": [1.0, 0.0, 2.0, -1.0]},
    "rs": {"population": [16, 1, 0, -1, "16"]},
}
PLANNER_CLASSES = {"cem": CEM, "mppi": MPPI, "rs": RandomShooting}
GOOD_ARG = {"population": lambda v: _valid_steps(v) and v >= 1, "iterations": lambda v: _valid_steps(v) and v >= 1,
            "elite_frac": lambda v: 0 < v <= 1, "init_std": lambda v: 0 < v < math.inf, "alpha": lambda v: 0 <= v < 1,
            "temperature": lambda v: v > 0, "noise_std": lambda v: v > 0, "noise_beta": lambda v: v >= 0}


@st.composite
def plan_cases(draw):
    planner = draw(st.sampled_from(list(PLANNER_CLASSES)))
    name = draw(st.sampled_from(LEARNER_NAMES))
    clean = clean_case(draw)
    suspects: set[str] = set()
    horizon = draw(st.sampled_from([1, 2, 3, 4] if clean else [1, 2, 3, 4, 4, 0, 2.0]))
    if not (_valid_steps(horizon) and horizon >= 1):
        suspects.add("horizon")
    kwargs = {"seed": draw(st.integers(0, 3))}
    for key, values in PLANNER_ARGS[planner].items():
        value = values[0] if clean or draw(st.integers(0, 5)) else draw(st.sampled_from(values))
        kwargs[key] = value
        if isinstance(value, (bool, str)) or not GOOD_ARG[key](value):
            suspects.add(key)
    batched = draw(st.booleans())
    b = T_BATCH if batched else draw(st.integers(1, 3))
    env = batched or draw(st.booleans())
    obs_shape = (b, OBS) if env else (OBS,)
    if not clean and draw(st.integers(0, 14)) == 0:
        obs_shape = obs_shape[:-1] + (OBS + 1,)
        suspects.add("obs")
    obs_dtype = torch.float32 if clean else draw(st.sampled_from(FLOATS + (torch.int64,)))
    obs = tensor(draw(arrays(obs_shape, clean)), obs_dtype)
    as_numpy = draw(st.integers(0, 3)) == 0 and obs_dtype.is_floating_point
    if obs_dtype not in (torch.float32, torch.float16) and not as_numpy:
        suspects.add("obs")  # a tensor must cast to the model's dtype exactly (numpy floats are converted)
    if as_numpy:
        obs = obs.numpy()
        if obs_dtype == torch.float64 and scale(torch.from_numpy(obs).float()) == math.inf:
            suspects.add("obs")
    if scale(torch.as_tensor(obs)) > MODERATE:
        suspects.update({"obs", "actions"})
    h = horizon if isinstance(horizon, int) and horizon >= 1 else 1
    init = draw(st.sampled_from(["none", "zeros", "numpy64"] if clean else
                                ["none", "zeros", "zeros", "numpy64", "float64", "int", "nan", "shape", "envs"]))
    lead = (b,) if env else ()
    init_mean = {"none": None, "zeros": torch.zeros(*lead, h, A), "numpy64": np.zeros((*lead, h, A)),
                 "float64": torch.zeros(*lead, h, A, dtype=torch.float64), "int": torch.zeros(*lead, h, A, dtype=torch.int64),
                 "nan": torch.full((*lead, h, A), math.nan), "shape": torch.zeros(*lead, h + 1, A),
                 "envs": torch.zeros(h, A) if env else torch.zeros(2, h, A)}[init]
    if init in ("float64", "int", "nan", "shape", "envs"):
        suspects.add("init_mean")
    return planner, name, batched, horizon, kwargs, obs, init_mean, suspects


def check_plan(case) -> str:
    """Property of ``Planner(...).plan(make_objective(model, obs), init_mean)``: bounded, finite, right shape."""
    planner_name, name, batched, horizon, kwargs, obs, init_mean, suspects = case
    model = adapted(name, batched)
    try:
        planner = PLANNER_CLASSES[planner_name](-np.ones(A, np.float32), np.ones(A, np.float32), horizon, **kwargs)
        objective = make_objective(model, obs)
        plan = planner.plan(objective, init_mean)
    except Exception as e:  # noqa: BLE001
        outcome = check_error(e, suspects)
    else:
        outcome = "ok"
        env = objective.batched
        want = ((objective.num_envs,) if env else ()) + (planner.horizon, A)
        assert tuple(plan.shape) == want, (plan.shape, want)
        assert all_finite(plan) and bool((plan.abs() <= 1).all()), "a plan outside the bounds or non-finite"
    if not suspects:
        assert outcome == "ok", f"valid input of moderate scale was rejected ({outcome})"
    return outcome


# ---------------------------------------------------------------------------- the tests (CI profile)
ENTRY_POINTS = {"adapt": (adapt_cases, check_adapt), "predict": (predict_cases, check_predict),
                "imagine": (imagine_cases, check_imagine), "plan": (plan_cases, check_plan)}


@FUZZ
@given(adapt_cases())
def test_fuzz_adapt(case):
    check_adapt(case)


@FUZZ
@given(predict_cases())
def test_fuzz_predict(case):
    check_predict(case)


@FUZZ
@given(imagine_cases())
def test_fuzz_imagine(case):
    check_imagine(case)


@FUZZ
@given(plan_cases())
def test_fuzz_plan(case):
    check_plan(case)
