"""meta_train: learning, logs, atomic checkpoints, exact resume; checkpoint loading runs no code."""

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import small_model

from meta_mbrl import MAML, DynamicsMLP, collect, learner_from_checkpoint, load_checkpoint, meta_train


@pytest.fixture(scope="module")
def pm_buffer(pm_suite):
    return collect(pm_suite, pm_suite.train_tasks, episodes_per_task=4, seed=0, progress=False)


def make_learner(seed=0, **kw):
    torch.manual_seed(seed)
    return MAML(DynamicsMLP(4, 2, hidden=(32, 32)), inner_lr=0.05, **kw)


def test_meta_train_learns_and_adaptation_helps(pm_buffer):
    learner = make_learner()
    log = meta_train(learner, pm_buffer, steps=300, support=16, query=16, progress=False, log_every=50)
    assert list(log.step) == [50, 100, 150, 200, 250, 300]
    assert log.query_loss.iloc[-1] < 0.7 * log.query_loss.iloc[0]
    assert log.query_loss.iloc[-1] < log.query_loss_pre.iloc[-1]  # adapted beats unadapted on held-out windows


def test_checkpoint_resume_is_exact(tmp_path, pm_buffer):
    full = make_learner()
    meta_train(full, pm_buffer, steps=40, run_dir=tmp_path / "a", checkpoint_every=20, progress=False, log_every=10)
    part = make_learner()
    meta_train(part, pm_buffer, steps=20, run_dir=tmp_path / "b", checkpoint_every=20, progress=False, log_every=10)
    resumed = make_learner(seed=123)  # a fresh process: different init, state comes from the checkpoint
    meta_train(resumed, pm_buffer, steps=40, run_dir=tmp_path / "b", checkpoint_every=20, progress=False, log_every=10)
    for (k, a), b in zip(full.state_dict().items(), resumed.state_dict().values()):
        torch.testing.assert_close(a, b, msg=k)
    log_a, log_b = pd.read_csv(tmp_path / "a" / "train_log.csv"), pd.read_csv(tmp_path / "b" / "train_log.csv")
    assert list(log_b.step) == [10, 20, 30, 40]
    np.testing.assert_allclose(log_a.query_loss, log_b.query_loss, rtol=1e-5)


def test_checkpoint_records_config_normalizers_env_steps(tmp_path, pm_buffer):
    learner = make_learner(meta_sgd=True)
    meta_train(learner, pm_buffer, steps=5, run_dir=tmp_path, progress=False, config={"suite": "point-mass"})
    ckpt = load_checkpoint(tmp_path)
    assert ckpt["env_steps"] == pm_buffer.env_steps and ckpt["config"] == {"suite": "point-mass"}
    assert ckpt["sources"][0]["policy"] == "colored-noise"
    assert "model.delta_norm.std" in ckpt["state_dict"] and "inner_lrs.layers__0__weight" in ckpt["state_dict"]
    rebuilt = learner_from_checkpoint(tmp_path)
    assert rebuilt.meta_sgd
    obs, act = torch.randn(3, 4), torch.randn(3, 2)
    torch.testing.assert_close(rebuilt.model.predict(obs, act).next_obs, learner.model.predict(obs, act).next_obs)
    torch.testing.assert_close(rebuilt.model.delta_norm.std, learner.model.delta_norm.std)
    assert not torch.allclose(rebuilt.model.delta_norm.std, torch.ones(4))


def test_checkpoint_refuses_pickled_code(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    torch.save({"format": "meta_mbrl.checkpoint/1", "x": Evil()}, tmp_path / "checkpoint.pt")
    with pytest.raises(Exception, match="(?i)weights_only|unsupported global"):
        load_checkpoint(tmp_path)
    with pytest.raises(ValueError, match="checkpoint: no checkpoint file"):
        load_checkpoint(tmp_path / "nowhere")


def test_meta_train_validates_arguments(pm_buffer):
    with pytest.raises(ValueError, match="steps: expected >= 0"):
        meta_train(make_learner(), pm_buffer, steps=-1, progress=False)
    with pytest.raises(ValueError, match="support/query: expected >= 1"):
        meta_train(make_learner(), pm_buffer, steps=1, support=0, progress=False)


def test_meta_train_stops_loudly_when_the_inner_loop_diverges(pm_suite, tmp_path):
    buf = collect(pm_suite, pm_suite.train_tasks[:4], episodes_per_task=1, progress=False)
    learner = MAML(small_model(4, 2), inner_lr=1e6, inner_steps=3)  # an absurd step size blows up at once
    with pytest.raises(FloatingPointError, match="meta_loss: expected a finite loss, got nan at step 1"):
        meta_train(learner, buf, steps=5, tasks_per_batch=2, support=8, query=8, run_dir=tmp_path, progress=False)
