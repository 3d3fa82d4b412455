"""meta_train: learning, logs, atomic checkpoints, exact resume, reproducible files; checkpoint loading runs
no code and every damaged checkpoint gives one clean error; append-only logs; the run-directory lock.
(Kill -9, NaN updates and corrupted files end to end: tests/test_faults.py.)"""

import json
import os

import numpy as np
import pytest
import torch
from conftest import small_model

import meta_mbrl.io
from meta_mbrl import MAML, DynamicsMLP, collect, learner_from_checkpoint, load_checkpoint, meta_train
from meta_mbrl.errors import DivergenceError, FileFormatError
from meta_mbrl.io import atomic_path
from meta_mbrl.training import CSVLogger, RunDirLock, read_log, save_checkpoint, state_dict_checksum


@pytest.fixture(scope="module")
def pm_buffer(pm_suite):
    return collect(pm_suite, pm_suite.train_tasks, episodes_per_task=4, seed=0, progress=False)


@pytest.fixture(scope="module")
def small_buffer(pm_suite):
    return collect(pm_suite, pm_suite.train_tasks[:8], episodes_per_task=1, seed=0, progress=False)


def make_learner(seed=0, **kw):
    torch.manual_seed(seed)
    return MAML(DynamicsMLP(4, 2, hidden=(32, 32)), inner_lr=0.05, **kw)


def tiny(seed=0):
    torch.manual_seed(seed)
    return MAML(DynamicsMLP(4, 2, hidden=(16,)), inner_lr=0.05)


FAST = dict(tasks_per_batch=4, support=8, query=8, progress=False)
pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models; also what the bit-identity checks assume


def test_meta_train_learns_and_adaptation_helps(pm_buffer):
    learner = make_learner()
    log = meta_train(learner, pm_buffer, steps=300, support=16, query=16, progress=False, log_every=50)
    assert list(log.step) == [50, 100, 150, 200, 250, 300]
    assert log.query_loss.iloc[-1] < 0.7 * log.query_loss.iloc[0]
    assert log.query_loss.iloc[-1] < log.query_loss_pre.iloc[-1]  # adapted beats unadapted on held-out windows


