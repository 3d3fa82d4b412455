"""meta_train: the Adam outer loop with progress bar, CSV logs, atomic checkpoints and resume."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from meta_mbrl.data.buffer import TaskBuffer
from meta_mbrl.training.checkpoint import load_checkpoint, save_checkpoint
from meta_mbrl.training.logging import CSVLogger
from meta_mbrl.types import as_tensor_transitions

__all__ = ["meta_train"]


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
) -> pd.DataFrame:
    """Meta-trains ``learner`` on windows sampled from ``buffer`` with Adam.

    Args:
        learner: a MetaLearner (``meta_loss``, ``parameters``).
        buffer: training tasks' trajectories.
        steps: outer steps in total (a resumed run continues up to this number).
        tasks_per_batch / support / query: meta-batch of ``T`` tasks with ``M`` support and ``K`` query
            transitions each (GrBAL: 16 / 16).
        lr: outer Adam learning rate.
        run_dir: where ``checkpoint.pt`` and ``train_log.csv`` go (nothing is written if None).
        checkpoint_every: steps between checkpoints (the last step is always saved).
        log_every: steps between log rows.
        seed: seeds window sampling and torch.
        device: where the learner runs.
        grad_clip: max global grad norm (None: no clipping).
        fit_normalizers: fit the model's normalizers on ``buffer`` when starting fresh.
        resume: continue from ``run_dir/checkpoint.pt`` if present.
        progress: show a progress bar.
        tensorboard: also log to ``run_dir/tb`` (needs the ``tensorboard`` extra).
        config: stored in the checkpoint.
        query_mode: ``"following"`` (GrBAL) or ``"task"`` (query anywhere in the task); see ``TaskBuffer.sample``.

    Returns:
        The training log as a DataFrame (one row per ``log_every`` steps).

    Example:
        >>> import task_suites
        >>> from meta_mbrl import collect, MAML, DynamicsMLP
        >>> suite = task_suites.make("point-mass")
        >>> buf = collect(suite, suite.train_tasks, episodes_per_task=2, progress=False)
        >>> log = meta_train(MAML(DynamicsMLP(4, 2, hidden=(32,))), buf, steps=20, progress=False)
    """
    if steps < 0:
        raise ValueError(f"steps: expected >= 0, got {steps}")
    if checkpoint_every < 1 or log_every < 1:
        raise ValueError(f"checkpoint_every/log_every: expected >= 1, got {checkpoint_every}/{log_every}")
    device = torch.device(device)
    learner.to(device)
    opt = torch.optim.Adam(learner.parameters(), lr=lr)
    run = Path(run_dir) if run_dir is not None else None
    ckpt_path = run / "checkpoint.pt" if run else None
    start = 0
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    if resume and ckpt_path is not None and ckpt_path.exists():
        ckpt = load_checkpoint(ckpt_path)
        learner.load_state_dict(ckpt["state_dict"])
        if ckpt["optimizer"] is not None:
            opt.load_state_dict(ckpt["optimizer"])
        start = ckpt["step"]
        torch.set_rng_state(ckpt["torch_rng"])
        if "np_rng" in ckpt["extra"]:
            rng.bit_generator.state = ckpt["extra"]["np_rng"]
    elif fit_normalizers:
        fit = getattr(learner, "fit_normalizers", None) or learner.model.fit_normalizers  # an Ensemble fits every member
        fit(as_tensor_transitions(buffer.transitions(), device=device))
    logger = CSVLogger(run / "train_log.csv", resume_step=start, tensorboard_dir=str(run / "tb") if tensorboard else None) if run else None
    rows: list[dict] = []

    def checkpoint(step: int) -> None:
        if ckpt_path is not None:
            save_checkpoint(ckpt_path, learner, opt, step=step, env_steps=buffer.env_steps, config=config,
                            sources=buffer.sources, extra={"np_rng": rng.bit_generator.state})

    bar = tqdm(range(start, steps), desc="meta-train", unit="step", disable=not progress, initial=start, total=steps)
    t0, acc = time.perf_counter(), []
    for step in bar:
        batch = buffer.sample(tasks_per_batch, support, query, rng, device=device, query_mode=query_mode)
        loss, info = learner.meta_loss(batch)
        if not bool(torch.isfinite(loss)):
            raise FloatingPointError(
                f"meta_loss: expected a finite loss, got {float(loss.detach())} at step {step + 1} ({info}); the inner loop "
                "diverged: lower inner_lr or inner_steps. The last checkpoint before this step is intact."
            )
        opt.zero_grad(set_to_none=True)
        loss.backward()
        gnorm = torch.nn.utils.clip_grad_norm_(learner.parameters(), grad_clip if grad_clip else float("inf"))
        opt.step()
        acc.append({**info, "grad_norm": float(gnorm)})
        done = step + 1
        if done % log_every == 0 or done == steps:
            row = {"step": done, **{k: float(np.mean([a[k] for a in acc])) for k in acc[0]},
                   "sec_per_step": (time.perf_counter() - t0) / len(acc)}
            rows.append(row)
            if logger:
                logger.log(row)
            bar.set_postfix(query=f"{row['query_loss']:.4f}", pre=f"{row['query_loss_pre']:.4f}")
            t0, acc = time.perf_counter(), []
        if done % checkpoint_every == 0 or done == steps:
            checkpoint(done)
    bar.close()
    if logger:
        logger.close()
    if start >= steps and ckpt_path is not None and not ckpt_path.exists():
        checkpoint(start)
    return pd.DataFrame(rows)
