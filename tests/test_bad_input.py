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
