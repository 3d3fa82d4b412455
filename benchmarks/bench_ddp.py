"""Data-parallel meta-training: step time with 1 and 2 gloo processes, and parity with one process.

Setting: point-mass (40 training tasks, 2 episodes of 50 steps each), meta-batch of T tasks (default
16) with 16 support and 16 query transitions; MAML (second order, 1 inner step) and CaDM on a 2x64
MLP. Per learner, side by side in one run:

- ``W=1``: ``meta_train`` in this process, 1 thread, and again with ``W`` threads (the same cores as
  ``W`` processes use);
- ``W=2``: two processes spawned on 127.0.0.1 (gloo), 1 thread each, each computing T/2 tasks.

Step time is the median over log windows of ``meta_train``'s seconds per step, the first window
(warm-up) left out. ``parity`` is the max abs parameter difference between the ``W=2`` ranks' final
parameters and the one-process run's after the same steps. On a shared machine the times are noisy.

    python benchmarks/bench_ddp.py [--steps 60] [--tasks 16] [--world 2]
"""

from __future__ import annotations

import argparse
import os
import socket
import tempfile
import time

import numpy as np
import pandas as pd
import torch
import torch.multiprocessing as mp
from _common import report

import task_suites
from meta_mbrl import MAML, DynamicsMLP, TaskBuffer, collect, meta_train
from meta_mbrl.meta import CaDM

WINDOW = 10


def learner(name: str, hidden: tuple[int, ...]):
    torch.manual_seed(0)
    if name == "maml":
        return MAML(DynamicsMLP(4, 2, hidden=hidden), inner_lr=0.01)
    return CaDM(DynamicsMLP(4, 2, hidden=hidden, context_dim=8), encoder_hidden=hidden)


def train(name, buf, args, dist=None):
    lrn = learner(name, tuple(args.hidden))
    log = meta_train(lrn, buf, args.steps, tasks_per_batch=args.tasks, support=16, query=16, lr=1e-3, seed=0,
                     log_every=WINDOW, progress=False, dist=dist)
    sec = float(np.median(log.sec_per_step.iloc[1:])) if len(log) > 1 else float(log.sec_per_step.iloc[0])
    return lrn.state_dict(), sec


def worker(rank, world, port, buf_path, out, args):
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    torch.set_num_threads(1)
    from meta_mbrl.distributed.ddp import init_distributed, shutdown

    ctx = init_distributed("cpu", timeout_s=300)
    try:
        buf = TaskBuffer.load(buf_path)
        res = {name: train(name, buf, args, dist=ctx) for name in args.learners}
        if rank == 0:
            torch.save({k: {"state": v[0], "sec": v[1]} for k, v in res.items()}, os.path.join(out, "rank0.pt"))
    finally:
        shutdown()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--tasks", type=int, default=16)
    ap.add_argument("--world", type=int, default=2)
    ap.add_argument("--hidden", type=int, nargs="+", default=[64, 64])
    ap.add_argument("--learners", nargs="+", default=["maml", "cadm"])
    args = ap.parse_args()
    suite = task_suites.make("point-mass", seed=0)
    buf = collect(suite, suite.train_tasks, episodes_per_task=2, seed=0, progress=False)
    rows = {name: {"learner": name, "T": args.tasks, "steps": args.steps} for name in args.learners}
    single = {}
    for threads in (1, args.world):
        torch.set_num_threads(threads)
        for name in args.learners:
            state, sec = train(name, buf, args)
            rows[name][f"ms_1proc_{threads}thr"] = 1e3 * sec
            if threads == 1:
                single[name] = state
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        buf_path = os.path.join(tmp, "buf.npz")
        buf.save(buf_path)
        t0 = time.perf_counter()
        mp.start_processes(worker, args=(args.world, free_port(), buf_path, tmp, args), nprocs=args.world,
                           start_method="spawn")
        wall = time.perf_counter() - t0
        res = torch.load(os.path.join(tmp, "rank0.pt"), weights_only=True)
    for name in args.learners:
        r = rows[name]
        r[f"ms_{args.world}proc_1thr"] = ms = 1e3 * res[name]["sec"]
        r["speedup_vs_1proc_1thr"] = r["ms_1proc_1thr"] / ms
        r[f"speedup_vs_1proc_{args.world}thr"] = r[f"ms_1proc_{args.world}thr"] / ms
        a, b = res[name]["state"], single[name]
        r["parity_max_abs_diff"] = max(float((a[k] - b[k]).abs().max()) for k in a)
    df = pd.DataFrame(list(rows.values()))
    shape = "x".join(map(str, args.hidden))
    report(df, f"ddp_h{shape}_T{args.tasks}_s{args.steps}",
           f"Data-parallel meta-training: {args.world} gloo processes vs 1 (point-mass, MLP {shape}, T={args.tasks}, "
           f"{args.steps} steps; spawn + train wall {wall:.1f} s; shared machine: times are noisy)")


if __name__ == "__main__":
    main()
