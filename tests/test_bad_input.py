"""adapt and predict reject bad input with a ValueError naming the field, expected and actual."""

import pytest
import torch
from conftest import random_transitions, small_model

from meta_mbrl import MAML, Transitions


@pytest.fixture
def learner():
    return MAML(small_model(), inner_lr=0.01)


def test_wrong_obs_dim(learner):
    tr = random_transitions(8, obs_dim=6)
    with pytest.raises(ValueError, match=r"context\.obs: expected last dimension 5, got shape \(8, 6\)"):
        learner.adapt(tr)


def test_wrong_act_dim_in_predict(learner):
    adapted = learner.adapt(random_transitions(8))
    with pytest.raises(ValueError, match=r"act: expected last dimension 2, got shape \(3, 4\)"):
        adapted.predict(torch.zeros(3, 5), torch.zeros(3, 4))


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_nan_inf(learner, bad):
    tr = random_transitions(8)
    tr.reward[3] = bad
    with pytest.raises(ValueError, match=r"context\.reward: expected finite values, got 1 NaN/Inf"):
        learner.adapt(tr)
    obs = torch.zeros(2, 5)
    obs[0, 0] = bad
    with pytest.raises(ValueError, match=r"^obs: expected finite"):
        learner.adapt(random_transitions(8)).predict(obs, torch.zeros(2, 2))


def test_empty_context(learner):
    with pytest.raises(ValueError, match=r"context: expected at least one transition, got an empty batch \(0,\)"):
        learner.adapt(random_transitions(0))


def test_mismatched_batch_dims(learner):
    tr = random_transitions(8)
    bad = Transitions(tr.obs, tr.act[:7], tr.reward, tr.next_obs)
    with pytest.raises(ValueError, match=r"context\.act: expected batch dims \(8,\).*got \(7,\)"):
        learner.adapt(bad)
    bad = Transitions(tr.obs, tr.act, tr.reward[:5], tr.next_obs)
    with pytest.raises(ValueError, match=r"context\.reward: expected batch dims \(8,\).*got \(5,\)"):
        learner.adapt(bad)
    with pytest.raises(ValueError, match=r"act: expected batch dims \(3,\).*got \(4,\)"):
        learner.adapt(tr).predict(torch.zeros(3, 5), torch.zeros(4, 2))


def test_wrong_dtype(learner):
    tr = random_transitions(8, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"context\.obs: expected dtype torch.float32, got torch.float64"):
        learner.adapt(tr)
    with pytest.raises(ValueError, match=r"obs: expected dtype torch.float32, got torch.float64"):
        learner.adapt(random_transitions(8)).predict(torch.zeros(3, 5, dtype=torch.float64), torch.zeros(3, 2))


def test_wrong_device(learner):
    tr = random_transitions(8)
    meta = Transitions(*(x.to("meta") for x in tr))
    with pytest.raises(ValueError, match=r"context\.obs: expected device cpu, got meta"):
        learner.adapt(meta)
    with pytest.raises(ValueError, match=r"obs: expected device cpu, got meta"):
        learner.adapt(tr).predict(torch.zeros(3, 5, device="meta"), torch.zeros(3, 2, device="meta"))


def test_not_transitions_and_too_many_dims(learner):
    with pytest.raises(ValueError, match="context: expected a meta_mbrl.Transitions, got tuple"):
        learner.adapt(tuple(random_transitions(8)))
    with pytest.raises(ValueError, match=r"context\.obs: expected 1\.\.2 batch dims"):
        learner.adapt(random_transitions(2, 3, 8))


def test_batched_adapted_model_needs_task_dim(learner):
    adapted = learner.adapt(random_transitions(3, 8))
    with pytest.raises(ValueError, match=r"obs: expected a leading task dim of 3"):
        adapted.predict(torch.zeros(2, 5), torch.zeros(2, 2))


# ---------------------------------------------------------------------------- values that overflow
ALL = [*__import__("meta_mbrl.meta", fromlist=["LEARNER_NAMES"]).LEARNER_NAMES]


