"""meta_train: the Adam outer loop with progress bar, CSV logs, atomic checkpoints and exact resume.

Nothing fails silently: the loss (before backward), the global gradient norm (before the optimizer
step) and every learner tensor (parameters and buffers such as normalizers, after the step) are checked
each step; a non-finite one stops training with a :class:`~meta_mbrl.errors.DivergenceError` that says
which, at which step, which checkpoint on disk is the last finite one, and what to change. Checkpoints
are written only from finite state, and a run resumed from one ends with the same weights, bit for
bit, as a run that was never interrupted (the numpy and torch RNG states travel with the checkpoint).
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from meta_mbrl.data.buffer import TaskBuffer
from meta_mbrl.errors import DivergenceError, FileFormatError
from meta_mbrl.training.checkpoint import check_state_dict, load_checkpoint, save_checkpoint
from meta_mbrl.training.logging import CSVLogger
from meta_mbrl.training.rundir import RunDirLock
from meta_mbrl.types import as_tensor_transitions

__all__ = ["meta_train"]

LOG_NAME = "train_log.csv"
TIMING_NAME = "timing.csv"


def _first(names: list[str], n: int = 4) -> str:
    return ", ".join(names[:n]) + (f" and {len(names) - n} more" if len(names) > n else "")


def meta_train(
    learner,
    buffer: TaskBuffer,
    steps: int = 2000,
    tasks_per_batch: int = 10,
    support: int = 16,
    query: int = 16,
    lr: float = 1e-3,
    *,
    run_dir: str | os.PathLike | None = None,
    checkpoint_every: int = 500,
    log_every: int = 50,
    seed: int = 0,
    device: str | torch.device = "cpu",
    grad_clip: float | None = 10.0,
    fit_normalizers: bool = True,
    resume: bool = True,
    progress: bool = True,
    tensorboard: bool = False,
    config: dict | None = None,
    query_mode: str = "following",
    support_max: int | None = None,
    dist=None,
    callback=None,
) -> pd.DataFrame:
    """Meta-trains ``learner`` on windows sampled from ``buffer`` with Adam.

    Args:
        learner: a MetaLearner (``meta_loss``, ``parameters``).
        buffer: training tasks' trajectories.
        steps: outer steps in total (a resumed run continues up to this number).
        tasks_per_batch / support / query: meta-batch of ``T`` tasks with ``M`` support and ``K`` query
            transitions each (GrBAL: 16 / 16).
        lr: outer Adam learning rate. On resume it replaces the saved optimizer's (so a diverged run
            continues from its last checkpoint with a lower one).
        run_dir: where ``checkpoint.pt``, ``train_log.csv`` and ``timing.csv`` (wall-clock seconds per
            step) go; nothing is written if None. The directory is locked for the run
            (:class:`~meta_mbrl.training.rundir.RunDirLock`): a second process gets ``RunDirLockedError``.
        checkpoint_every: steps between checkpoints (the last step is always saved).
        log_every: steps between log rows.
        seed: seeds window sampling and torch.
        device: where the learner runs.
        grad_clip: max global grad norm (None: no clipping); the value passed now applies on resume too.
        fit_normalizers: fit the model's normalizers on ``buffer`` when starting fresh.
        resume: continue from ``run_dir/checkpoint.pt`` if present.
        progress: show a progress bar.
        tensorboard: also log to ``run_dir/tb`` (needs the ``tensorboard`` extra).
        config: stored in the checkpoint.
        query_mode: ``"following"`` (GrBAL) or ``"task"`` (query anywhere in the task); see ``TaskBuffer.sample``.
        support_max: if larger than ``support``, every step draws its support length ``M`` log-uniformly from
            ``[support, support_max]`` (one ``M`` per meta-batch, from the seeded sampler), so the learner meets
            the short and the long contexts it will adapt on (None or <= ``support``: always ``support``).
        dist: a :class:`~meta_mbrl.distributed.ddp.DistContext` (from
            :func:`~meta_mbrl.distributed.ddp.init_distributed`) to train data-parallel: every rank samples the
            same meta-batch, computes the meta-loss on its ``tasks_per_batch / W`` tasks, and the gradients are
            averaged before the same Adam step on every rank (so ``W`` ranks reproduce one process up to
            summation order). Rank 0 alone locks ``run_dir`` and writes checkpoints and logs; on resume it
            reads the checkpoint and sends the state to the others. Every rank must call ``meta_train`` with the
            same arguments. None: one process.
        callback: called as ``callback(step, row)`` after each log row is written (``row``: the logged means, e.g.
            ``query_loss``, with ``sec_per_step``); a truthy return stops training early: a checkpoint is written
            at that step (so a later call with the same ``run_dir`` continues from it) and the log so far is
            returned with ``log.attrs["stopped_at"] = step``. An exception it raises (e.g. ``optuna.TrialPruned``)
            propagates, like an interruption. None (the default) changes nothing.

    Returns:
        The training log as a DataFrame (one row per ``log_every`` steps, with ``sec_per_step``; the
        file ``train_log.csv`` holds the same rows without that wall-clock column, so two runs with the
        same seed and thread count write identical files). Read the file with
        :func:`~meta_mbrl.training.logging.read_log`.

    Raises:
        DivergenceError: the loss, the gradient norm or a parameter/buffer became NaN/Inf; the message
            names which, the step, and the last finite checkpoint on disk.
        RunDirLockedError: another live process is training in ``run_dir``.
        FileFormatError: ``run_dir/checkpoint.pt`` is unreadable or does not fit ``learner``.
        ValueError: with ``dist``, ``tasks_per_batch`` is not a multiple of the number of ranks.
        DistributedError: with ``dist``, on ranks 1.. when rank 0 failed before training (its message).

    Example:
        >>> import task_suites
        >>> from meta_mbrl import collect, MAML, DynamicsMLP
        >>> suite = task_suites.make("point-mass")
        >>> buf = collect(suite, suite.train_tasks, episodes_per_task=2, progress=False)
        >>> log = meta_train(MAML(DynamicsMLP(4, 2, hidden=(32,))), buf, steps=20, progress=False)
        >>> stop = lambda step, row: step >= 10  # e.g. a pruner's verdict
        >>> log = meta_train(MAML(DynamicsMLP(4, 2, hidden=(32,))), buf, steps=20, log_every=5, progress=False,
        ...                  callback=stop)
        >>> list(log["step"]), log.attrs["stopped_at"]
        ([5, 10], 10)
    """
    if steps < 0:
        raise ValueError(f"steps: expected >= 0, got {steps}")
    if checkpoint_every < 1 or log_every < 1:
        raise ValueError(f"checkpoint_every/log_every: expected >= 1, got {checkpoint_every}/{log_every}")
    if not (isinstance(lr, (int, float, np.floating)) and math.isfinite(lr) and lr > 0):
        raise ValueError(f"lr: expected a finite number > 0, got {lr!r}")
    if grad_clip is not None and not (grad_clip >= 0):  # 0 or None: no clipping
        raise ValueError(f"grad_clip: expected None or >= 0, got {grad_clip!r}")
    if support_max is not None and (isinstance(support_max, bool) or not isinstance(support_max, (int, np.integer))
                                    or support_max < 0):
        raise ValueError(f"support_max: expected None or an int >= 0, got {support_max!r}")
    if callback is not None and not callable(callback):
        raise ValueError(f"callback: expected None or a callable(step, row), got {type(callback).__name__}")
    if callback is not None and dist is not None:
        raise ValueError("callback: not supported with dist (a rank that stops alone would leave the others waiting)")
    main = dist is None or dist.is_main
    if dist is not None:
        from meta_mbrl.distributed.ddp import agree, check_divisible

        check_divisible(tasks_per_batch, dist.world_size)
    lock = RunDirLock(run_dir) if run_dir is not None and main else None
    try:
        if lock is not None:
            lock.acquire()
    except BaseException as e:
        if dist is not None:
            agree(dist, e)  # the other ranks stop with rank 0's message instead of waiting for it
        raise
    if dist is not None:
        agree(dist, None)
    try:
        return _meta_train(learner, buffer, steps, tasks_per_batch, support, query, lr, run_dir=run_dir,
                           checkpoint_every=checkpoint_every, log_every=log_every, seed=seed, device=device,
                           grad_clip=grad_clip, fit_normalizers=fit_normalizers, resume=resume, progress=progress,
                           tensorboard=tensorboard, config=config, query_mode=query_mode,
                           support_max=support_max if support_max and support_max > support else None, dist=dist,
                           callback=callback)
    finally:
        if lock is not None:
            lock.release()


def _to_cpu(obj):
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu()
    if isinstance(obj, dict):
        return {k: _to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_cpu(v) for v in obj)
    return obj


def _meta_train(learner, buffer, steps, tasks_per_batch, support, query, lr, *, run_dir, checkpoint_every, log_every,
                seed, device, grad_clip, fit_normalizers, resume, progress, tensorboard, config, query_mode, support_max,
                dist=None, callback=None):
    main = dist is None or dist.is_main
    if dist is not None:
        from meta_mbrl.distributed.ddp import agree, all_reduce_mean, broadcast_object, rank_device, shard

        device = rank_device(device, dist)
    device = torch.device(device)
    learner.to(device)
    opt = torch.optim.Adam(learner.parameters(), lr=lr)
    run = Path(run_dir) if run_dir is not None else None
    ckpt_path = run / "checkpoint.pt" if run else None
    start, last_saved, acc = 0, None, []
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    resumed = False

    def load_or_fit() -> None:
        nonlocal resumed, acc, start, last_saved
        resumed = resume and ckpt_path is not None and ckpt_path.exists()
        if resumed:
            ckpt = load_checkpoint(ckpt_path)
            src = str(ckpt_path)
            check_state_dict(learner, ckpt["state_dict"], src, what=f"the learner passed to meta_train ({type(learner).__name__})")
            learner.load_state_dict(ckpt["state_dict"])
            try:
                if ckpt["optimizer"] is not None:
                    opt.load_state_dict(ckpt["optimizer"])
                torch.set_rng_state(ckpt["torch_rng"])
                if "np_rng" in ckpt["extra"]:
                    rng.bit_generator.state = ckpt["extra"]["np_rng"]
                acc = [{str(k): float(v) for k, v in a.items()} for a in ckpt["extra"].get("log_acc", [])]
            except (ValueError, KeyError, TypeError, AttributeError, RuntimeError) as e:
                raise FileFormatError(
                    f"checkpoint: {src!r}: its optimizer, RNG or log state does not fit this learner and run "
                    f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})"
                ) from None
            for group in opt.param_groups:  # the lr passed now wins over the saved one
                group["lr"] = lr
            start = last_saved = ckpt["step"]
        elif fit_normalizers:
            fit = getattr(learner, "fit_normalizers", None) or learner.model.fit_normalizers  # an Ensemble fits every member
            fit(as_tensor_transitions(buffer.transitions(), device=device))

    if dist is None:
        load_or_fit()
    else:  # rank 0 reads the checkpoint (or fits the normalizers) and sends the whole training state to the others
        error = None
        if main:
            try:
                load_or_fit()
            except Exception as e:
                error = e
        agree(dist, error)
        state = broadcast_object(_to_cpu({
            "learner": learner.state_dict(), "opt": opt.state_dict(), "start": start, "resumed": resumed,
            "np_rng": rng.bit_generator.state, "torch_rng": torch.get_rng_state()}) if main else None, dist)
        if not main:
            learner.load_state_dict(state["learner"])
            if state["opt"]["state"]:
                opt.load_state_dict(state["opt"])
            rng.bit_generator.state = state["np_rng"]
            torch.set_rng_state(state["torch_rng"])
            start, resumed = state["start"], state["resumed"]
            last_saved = start if resumed else None
    resume_step = start if resumed else None
    logger = timing = None
    if run is not None and main:
        logger = CSVLogger(run / LOG_NAME, resume_step=resume_step, tensorboard_dir=str(run / "tb") if tensorboard else None)
        timing = CSVLogger(run / TIMING_NAME, resume_step=resume_step)
    # a log begun before wall-clock times moved to timing.csv keeps its sec_per_step column
    legacy_timing = logger is not None and "sec_per_step" in (logger.fields or [])
    rows: list[dict] = []
    stopped_at = None

    def diverged(what: str) -> DivergenceError:
        if ckpt_path is None:
            where = "nothing was saved (run_dir=None)"
            again = "train again"
        elif last_saved is None:
            where = f"no checkpoint was written yet to {str(ckpt_path)!r}"
            again = "train again"
        else:
            where = f"the last finite checkpoint on disk is {str(ckpt_path)!r} at step {last_saved}"
            again = ("call meta_train again with the same run_dir: it continues from that checkpoint with the lr and "
                     "grad_clip you pass (they override the saved optimizer's)")
        return DivergenceError(
            f"{what}; {where}. Training diverged: lower the outer lr (now {lr:g}) or the learner's inner_lr / "
            f"inner_steps, or clip gradients harder (grad_clip now {grad_clip}), then {again}"
        )

    def checkpoint(step: int) -> None:
        nonlocal last_saved
        if ckpt_path is None:
            return
        if not main:  # rank 0 writes; the others only know where the last checkpoint is
            last_saved = step
            return
        extra = {"np_rng": rng.bit_generator.state, "log_acc": acc}
        try:
            save_checkpoint(ckpt_path, learner, opt, step=step, env_steps=buffer.env_steps, config=config,
                            sources=buffer.sources, extra=extra)
        except DivergenceError as e:
            raise diverged(str(e)) from None
        last_saved = step

    bar = tqdm(range(start, steps), desc="meta-train", unit="step", disable=not (progress and main), initial=start,
               total=steps)
    t0, timed = time.perf_counter(), 0
    params = [p for p in learner.parameters()]
    names = {id(p): n for n, p in learner.named_parameters()}
    try:
        for step in bar:
            done = step + 1
            m = support if support_max is None else int(np.exp(rng.uniform(np.log(support), np.log(support_max + 1))))
            batch = buffer.sample(tasks_per_batch, m, query, rng, device=device, query_mode=query_mode)
            if dist is not None:  # the same meta-batch on every rank (same seeded rng); each keeps its slice of tasks
                batch = shard(batch, dist)
            loss, info = learner.meta_loss(batch)
            if dist is not None:  # mean over ranks of the gradients, loss and logs = the whole meta-batch's
                opt.zero_grad(set_to_none=True)
                loss.backward()
                loss, info = all_reduce_mean(params, loss, info, dist)
            if not bool(torch.isfinite(loss.detach()).all()):
                raise diverged(f"meta_loss: expected a finite loss, got {float(loss.detach().sum())} at step {done} ({info})")
            if dist is None:
                opt.zero_grad(set_to_none=True)
                loss.backward()
            gnorm = torch.nn.utils.clip_grad_norm_(params, grad_clip if grad_clip else float("inf"))
            if not bool(torch.isfinite(gnorm)):
                bad = [names.get(id(p), "?") for p in params if p.grad is not None and not bool(torch.isfinite(p.grad).all())]
                raise diverged(
                    f"grad_norm: expected a finite global gradient norm, got {float(gnorm)} at step {done} "
                    + (f"(non-finite gradients of {_first(bad)})" if bad else
                       "(every gradient is finite, but their global norm overflowed: the gradients are huge)")
                    + "; the optimizer step was not taken"
                )
            opt.step()
            state = {k: v for k, v in learner.state_dict().items() if v.is_floating_point() or v.is_complex()}
            if state and not bool(torch.stack([torch.isfinite(v).all() for v in state.values()]).all()):
                bad = [k for k, v in state.items() if not bool(torch.isfinite(v).all())]
                raise diverged(f"parameters: expected finite values after the optimizer step at step {done}, "
                               f"got NaN/Inf in {_first(bad)} ({len(bad)} of {len(state)} tensors)")
            acc.append({k: float(v) for k, v in {**info, "grad_norm": gnorm}.items()})
            timed += 1
            if done % log_every == 0 or done == steps:
                row = {"step": done, **{k: float(np.mean([a[k] for a in acc if k in a])) for k in acc[-1]}}
                sec = (time.perf_counter() - t0) / max(timed, 1)
                rows.append({**row, "sec_per_step": sec})
                if logger:
                    logger.log({**row, "sec_per_step": sec} if legacy_timing else row)
                    timing.log({"step": done, "sec_per_step": sec})
                if "query_loss" in row:
                    bar.set_postfix(query=f"{row['query_loss']:.4f}", pre=f"{row.get('query_loss_pre', float('nan')):.4f}")
                t0, timed, acc = time.perf_counter(), 0, []
                if callback is not None and callback(done, dict(rows[-1])):
                    stopped_at = done
            if done % checkpoint_every == 0 or done == steps or stopped_at is not None:
                checkpoint(done)
            if stopped_at is not None:
                break
        if start >= steps and ckpt_path is not None and not ckpt_path.exists():
            checkpoint(start)
    finally:
        bar.close()
        if logger:
            logger.close()
            timing.close()
    log = pd.DataFrame(rows)
    if stopped_at is not None:
        log.attrs["stopped_at"] = stopped_at
    return log
