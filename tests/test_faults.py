"""Fault injection: kill -9 mid-training and mid-checkpoint-write, NaN updates, infinite gradients, damaged
checkpoint files, two processes on one run directory. Each test checks the clear error or the correct
resume, and that nothing trained is lost: a resumed run ends bit-identical to one never interrupted."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
from torch.optim.optimizer import register_optimizer_step_post_hook

import task_suites
from meta_mbrl import MAML, DynamicsMLP, collect
from meta_mbrl.errors import DivergenceError, FileFormatError, RunDirLockedError
from meta_mbrl.training import RunDirLock, learner_from_checkpoint, load_checkpoint, meta_train, read_log

ROOT = Path(__file__).resolve().parents[1]
STEPS, EVERY, LOG_EVERY = 30, 5, 3  # log_every does not divide checkpoint_every: resume must carry the log's running mean
TRAIN = dict(tasks_per_batch=4, support=8, query=8, checkpoint_every=EVERY, log_every=LOG_EVERY, progress=False, seed=0)

# The subprocess builds the same data and learner as `make()` below, then hangs (for the test to SIGKILL it)
# inside the N-th meta_loss call ("train") or half-way through writing the N-th checkpoint ("save").
SCRIPT = r"""
import os, sys, time
import torch
from torch.optim.optimizer import register_optimizer_step_post_hook
torch.set_num_threads(1)
import task_suites
from meta_mbrl import MAML, DynamicsMLP, collect, meta_train
run, marker, mode, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
suite = task_suites.make("point-mass", seed=0)
buf = collect(suite, suite.train_tasks[:8], episodes_per_task=1, seed=0, progress=False)
torch.manual_seed(0)
learner = MAML(DynamicsMLP(4, 2, hidden=(16,)), inner_lr=0.05)

def hang():
    open(marker, "w").close()
    time.sleep(120)
    sys.exit(3)

calls = [0]
if mode == "train":
    meta_loss = learner.meta_loss
    def hanging_meta_loss(batch):
        calls[0] += 1
        if calls[0] == n:
            hang()
        return meta_loss(batch)
    learner.meta_loss = hanging_meta_loss
else:
    save = torch.save
    def hanging_save(obj, f, *a, **k):
        calls[0] += 1
        if calls[0] == n:
            f.write(b"PK\x03\x04 the first bytes of a checkpoint")
            f.flush()
            hang()
        return save(obj, f, *a, **k)
    torch.save = hanging_save
meta_train(learner, buf, steps=__STEPS__, run_dir=run, tasks_per_batch=4, support=8, query=8, checkpoint_every=__EVERY__,
           log_every=__LOG_EVERY__, progress=False, seed=0)