def tiny(name, ensemble=1, **kw):
    from meta_mbrl.meta import make_learner

    learner = make_learner(name, 5, 2, hidden=(8,), seed=0, ensemble=ensemble, **kw)
    (learner.fit_normalizers if ensemble > 1 else learner.model.fit_normalizers)(random_transitions(200, seed=1))
    return learner


def finite_model(am) -> bool:
    z = am.task_vector
    return all(bool(torch.isfinite(v).all()) for v in am.params.values()) and (z is None or bool(torch.isfinite(z).all()))


@pytest.mark.parametrize("ensemble", [1, 2])
@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("big", [1e30, 3e38])
def test_overflowing_context_gives_finite_model_or_names_context(name, ensemble, big):
    learner = tiny(name, ensemble)
    ctx = random_transitions(8)
    ctx.obs[0, 0] = big
    opts = {"steps": 3} if name == "finetune" else {}
    try:
        am = learner.adapt(ctx, **opts)
    except ValueError as e:
        assert str(e).startswith("context: adaptation produced non-finite"), e
        assert "the context holds values up to |x|=" in str(e) and "after normalization" in str(e)
    else:
        assert finite_model(am), name
        obs = torch.randn(3, 5)
        try:  # a finite but far-out task vector: predict raises rather than returning inf
            pred = am.predict(obs, torch.zeros(3, 2))
        except ValueError as e:
            assert str(e).startswith(("obs: ", "act: ")), e
        else:
            assert all(bool(torch.isfinite(t).all()) for t in pred if t is not None)


def test_maml_1e30_context_names_context_with_scales(learner):
    ctx = random_transitions(8)
    ctx.obs[0, 0] = 1e30
    with pytest.raises(ValueError, match=r"^context: adaptation produced non-finite parameters \(layers\.0\.weight.*"
                                         r"values up to \|x\|=1e\+30 .*after normalization.*\(1 inner step\(s\), step size 0\.01\)"):
        learner.adapt(ctx)
    assert learner.adapt(ctx, steps=0) is not None  # no step: the prior, finite, whatever the context


def test_predict_on_finite_inputs_never_returns_non_finite(learner):
    adapted = learner.adapt(random_transitions(8))
    with pytest.raises(ValueError, match=r"^obs: the model's prediction is not finite for these finite inputs \(\|obs\| up to 3e\+38"):
        adapted.predict(torch.full((2, 5), 3e38), torch.zeros(2, 2))
    from meta_mbrl.adaptation import check_prediction
    from meta_mbrl.types import Prediction

    inf = Prediction(torch.full((2, 5), float("inf")), torch.zeros(2))
    with pytest.raises(ValueError, match=r"^act: the model's prediction is not finite"):  # names the input furthest out
        check_prediction(adapted, inf, torch.zeros(2, 5), torch.full((2, 2), 1e30))
    ens = tiny("maml", ensemble=2).adapt(random_transitions(8))
    for fn in (ens.predict, ens.predict_members):
        with pytest.raises(ValueError, match=r"^obs: the model's prediction is not finite"):
            fn(torch.full((2, 5), 3e38), torch.zeros(2, 2))


# ---------------------------------------------------------------------------- steps, learning rates, options
BAD_STEPS = [1.5, 2.0, True, -1, "3"]
BAD_LR = [float("nan"), float("inf"), -0.1, 0.0, 1e30, True, "0.1"]


@pytest.mark.parametrize("name", ["maml", "anil", "reptile", "multitask", "finetune"])
def test_gradient_learners_reject_bad_steps_and_lr_by_name(name):
    learner = tiny(name)
    ctx = random_transitions(8)
    for bad in BAD_STEPS:
        with pytest.raises(ValueError, match=r"^steps: expected an integer >= 0, got"):
            learner.adapt(ctx, steps=bad)
    for bad in BAD_LR:
        with pytest.raises(ValueError, match=r"^lr: expected a finite number in \(0\.0, 10000\.0\], got"):
            learner.adapt(ctx, steps=1, lr=bad)
    import numpy as np

    assert learner.adapt(ctx, steps=np.int64(2), lr=np.float32(0.01)) is not None  # numpy scalars are numbers


