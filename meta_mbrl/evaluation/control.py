"""Control evaluation: success rates of a meta-learning agent on a suite's held-out tasks.

For Meta-World suites the judge is Meta-World's own ``metaworld.evaluation.metalearning_evaluation``
(not reimplemented here): per evaluation round it samples a goal per test sub-env, lets the agent
explore for ``adaptation_episodes`` episodes (``adapt_action`` / ``step``), calls ``adapt()``, then
scores ``evaluation_episodes`` episodes of ``eval_action`` with termination on success.

Suites that are not Meta-World's (the fast point-mass suite) have no such harness; for them
:func:`protocol_evaluation` drives the same protocol over ``suite.make_vec_env`` and reports
returns.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

__all__ = ["metaworld_evaluation", "combine_rounds", "protocol_evaluation", "random_agent_returns"]


class _Progress:
    """Passes every call on to ``agent`` and advances a progress bar by one vector step per action.

    The bar's total is the protocol's largest number of vector steps (scored Meta-World episodes end
    early on success, so the bar may finish short of it).
    """

    def __init__(self, agent, total: int, enabled: bool, desc: str):
        self._agent = agent
        self._bar = tqdm(total=total, desc=desc, unit="step", disable=not enabled, leave=False)

    def adapt_action(self, obs):
        self._bar.update(1)
        return self._agent.adapt_action(obs)

    def eval_action(self, obs):
        self._bar.update(1)
        return self._agent.eval_action(obs)

    def close(self) -> None:
        self._bar.close()

    def __getattr__(self, name):
        return getattr(self._agent, name)


def metaworld_evaluation(
    agent,
    suite,
    *,
    num_evals: int = 1,
    adaptation_episodes: int = 1,
    evaluation_episodes: int = 1,
    meta_batch_size: int | None = None,
    max_episode_steps: int | None = None,
    total_tasks_per_cls: int | None = None,
    seed: int | None = None,
    strategy: str = "sync",
    progress: bool = False,
    first_round: int = 0,
) -> tuple[pd.DataFrame, dict]:
    """Scores ``agent`` on a Meta-World suite's test classes with ``metalearning_evaluation``.

    Args:
        agent: a ``MetaLearningAgent`` acting in ``meta_batch_size`` envs (e.g. :class:`MetaMBRLAgent`).
        suite: a Meta-World suite (``task_suites.make("ml10")``).
        num_evals: evaluation rounds, each with freshly sampled test goals.
        adaptation_episodes: exploration episodes per sub-env per round.
        evaluation_episodes: scored episodes per test *class* per round (Meta-World counts episodes by class
            name, so with several sub-envs of one class, as in ML1, they share this count).
        meta_batch_size: test sub-envs (a multiple of the number of test classes; default: one per class).
            With more than one sub-env per class the judge scores the first ``evaluation_episodes`` episodes
            of a class to *finish*; scored episodes end on success, so successes finish first and the rate
            is biased upward (a UserWarning says so). One sub-env per class and ``num_evals`` rounds of
            goals give the unbiased rate.
        max_episode_steps: shorter episodes than the benchmark's 500 (for smoke tests only).
        total_tasks_per_cls: use only the first goals of each test class.
        seed: the envs' seed (default: the suite's).
        strategy: ``"sync"`` or ``"async"`` vector env.
        progress: show a progress bar of vector steps.
        first_round: advance each sub-env's goal sampler past this many rounds first (``sample_tasks``, the call
            the judge makes at the start of every round), so that the call's rounds get the goals of rounds
            ``first_round, first_round + 1, ...`` of a call from round 0 with the same ``seed``. Round ``r`` alone
            (``num_evals=1, first_round=r``) thus draws goals that depend only on ``(seed, r)``.

    Returns:
        ``(df, info)``: one row per test class with its ``success_rate``, and info with the mean
        success rate and return, env steps spent (``adapt_env_steps``, ``eval_env_steps``) and time.
    """
    from metaworld.evaluation import metalearning_evaluation

    if not hasattr(suite, "make_benchmark_envs"):
        raise ValueError(f"suite: expected a Meta-World suite, got {type(suite).__name__}; use protocol_evaluation")
    if isinstance(first_round, bool) or not isinstance(first_round, (int, np.integer)) or first_round < 0:
        raise ValueError(f"first_round: expected an int >= 0, got {first_round!r}")
    for name, v in (("num_evals", num_evals), ("adaptation_episodes", adaptation_episodes),
                    ("evaluation_episodes", evaluation_episodes)):
        if v < 1:
            raise ValueError(f"{name}: expected >= 1, got {v}")
    mbs = meta_batch_size or len(suite.test_classes)
    if mbs % len(suite.test_classes):
        raise ValueError(f"meta_batch_size: expected a multiple of {len(suite.test_classes)} (test classes), got {mbs}")
    if mbs > len(suite.test_classes):
        import warnings

        warnings.warn(
            f"meta_batch_size: {mbs} sub-envs for {len(suite.test_classes)} test classes; metaworld's judge then scores "
            f"the first {evaluation_episodes} episodes of each class to finish, and scored episodes end on success, so "
            "the success rate is biased upward. Use one sub-env per class (meta_batch_size="
            f"{len(suite.test_classes)}) and num_evals rounds of goals for an unbiased rate",
            UserWarning, stacklevel=2)
    if agent.num_envs != mbs:
        raise ValueError(f"agent: expected an agent for {mbs} envs (meta_batch_size), got num_envs={agent.num_envs}")
    envs = suite.make_benchmark_envs("test", meta_batch_size=mbs, seed=seed, strategy=strategy,
                                     max_episode_steps=max_episode_steps, total_tasks_per_cls=total_tasks_per_cls)
    for _ in range(int(first_round)):
        envs.call("sample_tasks")  # metaworld's pseudorandom sampler: the next goal of a seeded shuffle per sub-env
    before = dict(agent.env_steps)
    t0 = time.perf_counter()
    steps = max_episode_steps or suite.max_episode_steps
    # scored episodes are counted per class, so with several sub-envs of a class each runs about its share
    per_env_eval = -(-evaluation_episodes * len(suite.test_classes) // mbs) + 1
    watched = _Progress(agent, num_evals * (adaptation_episodes + per_env_eval) * steps, progress,
                        f"control {suite.name} ({mbs} envs)")
    try:
        mean_success, mean_return, per_class = metalearning_evaluation(
            watched, envs, num_evals=num_evals, adaptation_steps=1, adaptation_episodes=adaptation_episodes,
            evaluation_episodes=evaluation_episodes,
        )
    finally:
        watched.close()
        envs.close()
    df = pd.DataFrame({"task_class": list(per_class), "success_rate": [float(v) for v in per_class.values()]})
    df = df.sort_values("task_class").reset_index(drop=True)
    info = {
        "mean_success_rate": float(mean_success),
        "mean_return": float(mean_return),
        "num_evals": num_evals, "adaptation_episodes": adaptation_episodes, "evaluation_episodes": evaluation_episodes,
        "meta_batch_size": mbs, "max_episode_steps": max_episode_steps or suite.max_episode_steps,
        "adapt_env_steps": agent.env_steps["adapt"] - before["adapt"],
        "eval_env_steps": agent.env_steps["eval"] - before["eval"],
        "seconds": time.perf_counter() - t0,
    }
    return df, info


def combine_rounds(parts) -> tuple[pd.DataFrame, dict]:
    """One table and info of Meta-World evaluation rounds ``[(df, info), ...]`` (each from :func:`metaworld_evaluation`
    with ``num_evals=1``, in round order), aggregated as ``metalearning_evaluation`` aggregates its own rounds.

    That is: a class's success rate is the mean over rounds of its per-round rate (``np.mean(axis=0)`` of the
    rounds x classes array), and the mean success rate and mean return are the per-round means summed in round
    order and divided by the number of rounds. One call with ``num_evals=N`` and its ``N`` rounds combined here give
    the same floats for the same per-round results; one round comes back with the same numbers. Env steps and
    seconds add up.
    """
    parts = list(parts)
    if not parts:
        raise ValueError("parts: expected at least one round")
    n = len(parts)
    classes = list(parts[0][0]["task_class"])
    rates = np.zeros((n, len(classes)))
    total_success, total_return = 0.0, 0.0
    for r, (df, info) in enumerate(parts):
        by_class = dict(zip(df["task_class"], df["success_rate"], strict=True))
        if sorted(by_class) != sorted(classes):
            raise ValueError(f"parts: round {r} scored classes {sorted(by_class)}, round 0 {sorted(classes)}")
        rates[r] = [by_class[c] for c in classes]
        total_success += info["mean_success_rate"]
        total_return += info["mean_return"]
    success = rates.mean(axis=0)
    df = pd.DataFrame({"task_class": classes, "success_rate": [float(v) for v in success]})
    info = {**parts[0][1], "mean_success_rate": float(total_success / n), "mean_return": float(total_return / n),
            "num_evals": sum(i.get("num_evals", 1) for _, i in parts)}
    for k in ("adapt_env_steps", "eval_env_steps", "seconds"):
        info[k] = sum(i[k] for _, i in parts)
    return df, info


def protocol_evaluation(
    agent,
    suite,
    tasks: Sequence,
    *,
    adaptation_episodes: int = 1,
    evaluation_episodes: int = 1,
    seed: int = 0,
    progress: bool = False,
) -> tuple[pd.DataFrame, dict]:
    """The meta-learning protocol (adapt episodes, ``adapt()``, evaluation episodes) on any suite.

    One sub-env per task, ``agent.num_envs == len(tasks)``. Used for suites without Meta-World's
    harness. Returns one row per task with ``eval_return`` (mean evaluation-episode return) and,
    where the env reports it, ``success_rate``.
    """
    tasks = suite.check_tasks(tasks)
    if agent.num_envs != len(tasks):
        raise ValueError(f"agent: expected an agent for {len(tasks)} envs (one per task), got num_envs={agent.num_envs}")
    env = suite.make_vec_env(tasks, seed=seed)
    t0 = time.perf_counter()
    watched = _Progress(agent, (adaptation_episodes + evaluation_episodes) * suite.max_episode_steps, progress,
                        f"control {suite.name} ({len(tasks)} envs)")
    try:
        agent.init()
        before = dict(agent.env_steps)
        _episodes(env, tasks, watched, adaptation_episodes, seed, adapt=True)
        agent.adapt()
        returns, success = _episodes(env, tasks, watched, evaluation_episodes, seed + 1, adapt=False)
    finally:
        watched.close()
        env.close()
    df = pd.DataFrame({"task": [t.id for t in tasks], "eval_return": returns.mean(1)})
    if success is not None:
        df["success_rate"] = success.mean(1)
    info = {"adapt_env_steps": agent.env_steps["adapt"] - before["adapt"],
            "eval_env_steps": agent.env_steps["eval"] - before["eval"], "seconds": time.perf_counter() - t0,
            "adaptation_episodes": adaptation_episodes, "evaluation_episodes": evaluation_episodes}
    return df, info


def _episodes(env, tasks, agent, episodes: int, seed: int, adapt: bool):
    """Runs ``episodes`` episodes in every sub-env; returns per-env returns and successes ``(n, episodes)``."""
    from metaworld.evaluation import Timestep

    n = len(tasks)
    obs, _ = env.reset(seed=seed)
    agent.reset(np.ones(n, dtype=bool))
    returns = np.zeros((n, episodes))
    success = np.zeros((n, episodes))
    has_success = False
    ret, done, ever = np.zeros(n), np.zeros(n, dtype=np.int64), np.zeros(n)
    while (done < episodes).any():
        if adapt:
            act, aux = agent.adapt_action(obs)
        else:
            act = agent.eval_action(obs)
        next_obs, rew, term, trunc, info = env.step(act)
        if adapt:
            agent.step(Timestep(obs, act, rew, term, trunc, aux))
        ret += rew
        ended = np.logical_or(term, trunc)
        # success if the flag is ever 1 in the episode (Meta-World's criterion); an env that ended this step reports
        # its last info in "final_info" (same-step autoreset)
        for inf in (info, info.get("final_info") if isinstance(info.get("final_info"), dict) else {}):
            if "success" in inf:
                has_success = True
                ever = np.maximum(ever, np.asarray(inf["success"], dtype=float))
        for i in np.flatnonzero(ended):
            if done[i] < episodes:
                returns[i, done[i]] = ret[i]
                success[i, done[i]] = float(ever[i] >= 1.0)
                done[i] += 1
            ret[i] = 0.0
            ever[i] = 0.0
        agent.reset(ended)
        obs = next_obs
    return returns, (success if has_success else None)


class _RandomActor:
    """Uniform random actions through the agent interface ``_episodes`` drives."""

    def __init__(self, suite, n: int, seed: int):
        self.suite, self.n, self.rng = suite, n, np.random.default_rng(seed)

    def eval_action(self, obs) -> np.ndarray:
        return self.rng.uniform(self.suite.action_low, self.suite.action_high, size=(self.n, self.suite.act_dim)).astype(np.float32)

    def reset(self, mask) -> None:
        pass


def random_agent_returns(suite, tasks: Sequence, episodes: int = 1, seed: int = 0) -> np.ndarray:
    """Mean episode return per task of uniform random actions (the baseline a planner must beat)."""
    tasks = suite.check_tasks(tasks)
    env = suite.make_vec_env(tasks, seed=seed)
    try:
        returns, _ = _episodes(env, tasks, _RandomActor(suite, len(tasks), seed), episodes, seed, adapt=False)
    finally:
        env.close()
    return returns.mean(1)
