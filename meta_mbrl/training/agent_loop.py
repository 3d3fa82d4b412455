"""The value-guided agent's training loop: collect with the policy, learn the world model, value and policy.

Each round takes the next ``tasks_per_round`` training tasks (round-robin), builds a
:class:`~meta_mbrl.agent.MetaMBRLAgent` on the current prior and actor-critic whose history is primed
with a sample of that task's replay (so it acts on a task posterior, as PEARL collects), collects
``episodes_per_round`` episodes per task into the per-task replay (a :class:`~meta_mbrl.data.TaskBuffer`),
then takes ``model_steps`` meta-training steps of the prior and ``updates_per_step`` actor-critic updates
per new env step. Every env step is counted. The run directory receives the checkpoint
(``agent.pt``: networks, optimizers, every RNG state, the log) and the replay (``agent_buffer.npz``),
both written atomically, at most ``checkpoint_minutes`` apart and at the end; a run started again
on the same directory resumes at the last saved round and continues bit-identically (the replay is
cut back to what the checkpoint saw if it was saved later).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from meta_mbrl.checks import check_float, check_int
from meta_mbrl.data.buffer import TaskBuffer
from meta_mbrl.data.rollout import collect
from meta_mbrl.io import atomic_path
from meta_mbrl.models.actor_critic import ActorCritic
from meta_mbrl.training.actor_critic import ActorCriticTrainer, sample_value_batch
from meta_mbrl.training.rundir import RunDirLock
from meta_mbrl.types import Transitions

__all__ = ["train_value_agent", "AGENT_CHECKPOINT", "AGENT_BUFFER", "VALUE_AGENT_SOURCE"]

AGENT_CHECKPOINT, AGENT_BUFFER, AGENT_LOG = "agent.pt", "agent_buffer.npz", "agent_log.csv"
VALUE_AGENT_SOURCE = "value-agent"


def _truncate(buffer: TaskBuffer, state: dict) -> None:
    """Cuts ``buffer`` back to the trajectories, tasks, env steps and sources recorded in ``state``."""
    n = int(state["num_trajectories"])
    if buffer.num_trajectories < n:
        raise ValueError(f"buffer: holds {buffer.num_trajectories} trajectories, fewer than the {n} its checkpoint saw")
    buffer._trajs = buffer._trajs[:n]
    buffer.task_ids = list(state["task_ids"])
    buffer.env_steps, buffer.sources = int(state["env_steps"]), list(state["sources"])
    buffer._cache, buffer._starts_cache = None, {}


def _buffer_state(buffer: TaskBuffer) -> dict:
    return {"num_trajectories": buffer.num_trajectories, "task_ids": list(buffer.task_ids),
            "env_steps": int(buffer.env_steps), "sources": list(buffer.sources)}


def _context(buffer: TaskBuffer, task_id: str, size: int, rng: np.random.Generator) -> list[tuple] | None:
    """``size`` random transitions of ``task_id`` from the replay (time-ordered), or None if it has none."""
    if task_id not in buffer.task_ids:
        return None
    flat = buffer._flatten()
    idx = buffer._valid_starts(1)[buffer.task_ids.index(task_id)]
    if idx.size == 0:
        return None
    pick = np.sort(rng.choice(idx, size=min(size, idx.size), replace=False))
    return [tuple(flat[f][i] for f in ("obs", "act", "reward", "next_obs")) for i in pick]


def train_value_agent(
    learner,
    actor_critic: ActorCritic,
    suite,
    tasks: Sequence,
    buffer: TaskBuffer,
    make_agent: Callable[[object, ActorCritic, int, int], object],
    *,
    env_steps: int,
    tasks_per_round: int = 10,
    episodes_per_round: int = 1,
    updates_per_step: float = 0.25,
    batch_tasks: int = 8,
    batch_per_task: int = 32,
    context: int = 64,
    prime_context: int = 256,
    nstep: int = 3,
    lr: float = 3e-4,
    tau: float = 0.01,
    model_steps: int = 0,
    model_kwargs: dict | None = None,
    run_dir: str | os.PathLike | None = None,
    checkpoint_minutes: float = 5.0,
    evaluate: Callable[[int], dict] | None = None,
    eval_every: int = 0,
    seed: int = 0,
    progress: bool = True,
    out: Callable[[str], None] | None = None,
) -> pd.DataFrame:
    """Trains the value and policy prior (and optionally the world model) on data the agent collects.

    Args:
        learner: the meta-learned prior (dynamics and reward); trained further with ``model_steps > 0``.
        actor_critic: the value and policy prior to train.
        suite: the task suite; ``tasks``: the training tasks collected on.
        buffer: the per-task replay (the meta-training data to start from); new episodes are appended.
        make_agent: ``make_agent(learner, actor_critic, num_envs, seed) -> agent`` (a
            :class:`~meta_mbrl.agent.MetaMBRLAgent` with the actor-critic; its ``adapt_action`` explores).
        env_steps: total env steps of the run, counting the starting buffer's (the loop stops at the first
            round boundary at or past it).
        tasks_per_round / episodes_per_round: tasks acted in at once per round, and episodes on each.
        updates_per_step: actor-critic updates per new env step (the update-to-data ratio).
        batch_tasks / batch_per_task: tasks per update and n-step windows per task.
        context: the largest context of an update's task inference; ``prime_context``: replay transitions
            the collecting agent starts from (its posterior).
        nstep / lr / tau: n-step return, Adam learning rate, target Polyak rate.
        model_steps: meta-training steps of the prior per round (0: the prior stays as it is).
        model_kwargs: ``tasks_per_batch``, ``support``, ``query``, ``lr``, ``grad_clip``, ``query_mode`` of those steps.
        run_dir: checkpoint, replay and log go here; an existing checkpoint is resumed.
        checkpoint_minutes: save at most this many minutes apart (0: every round).
        evaluate: ``evaluate(env_steps) -> dict`` of scores (e.g. test-task success), called every
            ``eval_every`` env steps and at the end; its keys join the log row prefixed ``eval_``.
        seed: seeds collection, sampling and updates.
        out: a print function for one line per round.

    Returns:
        The log: one row per round (env steps, collected return and success, losses, seconds, evaluations).
    """
    env_steps = check_int("env_steps", env_steps, 1)
    tasks = suite.check_tasks(tasks)
    for name, v in (("tasks_per_round", tasks_per_round), ("episodes_per_round", episodes_per_round),
                    ("batch_tasks", batch_tasks), ("batch_per_task", batch_per_task), ("nstep", nstep)):
        check_int(name, v, 1)
    check_int("model_steps", model_steps, 0)
    check_int("context", context, 0)
    check_int("prime_context", prime_context, 0)
    check_int("eval_every", eval_every, 0)
    check_float("updates_per_step", updates_per_step, 0.0)
    check_float("checkpoint_minutes", checkpoint_minutes, 0.0)
    run = Path(run_dir) if run_dir is not None else None
    kw = dict(tasks=tasks, tasks_per_round=tasks_per_round, episodes_per_round=episodes_per_round,
              updates_per_step=updates_per_step, batch_tasks=batch_tasks, batch_per_task=batch_per_task, context=context,
              prime_context=prime_context, nstep=nstep, lr=lr, tau=tau, model_steps=model_steps,
              model_kwargs=dict(model_kwargs or {}), run=run, checkpoint_minutes=checkpoint_minutes, evaluate=evaluate,
              eval_every=eval_every, seed=seed, progress=progress, out=out or (lambda s: None))
    if run is None:
        return _loop(learner, actor_critic, suite, buffer, make_agent, env_steps, **kw)
    run.mkdir(parents=True, exist_ok=True)
    with RunDirLock(run):
        return _loop(learner, actor_critic, suite, buffer, make_agent, env_steps, **kw)


def _loop(learner, ac, suite, buffer, make_agent, total, *, tasks, tasks_per_round, episodes_per_round, updates_per_step,
          batch_tasks, batch_per_task, context, prime_context, nstep, lr, tau, model_steps, model_kwargs, run,
          checkpoint_minutes, evaluate, eval_every, seed, progress, out) -> pd.DataFrame:
    trainer = ActorCriticTrainer(ac, lr=lr, tau=tau, nstep=nstep)
    mk = {"tasks_per_batch": 10, "support": 16, "query": 16, "lr": 1e-3, "grad_clip": 10.0, "query_mode": "following",
          **model_kwargs}
    model_opt = torch.optim.Adam(learner.parameters(), lr=mk["lr"]) if model_steps else None
    rng = np.random.default_rng(seed)
    gen = torch.Generator().manual_seed(seed)
    rows: list[dict] = []
    start_round, next_eval = 0, eval_every
    ckpt_path = run / AGENT_CHECKPOINT if run else None
    if ckpt_path is not None and ckpt_path.exists():
        state = torch.load(ckpt_path, map_location="cpu", weights_only=False)
        ac.load_state_dict(state["actor_critic"])
        trainer.load_state_dict(state["trainer"])
        learner.load_state_dict(state["learner"])
        if model_opt is not None and state.get("model_opt") is not None:
            model_opt.load_state_dict(state["model_opt"])
        rng.bit_generator.state = state["np_rng"]
        gen.set_state(state["gen"])
        torch.set_rng_state(state["torch_rng"])
        saved = TaskBuffer.load(run / AGENT_BUFFER)
        _truncate(saved, state["buffer"])
        buffer.__dict__.update(saved.__dict__)
        rows, start_round, next_eval = list(state["log"]), int(state["round"]), int(state["next_eval"])
        out(f"resumed the value agent at round {start_round}, {buffer.env_steps} env steps")
    elif buffer.num_transitions:
        ac.obs_norm.fit(torch.as_tensor(buffer.transitions().obs))

    last_save = time.monotonic()

    def save(r: int) -> None:
        nonlocal last_save
        if run is None:
            return
        buffer.save(run / AGENT_BUFFER)
        state = {"actor_critic": ac.state_dict(), "actor_critic_kwargs": ac.init_kwargs(), "trainer": trainer.state_dict(),
                 "learner": learner.state_dict(), "model_opt": model_opt.state_dict() if model_opt else None,
                 "np_rng": rng.bit_generator.state, "gen": gen.get_state(), "torch_rng": torch.get_rng_state(),
                 "buffer": _buffer_state(buffer), "log": rows, "round": r, "next_eval": next_eval}
        with atomic_path(ckpt_path) as tmp:
            torch.save(state, tmp)
        pd.DataFrame(rows).to_csv(run / AGENT_LOG, index=False)
        last_save = time.monotonic()

    r = start_round
    while buffer.env_steps < total:
        t0 = time.perf_counter()
        first = (r * tasks_per_round) % len(tasks)
        chunk = [tasks[(first + i) % len(tasks)] for i in range(min(tasks_per_round, len(tasks)))]
        learner.eval()
        agent = make_agent(learner, ac, len(chunk), int(rng.integers(2**31)))
        if prime_context and hasattr(agent, "prime"):
            agent.prime([_context(buffer, task.id, prime_context, rng) for task in chunk])
        before = buffer.env_steps
        collect(suite, chunk, agent, episodes_per_task=episodes_per_round, seed=seed + 7919 * (r + 1), buffer=buffer,
                progress=progress, source=f"{VALUE_AGENT_SOURCE}/round{r + 1}")
        learner.train()
        src = buffer.sources[-1]
        t_collect = time.perf_counter() - t0
        model_loss = float("nan")
        if model_steps:
            losses = []
            for _ in range(model_steps):
                batch = buffer.sample(mk["tasks_per_batch"], mk["support"], mk["query"], rng, query_mode=mk["query_mode"])
                loss, _ = learner.meta_loss(batch)
                model_opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(list(learner.parameters()), mk["grad_clip"])
                model_opt.step()
                losses.append(float(loss.detach()))
            model_loss = float(np.mean(losses))
        n_updates = int(round(updates_per_step * (buffer.env_steps - before)))
        infos = []
        for _ in range(n_updates):
            batch = sample_value_batch(buffer, rng, tasks=batch_tasks, per_task=batch_per_task, context=context, nstep=nstep)
            infos.append(trainer.update(batch, gen))
        r += 1
        row = {"round": r, "env_steps": int(buffer.env_steps), "collect_return": src.get("mean_return", float("nan")),
               "collect_success": src.get("success_rate", float("nan")), "updates": trainer.updates,
               "model_loss": model_loss, **({k: float(np.mean([i[k] for i in infos])) for k in infos[0]} if infos else {}),
               "seconds_collect": t_collect, "seconds": time.perf_counter() - t0}
        if evaluate is not None and eval_every and buffer.env_steps >= next_eval:
            row.update({f"eval_{k}": v for k, v in evaluate(int(buffer.env_steps)).items()})
            while next_eval <= buffer.env_steps:
                next_eval += eval_every
        rows.append(row)
        out(f"round {r}: {buffer.env_steps} env steps, collect return {row['collect_return']:.1f}, success "
            f"{row['collect_success']:.2f}, q {row.get('q_mean', float('nan')):.1f}, alpha {row.get('alpha', float('nan')):.3f}"
            + "".join(f", {k} {v:.3f}" for k, v in row.items() if k.startswith("eval_") and isinstance(v, float))
            + f" ({row['seconds']:.0f} s)")
        if checkpoint_minutes == 0 or time.monotonic() - last_save >= 60 * checkpoint_minutes:
            save(r)
    if run is not None and (r != start_round or not ckpt_path.exists()):
        save(r)
    return pd.DataFrame(rows)


def context_from_buffer(buffer: TaskBuffer, task_id: str, size: int, rng: np.random.Generator) -> Transitions | None:
    """``size`` random replay transitions of one task as a ``(1, K, ·)`` tensor Transitions (for tests and notebooks)."""
    rows = _context(buffer, task_id, size, rng)
    if rows is None:
        return None
    return Transitions(*(torch.as_tensor(np.stack([r[f] for r in rows]))[None] for f in range(4)))