"""
for _name, _value in (("__STEPS__", STEPS), ("__EVERY__", EVERY), ("__LOG_EVERY__", LOG_EVERY)):
    SCRIPT = SCRIPT.replace(_name, str(_value))


@pytest.fixture(scope="module")
def buf(one_thread):
    suite = task_suites.make("point-mass", seed=0)
    return collect(suite, suite.train_tasks[:8], episodes_per_task=1, seed=0, progress=False)


def make(seed=0):
    torch.manual_seed(seed)
    return MAML(DynamicsMLP(4, 2, hidden=(16,)), inner_lr=0.05)


@pytest.fixture(scope="module")
def reference(buf, tmp_path_factory):
    """An uninterrupted run: its final weights and its log."""
    run = tmp_path_factory.mktemp("reference")
    learner = make()
    meta_train(learner, buf, steps=STEPS, run_dir=run, **TRAIN)
    return {k: v.clone() for k, v in learner.state_dict().items()}, read_log(run / "train_log.csv")


def assert_nothing_lost(run, buf, reference, seed=123):
    """Resumes ``run`` to the end in this process (a fresh learner) and compares it with the uninterrupted run."""
    learner = make(seed)
    meta_train(learner, buf, steps=STEPS, run_dir=run, **TRAIN)
    weights, log = reference
    for k, v in learner.state_dict().items():
        assert torch.equal(v, weights[k]), k
    got = read_log(run / "train_log.csv")
    assert list(got.step) == list(range(LOG_EVERY, STEPS + 1, LOG_EVERY))  # every step, once
    pd.testing.assert_frame_equal(got, log, check_exact=True)
    assert not list(run.glob(".*.tmp"))
    assert load_checkpoint(run)["step"] == STEPS


def start(run, marker, mode, n):
    return subprocess.Popen([sys.executable, "-c", SCRIPT, str(run), str(marker), mode, str(n)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def wait_for(proc, marker, timeout=60.0):
    t0 = time.monotonic()
    while not marker.exists():
        if proc.poll() is not None:
            raise AssertionError(f"subprocess exited with {proc.returncode}: {proc.stderr.read().decode()[-2000:]}")
        if time.monotonic() - t0 > timeout:
            raise AssertionError("subprocess did not reach the fault point in time")
        time.sleep(0.05)


def kill(proc):
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    proc.stdout.close()
    proc.stderr.close()


# ---------------------------------------------------------------------------------------------- kill -9
def test_kill9_during_training_resumes_exactly(tmp_path, buf, reference):
    run, marker = tmp_path / "run", tmp_path / "hanging"
    proc = start(run, marker, "train", 23)  # dies in step 23: checkpoint at 20, log rows up to 21
    try:
        wait_for(proc, marker)
    finally:
        kill(proc)
    assert proc.returncode == -signal.SIGKILL
    assert load_checkpoint(run)["step"] == 20
    assert list(read_log(run / "train_log.csv").step) == list(range(3, 22, 3))  # rows after the checkpoint stay
    assert_nothing_lost(run, buf, reference)


def test_kill9_during_checkpoint_write_keeps_the_previous_one(tmp_path, buf, reference):
    run, marker = tmp_path / "run", tmp_path / "hanging"
    proc = start(run, marker, "save", 3)  # the third checkpoint (step 15) is cut off half-written
    try:
        wait_for(proc, marker)
    finally:
        kill(proc)
    leftovers = list(run.glob(".checkpoint.pt.*.tmp"))
    assert len(leftovers) == 1
    ckpt = load_checkpoint(run)
    assert ckpt["step"] == 10
    assert all(torch.isfinite(v).all() for v in learner_from_checkpoint(ckpt).state_dict().values())
    notes = []
    with RunDirLock(run, out=notes.append):  # the next process to take the directory cleans up
        assert not list(run.glob(".*.tmp"))
    assert any(f"process {proc.pid}" in n for n in notes) and any(leftovers[0].name in n for n in notes)
    assert_nothing_lost(run, buf, reference)


def test_second_process_is_refused_and_a_dead_owner_is_taken_over(tmp_path, buf, reference):
    run, marker = tmp_path / "run", tmp_path / "hanging"
    proc = start(run, marker, "train", 8)  # holds the directory, hanging in step 8 (checkpoint at 5)
    try:
        wait_for(proc, marker)
        t0 = time.monotonic()
        with pytest.raises(RunDirLockedError, match=rf"run_dir: .* is in use by process {proc.pid} \(started .*\); "
                                                    "wait for it or use another --run-dir"):
            meta_train(make(), buf, steps=STEPS, run_dir=run, **TRAIN)
        assert time.monotonic() - t0 < 5
        with pytest.raises(RunDirLockedError):
            RunDirLock(run).acquire()
        assert load_checkpoint(run)["step"] == 5  # the refused call wrote nothing
    finally:
        kill(proc)
    notes = []
    with RunDirLock(run, out=notes.append):
        assert (run / "run.lock").read_text().startswith(f'{{"pid": {os.getpid()}')
    assert any(f"took over the lock of process {proc.pid}" in n for n in notes)
    assert (run / "run.lock").read_text() == ""  # released
    assert_nothing_lost(run, buf, reference)


# ---------------------------------------------------------------------------------------------- divergence
def test_nan_update_on_a_checkpoint_step_keeps_the_previous_checkpoint(tmp_path, buf, reference):
    calls = [0]

    def poison(opt, args, kwargs):  # the 10th update (a checkpoint step) turns a weight into NaN
        calls[0] += 1
        if calls[0] == 10:
            with torch.no_grad():
                opt.param_groups[0]["params"][0][0, 0] = float("nan")

    handle = register_optimizer_step_post_hook(poison)
    try:
        with pytest.raises(DivergenceError) as e:
            meta_train(make(), buf, steps=STEPS, run_dir=tmp_path, **TRAIN)
    finally:
        handle.remove()
    msg = str(e.value)
    assert msg.startswith("parameters: expected finite values after the optimizer step at step 10, got NaN/Inf in "
                          "model.layers.0.weight (1 of ")
    assert f"the last finite checkpoint on disk is '{tmp_path / 'checkpoint.pt'}' at step 5" in msg
    assert "lower the outer lr" in msg and "inner_lr" in msg and "continues from that checkpoint" in msg
    ckpt = load_checkpoint(tmp_path)
    assert ckpt["step"] == 5 and all(torch.isfinite(v).all() for v in ckpt["state_dict"].values())
    assert_nothing_lost(tmp_path, buf, reference)


def test_infinite_gradient_stops_before_the_step(tmp_path, buf, reference):
    learner = make()
    meta_loss, calls = learner.meta_loss, [0]

    def inf_grad_meta_loss(batch):
        calls[0] += 1
        loss, info = meta_loss(batch)
        if calls[0] == 7:
            learner.model.layers[1].bias.register_hook(lambda g: torch.full_like(g, float("inf")))
        return loss, info

    learner.meta_loss = inf_grad_meta_loss
    with pytest.raises(DivergenceError, match=r"^grad_norm: expected a finite global gradient norm, got inf at step 7 "
                                              r"\(non-finite gradients of model\.layers\.1\.bias\); the optimizer step "
                                              r"was not taken; the last finite checkpoint on disk is .* at step 5"):
        meta_train(learner, buf, steps=STEPS, run_dir=tmp_path, **TRAIN)
    assert all(torch.isfinite(v).all() for v in learner.state_dict().values())  # nothing was applied
    assert load_checkpoint(tmp_path)["step"] == 5
    assert_nothing_lost(tmp_path, buf, reference)


def test_nan_loss_names_the_loss_and_the_step(tmp_path, buf, reference):
    learner = make()
    meta_loss, calls = learner.meta_loss, [0]

    def nan_meta_loss(batch):
        calls[0] += 1
        loss, info = meta_loss(batch)
        return (loss * float("nan"), info) if calls[0] == 12 else (loss, info)

    learner.meta_loss = nan_meta_loss
    with pytest.raises(DivergenceError, match=r"^meta_loss: expected a finite loss, got nan at step 12 .* at step 10"):
        meta_train(learner, buf, steps=STEPS, run_dir=tmp_path, **TRAIN)
    assert_nothing_lost(tmp_path, buf, reference)


# ---------------------------------------------------------------------------------------------- damaged files
class Evil:
    def __reduce__(self):
        return (Path.touch, (Path(os.environ.get("EVIL_MARKER", "/nonexistent/evil")),))


@pytest.fixture
def good_run(tmp_path, buf):
    """A run directory with a checkpoint at step 10 of a run that was meant to reach STEPS."""
    meta_train(make(), buf, steps=10, run_dir=tmp_path, **TRAIN)
    return tmp_path


def _refused(run, buf, match):
    """Both loading and resuming raise a clean FileFormatError; the file on disk is left untouched."""
    before = (run / "checkpoint.pt").read_bytes()
    with pytest.raises(FileFormatError, match=match) as e:
        load_checkpoint(run)
    err = e.value
    assert "weights_only" not in str(err) and err.__cause__ is None and (err.__context__ is None or err.__suppress_context__)
    with pytest.raises(FileFormatError, match=match):
        meta_train(make(), buf, steps=STEPS, run_dir=run, **TRAIN)
    assert (run / "checkpoint.pt").read_bytes() == before


def test_pickle_payload_is_refused_and_runs_no_code(good_run, buf, monkeypatch):
    marker = good_run / "pwned"
    monkeypatch.setenv("EVIL_MARKER", str(marker))
    torch.save({"format": "meta_mbrl.checkpoint/2", "x": Evil()}, good_run / "checkpoint.pt")
    _refused(good_run, buf, r"checkpoint: '.*checkpoint\.pt' holds objects other than tensors and plain data "
                            r"\(refused: loading it could run code\)")
    assert not marker.exists()


def test_truncated_checkpoint_is_refused(good_run, buf):
    data = (good_run / "checkpoint.pt").read_bytes()
    (good_run / "checkpoint.pt").write_bytes(data[: len(data) // 2])
    _refused(good_run, buf, r"checkpoint: '.*checkpoint\.pt' is truncated")


def test_one_flipped_bit_in_a_weight_fails_the_checksum(good_run, buf):
    path = good_run / "checkpoint.pt"
    weight = load_checkpoint(path)["state_dict"]["model.layers.0.weight"]
    data = bytearray(path.read_bytes())
    at = bytes(data).find(weight.numpy().tobytes())
    assert at > 0
    data[at] ^= 0x01  # the lowest mantissa bit of the first weight: still a finite number
    path.write_bytes(bytes(data))
    _refused(good_run, buf, r"checkpoint: '.*checkpoint\.pt' fails its checksum")