@pytest.mark.parametrize("name,kwargs,arg", [
    ("maml", {"inner_lr": float("nan")}, "inner_lr"), ("maml", {"inner_lr": 0.0}, "inner_lr"),
    ("maml", {"inner_steps": 1.5}, "inner_steps"), ("maml", {"inner_steps": True}, "inner_steps"),
    ("metasgd", {"inner_lr": 1e30}, "inner_lr"), ("reptile", {"inner_steps": 0}, "inner_steps"),
    ("reptile", {"inner_lr": -1.0}, "inner_lr"), ("multitask", {"inner_lr": float("inf")}, "inner_lr"),
    ("multitask", {"inner_steps": -2}, "inner_steps"), ("finetune", {"adapt_lr": 0}, "adapt_lr"),
    ("finetune", {"adapt_steps": 2.0}, "adapt_steps"), ("pearl", {"kl_weight": float("nan")}, "kl_weight"),
    ("pearl", {"min_var": 0.0}, "min_var"), ("cadm", {"backward_weight": -1.0}, "backward_weight"),
    ("cadm", {"encoder_hidden": (0,)}, "encoder_hidden"), ("cadm", {"encoder_hidden": 64}, "encoder_hidden"),
])
def test_learner_constructors_name_the_bad_argument(name, kwargs, arg):
    with pytest.raises(ValueError, match=rf"^{arg}: expected"):
        tiny(name, **kwargs)


def test_every_learner_takes_the_same_options_or_rejects_them_by_name():
    from meta_mbrl.meta import LEARNER_CLASSES

    ctx = random_transitions(8)
    for name in ALL:
        learner = tiny(name)
        accepted = LEARNER_CLASSES[name].ADAPT_OPTIONS
        assert isinstance(accepted, tuple) and set(accepted) <= {"steps", "lr", "sample", "generator"}
        learner.adapt(ctx, steps=None, lr=None, sample=None, generator=None)  # None: every learner's default
        for key, value in (("steps", 3), ("lr", 0.01), ("sample", True), ("generator", torch.Generator())):
            if key in accepted:
                learner.adapt(ctx, **{key: value})
            else:
                with pytest.raises(ValueError, match=rf"^{key}: {name}"):
                    learner.adapt(ctx, **{key: value})
        with pytest.raises(ValueError, match=rf"^stepz: not an adapt option of {name}; expected one of"):
            learner.adapt(ctx, stepz=3)
    with pytest.raises(ValueError, match=r"^steps: cadm adapts in one forward pass of its encoder and takes no gradient "
                                         r"steps; got steps=3$"):
        tiny("cadm").adapt(ctx, steps=3)


def test_pearl_options_are_checked():
    pearl = tiny("pearl")
    ctx = random_transitions(8)
    with pytest.raises(ValueError, match=r"^sample: expected True or False, got 1"):
        pearl.adapt(ctx, sample=1)
    with pytest.raises(ValueError, match=r"^generator: expected None or a torch.Generator on cpu, got int"):
        pearl.adapt(ctx, sample=True, generator=3)


# ---------------------------------------------------------------------------- model sizes, devices, helpers
@pytest.mark.parametrize("kwargs,arg", [
    ({"hidden": (0,)}, "hidden"), ({"hidden": (-4,)}, "hidden"), ({"hidden": (8.5,)}, "hidden"), ({"hidden": ()}, "hidden"),
    ({"hidden": "64"}, "hidden"), ({"obs_dim": 0}, "obs_dim"), ({"act_dim": -1}, "act_dim"), ({"obs_dim": 2.0}, "obs_dim"),
    ({"context_dim": -1}, "context_dim"), ({"context_dim": 1.5}, "context_dim"), ({"reward_weight": float("nan")}, "reward_weight"),
    ({"activation": ["relu"]}, "activation"), ({"gaussian": "yes"}, "gaussian"),
])
def test_model_sizes_are_named(kwargs, arg):
    from meta_mbrl.models import DynamicsMLP

    args = {"obs_dim": 3, "act_dim": 1, "hidden": (8,), **kwargs}
    with pytest.raises(ValueError, match=rf"^{arg}: expected"):
        DynamicsMLP(**args)


