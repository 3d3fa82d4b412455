"""The model-based data loop: alternate meta-training the prior and collecting with the agent (PETS, GrBAL).

Exploration noise alone rarely reaches the states a task rewards; an agent planning with the
current prior does, and data from those states sharpens the prior where control needs it. Each
round meta-trains up to ``steps_per_round * (round + 1)`` outer steps, then collects episodes on
training tasks with a fresh agent built on the current prior and appends them to the buffer.
The buffer (with its env-step count and data sources) is saved atomically after each round and the
checkpoint records every env step, so a killed run resumes at the round it reached.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

import pandas as pd

from meta_mbrl.data.buffer import TaskBuffer
from meta_mbrl.data.rollout import collect
from meta_mbrl.training.loop import meta_train
from meta_mbrl.training.rundir import RunDirLock

__all__ = ["model_based_meta_train", "agent_source"]

AGENT_SOURCE = "mpc-agent"


def agent_source(agent) -> str:
    """The data-source label of what ``agent`` collects: ``"mpc-agent"``, plus its objective's weights if not plain.

    An agent that plans with an information bonus (``bonus_weight > 0``) is labelled
    ``"mpc-agent+bonus<w>"`` (and ``"+reward<w>"`` if its ``reward_weight`` is not 1), so data tables
    tell bonus-driven exploration from reward-driven collection.

    Example:
        >>> from types import SimpleNamespace
        >>> agent_source(SimpleNamespace(bonus_weight=0.5, reward_weight=1.0))
        'mpc-agent+bonus0.5'
        >>> agent_source(SimpleNamespace(bonus_weight=1.0, reward_weight=0.0)), agent_source(object())
        ('mpc-agent+bonus1+reward0', 'mpc-agent')
    """
    bonus, reward = float(getattr(agent, "bonus_weight", 0.0)), float(getattr(agent, "reward_weight", 1.0))
    label = AGENT_SOURCE
    if bonus > 0:
        label += f"+bonus{bonus:g}"
    if reward != 1.0:
        label += f"+reward{reward:g}"
    return label


def model_based_meta_train(
    learner,
    suite,
    tasks: Sequence,
    buffer: TaskBuffer,
    make_agent: Callable[[object, int], object],
    *,
    rounds: int,
    steps_per_round: int,
    episodes_per_task: int = 1,
    envs_per_chunk: int = 10,
    run_dir: str | os.PathLike | None = None,
    seed: int = 0,
    progress: bool = True,
    **train_kwargs,
) -> pd.DataFrame:
    """Meta-trains ``learner``, then ``rounds - 1`` times collects with the agent and trains on.

    Args:
        learner: the MetaLearner to train.
        suite: the task suite (training tasks are collected on).
        tasks: training tasks the agent collects on each round.
        buffer: the training data so far (exploration data of round 0); agent data is appended.
        make_agent: ``make_agent(learner, num_envs) -> policy`` (e.g. a MetaMBRLAgent, online adapting); its
            data is labelled :func:`agent_source` ``/round<r>`` (``"mpc-agent+bonus0.5/round1"`` for an agent
            exploring with an information bonus).
        rounds: meta-training rounds (1 = plain meta_train, no agent data).
        steps_per_round: outer steps per round.
        episodes_per_task: agent episodes per task per round.
        envs_per_chunk: tasks acted in at once (one batched planner call per step).
        run_dir: where checkpoint, log and ``train_buffer.npz`` go; resumes from them.
        seed: seeds collection (per round) and training.
        train_kwargs: passed on to :func:`meta_train` (``tasks_per_batch``, ``support``, ``lr``, ...).

    Returns:
        The concatenated training logs, with a ``round`` column.
    """
    if rounds < 1 or steps_per_round < 1:
        raise ValueError(f"rounds/steps_per_round: expected >= 1, got {rounds}/{steps_per_round}")
    run = Path(run_dir) if run_dir is not None else None
    if run is None:
        return _rounds(learner, suite, tasks, buffer, make_agent, rounds, steps_per_round, episodes_per_task,
                       envs_per_chunk, None, seed, progress, train_kwargs)
    with RunDirLock(run):  # one process per run directory, across every round's training and collection
        return _rounds(learner, suite, tasks, buffer, make_agent, rounds, steps_per_round, episodes_per_task,
                       envs_per_chunk, run, seed, progress, train_kwargs)


def _rounds(learner, suite, tasks, buffer, make_agent, rounds, steps_per_round, episodes_per_task, envs_per_chunk,
            run, seed, progress, train_kwargs) -> pd.DataFrame:
    logs = []
    for r in range(rounds):
        done_rounds = len({s["policy"] for s in buffer.sources if str(s.get("policy", "")).startswith(AGENT_SOURCE)
                           and s.get("status", "complete") == "complete"})
        if r > done_rounds:
            raise ValueError(f"buffer: holds {done_rounds} agent rounds, expected at least {r} to train round {r}")
        # with a run directory meta_train resumes from its checkpoint, so the target is cumulative
        target = steps_per_round * (r + 1) if run is not None else steps_per_round
        log = meta_train(learner, buffer, steps=target, run_dir=run, seed=seed + (0 if run is not None else r),
                         progress=progress, fit_normalizers=(r == 0), **train_kwargs)
        logs.append(log.assign(round=r))
        if r == rounds - 1 or done_rounds > r:
            continue  # last round, or this round's agent data is already in the buffer (resumed run)
        learner.eval()
        for c, start in enumerate(range(0, len(tasks), envs_per_chunk)):
            chunk = list(tasks[start:start + envs_per_chunk])
            agent = make_agent(learner, len(chunk))
            collect(suite, chunk, agent, episodes_per_task=episodes_per_task, seed=seed + 7919 * (r + 1) + 101 * c,
                    buffer=buffer, progress=progress, source=f"{agent_source(agent)}/round{r + 1}")
        learner.train()
        if run is not None:
            buffer.save(run / "train_buffer.npz")
    return pd.concat(logs, ignore_index=True) if logs else pd.DataFrame()
