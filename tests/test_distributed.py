"""Data-parallel meta-training (torch.distributed, gloo on 127.0.0.1): two ranks reproduce one process.

One spawn of two worker processes runs every distributed case (MAML's second-order meta-gradient,
CaDM, and a run that is interrupted and resumed); the parent trains the same learners in one process
and compares the parameters. Bounded: the process group times out after 60 s, the spawn after 120 s.
"""

from __future__ import annotations

import os
import socket
import time

import pytest
import torch
import torch.multiprocessing as mp

import task_suites
from meta_mbrl import MAML, DynamicsMLP, TaskBuffer, collect, meta_train
from meta_mbrl.cli import main as cli_main
from meta_mbrl.distributed.ddp import DistContext, init_distributed, shutdown
from meta_mbrl.errors import DistributedError
from meta_mbrl.meta import CaDM
from meta_mbrl.training import RunDirLock

STEPS, TASKS = 5, 4
KW = dict(tasks_per_batch=TASKS, support=8, query=8, lr=1e-2, seed=3, progress=False)


def _learner(name: str):
    torch.manual_seed(0)
    if name == "maml":
        return MAML(DynamicsMLP(4, 2, hidden=(16, 16)), inner_lr=0.05)  # second order (first_order=False)
    return CaDM(DynamicsMLP(4, 2, hidden=(16, 16), context_dim=4), encoder_hidden=(16,))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, buf_path: str, out: str) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    ctx = init_distributed("cpu", timeout_s=60)
    try:
        buf = TaskBuffer.load(buf_path)
        result = {}
        for name in ("maml", "cadm"):
            learner = _learner(name)
            meta_train(learner, buf, STEPS, dist=ctx, **KW)
            result[name] = learner.state_dict()
        learner = _learner("maml")  # interrupted after 3 steps, resumed to STEPS: rank 0 reads the checkpoint
        run = os.path.join(out, "run")
        meta_train(learner, buf, 3, run_dir=run, dist=ctx, **KW)
        meta_train(learner, buf, STEPS, run_dir=run, dist=ctx, **KW)
        result["resumed"] = learner.state_dict()
        try:  # the parent holds this run dir's lock: rank 0 fails to take it, rank 1 must stop too, not hang
            meta_train(_learner("maml"), buf, 1, run_dir=os.path.join(out, "locked"), dist=ctx, **KW)
        except ValueError as e:
            result["locked"] = f"{type(e).__name__}: {e}"
        torch.save(result, os.path.join(out, f"rank{rank}.pt"))
    finally:
        shutdown()


def _max_diff(a: dict, b: dict) -> float:
    return max(float((a[k] - b[k]).abs().max()) for k in a)


@pytest.fixture(scope="module")
def pm_buffer(tmp_path_factory):
    suite = task_suites.make("point-mass", seed=0, num_train=6, max_episode_steps=20)
    buf = collect(suite, suite.train_tasks, episodes_per_task=1, seed=0, progress=False)
    path = tmp_path_factory.mktemp("ddp") / "buf.npz"
    buf.save(path)
    return buf, str(path)


def test_two_gloo_ranks_match_one_process(pm_buffer, tmp_path, one_thread):
    buf, buf_path = pm_buffer
    lock = RunDirLock(tmp_path / "locked").acquire()
    ctx = mp.start_processes(_worker, args=(2, _free_port(), buf_path, str(tmp_path)), nprocs=2, join=False,
                             start_method="spawn")
    deadline = time.monotonic() + 120
    try:
        while not ctx.join(timeout=1):
            assert time.monotonic() < deadline, "the two ranks did not finish within 120 s"
    finally:
        for p in ctx.processes:
            if p.is_alive():
                p.kill()
        lock.release()
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]
    for name in ("maml", "cadm"):
        learner = _learner(name)
        before = {k: v.clone() for k, v in learner.state_dict().items()}
        meta_train(learner, buf, STEPS, **KW)
        single = learner.state_dict()
        assert _max_diff(ranks[0][name], ranks[1][name]) == 0.0  # the ranks take identical steps
        assert _max_diff(ranks[0][name], single) < 1e-6, name  # and reproduce one process
        assert _max_diff(before, single) > 1e-3  # ... which did train
    assert _max_diff(ranks[0]["resumed"], ranks[0]["maml"]) < 1e-6  # resume = uninterrupted
    assert _max_diff(ranks[1]["resumed"], ranks[0]["maml"]) < 1e-6
    assert ranks[0]["locked"].startswith("RunDirLockedError: run_dir:")
    assert ranks[1]["locked"].startswith("DistributedError: distributed: rank 0 failed, so rank 1 stops too: "
                                         "RunDirLockedError: run_dir:")
    run = tmp_path / "run"
    assert (run / "checkpoint.pt").exists() and (run / "train_log.csv").exists()
    assert not list(run.glob("*.tmp*"))


def test_tasks_not_divisible_by_ranks(pm_buffer):
    with pytest.raises(ValueError, match=r"tasks_per_batch: expected a multiple of the number of processes \(3\), got 4"):
        meta_train(_learner("maml"), pm_buffer[0], 1, dist=DistContext(0, 3, "gloo"), **KW)


def test_missing_env_vars(monkeypatch):
    for v in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(v, raising=False)
    with pytest.raises(DistributedError, match="RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT are not set; launch with torchrun"):
        init_distributed()


def test_cli_distributed_errors(monkeypatch, tmp_path, capsys):
    for v in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(v, raising=False)
    assert cli_main(["train", "--distributed", "--run-dir", str(tmp_path / "a"), "--no-progress"]) == 2
    assert "not set; launch with torchrun" in capsys.readouterr().err
    monkeypatch.setenv("WORLD_SIZE", "2")  # launched by torchrun, but without --distributed
    assert cli_main(["train", "--run-dir", str(tmp_path / "b"), "--no-progress"]) == 2
    assert "--distributed" in capsys.readouterr().err