def test_normalizer_lives_with_the_models_and_is_reexported():
    import meta_mbrl
    import meta_mbrl.data
    import meta_mbrl.data.normalizer
    import meta_mbrl.models
    import meta_mbrl.models.normalizer

    cls = meta_mbrl.models.normalizer.Normalizer
    assert cls.__module__ == "meta_mbrl.models.normalizer"
    assert meta_mbrl.Normalizer is meta_mbrl.data.Normalizer is meta_mbrl.models.Normalizer is meta_mbrl.data.normalizer.Normalizer is cls
    with pytest.raises(ValueError, match=r"^dim: expected an integer >= 1, got 0"):
        cls(0)
    with pytest.raises(ValueError, match=r"^x: expected finite values to fit a Normalizer, got 1 NaN/Inf"):
        cls(2).fit(torch.tensor([[0.0, 1.0], [float("nan"), 2.0]]))


def test_ensemble_and_registry_import_one_way():
    """``meta/ensemble.py`` imports the registry at module level and the registry never imports the ensemble
    (``make_learner`` lives in ``meta/factory.py``, above both): no cycle. There is one learner registry,
    which checkpoints use too."""
    import ast
    import inspect

    from meta_mbrl.meta import ensemble, registry

    def module_level_imports(mod):
        return {n.module for n in ast.parse(inspect.getsource(mod)).body if isinstance(n, ast.ImportFrom)}

    assert "meta_mbrl.meta.registry" in module_level_imports(ensemble)
    assert "meta_mbrl.meta.ensemble" not in module_level_imports(registry)
    nested = [n for n in ast.walk(ast.parse(inspect.getsource(ensemble))) if isinstance(n, ast.ImportFrom)]
    assert all(n.module != "meta_mbrl.meta.registry" or n.col_offset == 0 for n in nested)
    assert "meta_mbrl.meta.ensemble" not in {n.module for n in ast.walk(ast.parse(inspect.getsource(registry)))
                                             if isinstance(n, ast.ImportFrom)}
    from meta_mbrl.meta import LEARNERS, Ensemble
    from meta_mbrl.training import checkpoint

    assert checkpoint.LEARNERS is LEARNERS and LEARNERS["ensemble"] is Ensemble


def test_check_device_one_line_messages():
    from meta_mbrl.checks import check_device

    assert check_device("device", "cpu") == torch.device("cpu")
    for bad in ("gpu", "cuda:x", 3, None):
        with pytest.raises(ValueError, match=r"^device: expected"):
            check_device("device", bad)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match=r"^device: 'cuda' is not available") as e:
            check_device("device", "cuda")
        assert "\n" not in str(e.value) and str(e.value).endswith("use cpu")
        if torch.version.cuda is None:
            assert f"this torch build ({torch.__version__}, no CUDA)" in str(e.value)


def test_scalar_checks():
    import numpy as np

    from meta_mbrl.checks import check_float, check_int, check_positive_float

    assert check_int("n", np.int32(4), 1) == 4 and check_int("n", torch.tensor(3), 0) == 3
    for bad in (True, 2.0, "2", np.bool_(True), torch.tensor(2.0), None):
        with pytest.raises(ValueError, match=r"^n: expected an integer"):
            check_int("n", bad, 0)
    with pytest.raises(ValueError, match=r"^n: expected an integer in \[1, 3\], got 4"):
        check_int("n", 4, 1, 3)
    assert check_positive_float("lr", np.float32(0.5)) == 0.5 and check_positive_float("lr", torch.tensor(0.5)) == 0.5
    for bad in (float("nan"), float("-inf"), 0, -1, True, "1", 10**400, None):
        with pytest.raises(ValueError, match=r"^lr: expected a finite number in \(0\.0, "):
            check_positive_float("lr", bad)
    with pytest.raises(ValueError, match=r"^x: expected a finite number in \[0\.0, 1\.0\), got 1\.0"):
        check_float("x", 1.0, 0.0, 1.0, high_open=True)