# ---------------------------------------------------------------------------------------------- resume, reproducibility
def test_resume_is_exact_and_files_are_bit_identical(tmp_path, small_buffer):
    kw = dict(FAST, checkpoint_every=5, log_every=5)
    full = tiny()
    log = meta_train(full, small_buffer, steps=20, run_dir=tmp_path / "a", **kw)
    again = tiny()
    meta_train(again, small_buffer, steps=20, run_dir=tmp_path / "c", **kw)
    part = tiny()
    meta_train(part, small_buffer, steps=10, run_dir=tmp_path / "b", **kw)
    resumed = tiny(seed=123)  # a fresh process: different init, state comes from the checkpoint
    meta_train(resumed, small_buffer, steps=20, run_dir=tmp_path / "b", **kw)
    for k, v in full.state_dict().items():
        assert torch.equal(v, resumed.state_dict()[k]), k
    for name in ("checkpoint.pt", "train_log.csv"):  # same seed, same thread count: the same bytes
        a = (tmp_path / "a" / name).read_bytes()
        assert a == (tmp_path / "c" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    assert list(read_log(tmp_path / "b" / "train_log.csv").step) == [5, 10, 15, 20]
    assert "sec_per_step" not in read_log(tmp_path / "a" / "train_log.csv")  # wall clock lives in timing.csv
    assert list(read_log(tmp_path / "a" / "timing.csv").columns) == ["step", "sec_per_step"]
    assert "sec_per_step" in log and list(log.step) == [5, 10, 15, 20]


def test_resume_carries_the_log_running_mean(tmp_path, small_buffer):
    kw = dict(FAST, checkpoint_every=4, log_every=3)  # checkpoints fall between log rows
    meta_train(tiny(), small_buffer, steps=12, run_dir=tmp_path / "a", **kw)
    interrupted = tiny()
    meta_loss, calls = interrupted.meta_loss, [0]

    def interrupt_in_step_11(batch):
        calls[0] += 1
        if calls[0] == 11:
            raise KeyboardInterrupt
        return meta_loss(batch)

    interrupted.meta_loss = interrupt_in_step_11
    with pytest.raises(KeyboardInterrupt):
        meta_train(interrupted, small_buffer, steps=12, run_dir=tmp_path / "b", **kw)
    assert load_checkpoint(tmp_path / "b")["step"] == 8  # steps 7 and 8 are in the running mean of row 9
    meta_train(tiny(9), small_buffer, steps=12, run_dir=tmp_path / "b", **kw)
    a, b = read_log(tmp_path / "a" / "train_log.csv"), read_log(tmp_path / "b" / "train_log.csv")
    assert list(b.step) == [3, 6, 9, 12] and a.equals(b)
    assert (tmp_path / "b" / "train_log.csv").read_text().count("\n9,") == 2  # logged by both; the last one counts


def test_resume_takes_the_lr_passed_now(tmp_path, small_buffer):
    meta_train(tiny(), small_buffer, steps=5, lr=1e-3, run_dir=tmp_path, **FAST)
    assert load_checkpoint(tmp_path)["optimizer"]["param_groups"][0]["lr"] == 1e-3
    meta_train(tiny(), small_buffer, steps=6, lr=1e-4, run_dir=tmp_path, **FAST)
    assert load_checkpoint(tmp_path)["optimizer"]["param_groups"][0]["lr"] == 1e-4


def test_a_log_begun_with_sec_per_step_is_resumed_in_its_own_columns(tmp_path, small_buffer):
    meta_train(tiny(), small_buffer, steps=2, run_dir=tmp_path, log_every=1, **FAST)
    path = tmp_path / "train_log.csv"
    lines = path.read_text().splitlines()  # as written before wall-clock times moved to timing.csv
    path.write_text("".join(line + (",sec_per_step" if i == 0 else ",0.01") + "\n" for i, line in enumerate(lines)))
    meta_train(tiny(), small_buffer, steps=3, run_dir=tmp_path, log_every=1, **FAST)
    log = read_log(path)
    assert list(log.step) == [1, 2, 3] and log.columns[-1] == "sec_per_step" and log.notna().all().all()


def test_same_state_saves_to_identical_bytes(tmp_path):
    learner = tiny()
    opt = torch.optim.Adam(learner.parameters())
    a = save_checkpoint(tmp_path / "one.pt", learner, opt, step=3)
    b = save_checkpoint(tmp_path / "other" / "two.pt", learner, opt, step=3)
    assert a.read_bytes() == b.read_bytes()
    ckpt = load_checkpoint(a)
    assert ckpt["format"] == "meta_mbrl.checkpoint/2" and ckpt["checksum"] == state_dict_checksum(learner.state_dict())


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


# ---------------------------------------------------------------------------------------------- checkpoint validation
def test_checkpoint_refuses_pickled_code(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    torch.save({"format": "meta_mbrl.checkpoint/2", "x": Evil()}, tmp_path / "checkpoint.pt")
    with pytest.raises(FileFormatError, match="could run code") as e:
        load_checkpoint(tmp_path)
    assert "weights_only" not in str(e.value)
    with pytest.raises(FileFormatError, match="checkpoint: no checkpoint file at '.*nowhere'"):
        load_checkpoint(tmp_path / "nowhere")


@pytest.fixture
def payload(tmp_path):
    """A good checkpoint's raw payload (with an optimizer state), to damage."""
    learner = tiny()
    opt = torch.optim.Adam(learner.parameters())
    for p in learner.parameters():
        p.grad = torch.ones_like(p)
    opt.step()
    save_checkpoint(tmp_path / "good.pt", learner, opt, step=1)
    return torch.load(tmp_path / "good.pt", weights_only=True)


def _nan_weight(p):
    p["state_dict"]["model.layers.0.weight"][1, 2] = float("nan")
    p["checksum"] = state_dict_checksum(p["state_dict"])


def _nan_adam(p):
    p["optimizer"]["state"][0]["exp_avg"][0, 0] = float("inf")


@pytest.mark.parametrize("damage, match", [
    (lambda p: p.pop("state_dict"), r"is missing the fields \['state_dict'\]"),
    (lambda p: p.update(step="5"), r"field 'step': expected int, got str"),
    (lambda p: p.update(step=True), r"field 'step': expected int, got bool"),
    (lambda p: p.update(state_dict={"w": [1.0]}), r"field 'state_dict': expected str names of tensors, got 'w': list"),
    (lambda p: p.update(config="{not json"), r"field 'config': expected JSON, got invalid JSON"),
    (lambda p: p.update(sources='{"a": 1}'), r"field 'sources': expected a JSON list, got dict"),
    (lambda p: p.update(format="other/9"), r"has format 'other/9', expected 'meta_mbrl.checkpoint/2'"),
    (lambda p: p.update(torch_rng=torch.zeros(3)), r"field 'torch_rng': expected a 1-d uint8 tensor"),
    (lambda p: p.update(optimizer={"x": 1}), r"field 'optimizer': expected an optimizer state dict"),
    (lambda p: p["state_dict"]["model.layers.1.bias"].add_(1e-6), r"fails its checksum"),
    (_nan_weight, r"holds NaN/Inf values in state_dict tensors model\.layers\.0\.weight"),
    (_nan_adam, r"holds NaN/Inf values in optimizer state tensors state\[0\]\.exp_avg"),
], ids=["missing", "type", "bool", "tensor", "json", "json-type", "format", "rng", "optimizer", "checksum", "nan", "adam-inf"])
def test_load_checkpoint_names_what_is_wrong(tmp_path, payload, damage, match):
    damage(payload)
    torch.save(payload, tmp_path / "bad.pt")
    with pytest.raises(FileFormatError, match=rf"^checkpoint: '.*bad\.pt' {match}"):
        load_checkpoint(tmp_path / "bad.pt")


def test_load_checkpoint_rejects_non_checkpoints(tmp_path):
    (tmp_path / "empty.pt").write_bytes(b"")
    with pytest.raises(FileFormatError, match=r"'.*empty\.pt' is empty \(0 bytes\)"):
        load_checkpoint(tmp_path / "empty.pt")
    (tmp_path / "text.pt").write_text("step,loss\n")
    with pytest.raises(FileFormatError, match=r"'.*text\.pt' is not a checkpoint: expected a torch\.save zip archive"):
        load_checkpoint(tmp_path / "text.pt")
    torch.save([torch.zeros(2)], tmp_path / "list.pt")
    with pytest.raises(FileFormatError, match=r"expected a dict of fields, got list"):
        load_checkpoint(tmp_path / "list.pt")
    np.savez(tmp_path / "arrays.npz", x=np.zeros(3))  # a zip archive, but not torch's
    with pytest.raises(FileFormatError, match=r"'.*arrays\.npz' could not be read \(.*\); it is corrupted or not a checkpoint"):
        load_checkpoint(tmp_path / "arrays.npz")


def test_format_1_checkpoints_still_load(tmp_path, payload):
    payload["format"] = "meta_mbrl.checkpoint/1"
    del payload["checksum"]
    torch.save(payload, tmp_path / "old.pt")
    assert type(learner_from_checkpoint(tmp_path / "old.pt")).__name__ == "MAML"
    _nan_weight(payload)
    del payload["checksum"]
    torch.save(payload, tmp_path / "old.pt")
    with pytest.raises(FileFormatError, match="holds NaN/Inf values"):  # finiteness is still checked
        load_checkpoint(tmp_path / "old.pt")


def test_learner_from_checkpoint_checks_shapes_and_names(tmp_path, payload):
    payload["state_dict"]["model.layers.0.weight"] = torch.zeros(16, 7)
    payload["checksum"] = state_dict_checksum(payload["state_dict"])
    torch.save(payload, tmp_path / "shape.pt")
    with pytest.raises(FileFormatError, match=r"'.*shape\.pt': state_dict\['model\.layers\.0\.weight'\] has shape \(16, 7\), "
                                              r"the network rebuilt from its saved arguments expects \(16, 6\)"):
        learner_from_checkpoint(tmp_path / "shape.pt")
    del payload["state_dict"]["model.layers.1.bias"]
    payload["state_dict"]["extra.weight"] = torch.zeros(1)
    payload["checksum"] = state_dict_checksum(payload["state_dict"])
    torch.save(payload, tmp_path / "keys.pt")
    with pytest.raises(FileFormatError, match=r"does not fit the network rebuilt from its saved arguments: missing tensors "
                                              r"model\.layers\.1\.bias; unexpected tensors extra\.weight"):
        learner_from_checkpoint(tmp_path / "keys.pt")
    payload["learner"] = "nope"
    torch.save(payload, tmp_path / "name.pt")
    with pytest.raises(FileFormatError, match=r"holds learner 'nope', expected one of \[.*'maml'.*\]"):
        learner_from_checkpoint(tmp_path / "name.pt")


def test_save_checkpoint_refuses_nonfinite_state(tmp_path):
    learner = tiny()
    save_checkpoint(tmp_path / "c.pt", learner, step=1)
    before = (tmp_path / "c.pt").read_bytes()
    with torch.no_grad():
        learner.model.delta_norm.std[0] = float("inf")  # a buffer, not a parameter
    with pytest.raises(DivergenceError, match=r"refusing to write '.*c\.pt' at step 2: state_dict tensors "
                                              r"model\.delta_norm\.std hold NaN/Inf"):
        save_checkpoint(tmp_path / "c.pt", learner, step=2)
    assert (tmp_path / "c.pt").read_bytes() == before and not list(tmp_path.glob(".*.tmp"))


def test_meta_train_refuses_a_checkpoint_of_another_network(tmp_path, small_buffer):
    meta_train(tiny(), small_buffer, steps=2, run_dir=tmp_path, **FAST)
    other = MAML(DynamicsMLP(4, 2, hidden=(8,)))
    with pytest.raises(FileFormatError, match=r"state_dict\['model\.layers\.0\.weight'\] has shape \(16, 6\), the learner "
                                              r"passed to meta_train \(MAML\) expects \(8, 6\)"):
        meta_train(other, small_buffer, steps=4, run_dir=tmp_path, **FAST)


# ---------------------------------------------------------------------------------------------- arguments, divergence
def test_meta_train_validates_arguments(pm_buffer):
    with pytest.raises(ValueError, match="steps: expected >= 0"):
        meta_train(make_learner(), pm_buffer, steps=-1, progress=False)
    with pytest.raises(ValueError, match="support/query: expected >= 1"):
        meta_train(make_learner(), pm_buffer, steps=1, support=0, progress=False)
    with pytest.raises(ValueError, match="lr: expected a finite number > 0, got nan"):
        meta_train(make_learner(), pm_buffer, steps=1, lr=float("nan"), progress=False)


def test_meta_train_stops_loudly_when_the_inner_loop_diverges(pm_suite, tmp_path):
    buf = collect(pm_suite, pm_suite.train_tasks[:4], episodes_per_task=1, progress=False)
    learner = MAML(small_model(4, 2), inner_lr=1e4, inner_steps=3)  # an absurd step size blows up at once
    with pytest.raises(DivergenceError, match=r"^meta_loss: expected a finite loss, got nan at step 1 .*no checkpoint was "
                                              r"written yet.*lower the outer lr \(now 0\.001\) or the learner's inner_lr"):
        meta_train(learner, buf, steps=5, tasks_per_batch=2, support=8, query=8, run_dir=tmp_path, progress=False)
    assert not (tmp_path / "checkpoint.pt").exists()


# ---------------------------------------------------------------------------------------------- logs
def test_csv_logger_appends_and_read_log_keeps_the_last_row_per_step(tmp_path):
    path = tmp_path / "log.csv"
    log = CSVLogger(path)
    for s in range(1, 5):
        log.log({"step": s, "loss": 1.0 / s})
    log.close()
    before = path.read_bytes()
    resumed = CSVLogger(path, resume_step=2)  # a run killed after step 4, resumed from its step-2 checkpoint
    resumed.log({"step": 3, "loss": 0.3})
    resumed.close()
    assert path.read_bytes().startswith(before)  # appended, never rewritten
    df = read_log(path)
    assert df.step.tolist() == [1, 2, 3, 4] and df.loss.tolist() == [1.0, 0.5, 0.3, 0.25]
    with pytest.raises(FileFormatError, match=r"log: '.*log\.csv' has columns \['step', 'loss'\], got a row with columns "
                                              r"\['step', 'other'\]"):
        CSVLogger(path, resume_step=4).log({"step": 5, "other": 1.0})
    CSVLogger(path).log({"step": 1, "other": 2.0})  # a new run starts a new file
    assert read_log(path).columns.tolist() == ["step", "other"]
    with pytest.raises(FileFormatError, match="log: no log file at"):
        read_log(tmp_path / "missing.csv")


def test_a_log_cut_off_mid_row_stays_readable_and_appendable(tmp_path):
    path = tmp_path / "log.csv"
    path.write_text("step,loss\n1,0.5\n2,0.2")  # killed while writing "2,0.25\n"
    assert read_log(path).step.tolist() == [1]
    log = CSVLogger(path, resume_step=1)
    log.log({"step": 2, "loss": 0.25})
    assert path.read_text() == "step,loss\n1,0.5\n2,0.25\n"
    path.write_text("ste")  # killed while writing the header
    CSVLogger(path, resume_step=0).log({"step": 1, "loss": 0.5})
    assert path.read_text() == "step,loss\n1,0.5\n"


# ---------------------------------------------------------------------------------------------- run directory
def test_run_dir_lock_is_reentrant_and_records_its_owner(tmp_path):
    lock = RunDirLock(tmp_path)
    with lock:
        owner = json.loads((tmp_path / "run.lock").read_text())
        assert owner["pid"] == os.getpid() and {"host", "started"} <= set(owner)
        with RunDirLock(tmp_path / ".." / tmp_path.name):  # the same directory, another spelling
            pass
        assert lock.held and (tmp_path / "run.lock").read_text()  # still held by the outer one
    assert not lock.held and (tmp_path / "run.lock").read_text() == ""


def test_run_dir_lock_takes_over_a_stale_owner_and_removes_leftover_tmp_files(tmp_path):
    (tmp_path / "run.lock").write_text(json.dumps({"pid": 999999, "host": "gone", "started": "yesterday"}))
    (tmp_path / ".checkpoint.pt.k2j4x_a9.tmp").write_bytes(b"PK\x03\x04")
    (tmp_path / ".train_buffer.npz.abc12345.tmp").write_bytes(b"")
    (tmp_path / "notes.tmp").write_text("mine")  # not an atomic_path temporary: kept
    notes = []
    with RunDirLock(tmp_path, out=notes.append):
        assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.tmp", "run.lock"]
    assert "took over the lock of process 999999 on gone (started yesterday)" in notes[0]
    assert ".checkpoint.pt.k2j4x_a9.tmp" in notes[1]


def test_meta_train_holds_the_run_dir_lock(tmp_path, small_buffer):
    learner = tiny()
    meta_loss, seen = learner.meta_loss, []

    def spy(batch):
        seen.append(json.loads((tmp_path / "run.lock").read_text())["pid"])
        return meta_loss(batch)

    learner.meta_loss = spy
    with RunDirLock(tmp_path) as outer:  # e.g. the run orchestration holding it around meta_train
        meta_train(learner, small_buffer, steps=2, run_dir=tmp_path, **FAST)
        assert outer.held and (tmp_path / "run.lock").read_text()
    assert seen == [os.getpid()] * 2 and (tmp_path / "run.lock").read_text() == ""


def test_atomic_path_fsyncs_the_folder(tmp_path, monkeypatch):
    synced = []
    monkeypatch.setattr(meta_mbrl.io, "fsync_dir", synced.append)
    with atomic_path(tmp_path / "x.txt") as tmp:
        tmp.write_text("x")
    assert synced == [tmp_path] and (tmp_path / "x.txt").read_text() == "x"
