"""The labelled ``demo`` data track: Meta-World's scripted policies with Gaussian action noise, training classes only.

Colored noise rarely touches an object (about 1% of push-v3 transitions move the puck), so a model
meta-trained on it has seen little contact. The demo track records episodes of Meta-World's own
scripted policy of each class (``metaworld.policies.ENV_POLICY_MAP``) with ``N(0, noise)`` added to
every action (clipped to the action bounds). The scripted policies read the goal from the last three
observation dims, which our suites hide: the policy is handed the true goal of each sub-env
(``_get_pos_goal()`` of the unwrapped Meta-World env, read after every reset), while the recorded
observations are exactly what the suite's envs return, goal hidden.

DESIGN.md, "Data sources and honesty": demos are a separate, labelled track (``policy="demo"`` in
``buffer.sources``) and never touch a test class.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np

from meta_mbrl.checks import check_float
from meta_mbrl.data.buffer import TaskBuffer
from meta_mbrl.data.rollout import collect

__all__ = ["collect_demos", "ScriptedDemoPolicy", "scripted_policy_classes", "check_demo_tasks", "DEMO_STREAM"]

DEMO_STREAM = 0xDE30
"""Second seed word of the demo noise generator (its own stream, apart from the exploration policies')."""


def scripted_policy_classes() -> dict:
    """Meta-World's map from v3 class name to its scripted policy class (``metaworld.policies.ENV_POLICY_MAP``).

    Example:
        >>> scripted_policy_classes()["push-v3"].__name__  # doctest: +SKIP
        'SawyerPushV3Policy'
    """
    from metaworld.policies import ENV_POLICY_MAP

    return dict(ENV_POLICY_MAP)


class ScriptedDemoPolicy:
    """Batched scripted Meta-World policies with Gaussian action noise, given the goals the observations hide.

    A policy for :func:`~meta_mbrl.data.rollout.collect`: ``attach(env, tasks)`` picks each sub-env's
    scripted policy by its task's class; ``reset(mask)`` reads the goal of every sub-env that starts an
    episode (``env.call("_get_pos_goal")``, the value a goal-observable Meta-World env shows in its last
    three observation dims); ``__call__(obs)`` writes the goals into a copy of ``obs`` for the scripted
    policies only and returns their actions plus ``N(0, noise)``, clipped to ``[low, high]``.

    Args:
        low, high: action bounds ``(A,)``.
        noise: std of the Gaussian action noise (action units; the bounds are [-1, 1]).
        seed: seed of the noise generator; its stream is ``default_rng([seed, DEMO_STREAM])``, so it never
            replays the normal draws of an exploration policy seeded with the same ``seed``.
    """

    name = "demo"

    def __init__(self, low, high, noise: float = 0.3, seed: int | None = 0):
        self.low, self.high = np.asarray(low, np.float64), np.asarray(high, np.float64)
        self.noise = float(noise)
        self.rng = np.random.default_rng(None if seed is None else [int(seed), DEMO_STREAM])
        self._env = None
        self._policies: list = []
        self.goals: np.ndarray | None = None

    def attach(self, env, tasks: Sequence) -> None:
        """Binds the vector env of a chunk of ``tasks`` (one sub-env per task, in order)."""
        table = scripted_policy_classes()
        self._env = env
        self._policies = [table[t.name]() for t in tasks]
        self.goals = np.zeros((len(tasks), 3))

    def reset(self, mask: np.ndarray) -> None:
        """Reads the true goal of every sub-env in ``mask`` (called right after those envs were reset)."""
        if self._env is None:
            raise RuntimeError("ScriptedDemoPolicy: reset before attach(env, tasks); use it through collect")
        goals = self._env.call("_get_pos_goal")
        for i in np.flatnonzero(mask):
            self.goals[i] = np.asarray(goals[i], np.float64)

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        """Actions ``(B, A)`` for observations ``(B, O)`` whose last three dims are the (hidden) goal slot."""
        seen = np.array(obs, np.float64, copy=True)
        seen[:, -3:] = self.goals
        with warnings.catch_warnings():  # the scripted policies' gains overshoot [-1, 1] on purpose; the env clips
            warnings.filterwarnings("ignore", message=r"Constant\(s\) may be too high")
            act = np.stack([p.get_action(o) for p, o in zip(self._policies, seen)])
        act = act + self.rng.normal(0.0, self.noise, size=act.shape)
        return np.clip(act, self.low, self.high).astype(np.float32)


def check_demo_tasks(suite, tasks: Sequence) -> list:
    """``tasks`` as a list if the demo track may run on them, else a ValueError (see :func:`collect_demos`).

    Raises:
        ValueError: ``suite`` has no scripted policies (point-mass), or ``tasks`` is not a non-empty
            sequence of the suite's training tasks whose classes all have a scripted policy.
    """
    if getattr(suite, "benchmark", None) is None or not getattr(suite, "object_slices", ()):
        raise ValueError(f"suite: expected a Meta-World suite (scripted policies exist for Meta-World v3 classes "
                         f"only), got {getattr(suite, 'name', suite)!r}")
    tasks = suite.check_tasks(tasks)
    test = [t.id for t in tasks if t.split != "train"]
    if test:
        raise ValueError(f"tasks: expected training tasks only (scripted policies never touch a test class), "
                         f"got {len(test)} test task(s), e.g. {test[0]!r}")
    table = scripted_policy_classes()
    missing = sorted({t.name for t in tasks if t.name not in table})
    if missing:
        raise ValueError(f"tasks: expected classes with a Meta-World scripted policy, got classes without one: {missing}")
    return tasks


def collect_demos(
    suite,
    tasks: Sequence,
    episodes_per_task: int = 1,
    noise: float = 0.3,
    seed: int = 0,
    buffer: TaskBuffer | None = None,
    progress: bool = True,
    num_envs: int | None = None,
) -> TaskBuffer:
    """Collects noisy scripted-policy episodes on Meta-World *training* tasks: the labelled demo track.

    Runs :func:`~meta_mbrl.data.rollout.collect` with a :class:`ScriptedDemoPolicy`, so env seeding,
    ``buffer.env_steps`` and failure handling are collect's; the data depend only on the arguments.
    The call's ``buffer.sources`` entry has ``policy="demo"`` and ``noise``.

    Args:
        suite: a Meta-World task suite (``task_suites.make("ml10")``, ``"ml1:push-v3"``, ...).
        tasks: training tasks of the suite (``split == "train"``).
        episodes_per_task: episodes recorded per task.
        noise: std ``sigma`` of the Gaussian noise added to every scripted action (then clipped to
            the action bounds); 0.3 by default.
        seed: seeds the env resets and the action noise.
        buffer: append to this buffer instead of a new one.
        progress: show a progress bar.
        num_envs: sub-envs per vector env (collect's default: up to 10).

    Returns:
        The buffer, with the demo episodes and their env steps counted.

    Raises:
        ValueError: ``suite`` has no scripted policies (point-mass), ``tasks`` holds a test task
            (scripted policies never touch a test class) or a class without a scripted policy, or
            ``noise`` is not a finite number >= 0.

    Example:
        >>> import task_suites
        >>> suite = task_suites.make("ml1:push-v3")  # doctest: +SKIP
        >>> buf = collect_demos(suite, suite.train_tasks[:2], progress=False)  # doctest: +SKIP
        >>> buf.sources[-1]["policy"], buf.sources[-1]["noise"], buf.env_steps  # doctest: +SKIP
        ('demo', 0.3, 1000)
    """
    tasks = check_demo_tasks(suite, tasks)
    check_float("noise", noise, low=0.0, high=1e6)
    policy = ScriptedDemoPolicy(suite.action_low, suite.action_high, noise=noise, seed=seed)
    return collect(suite, tasks, policy, episodes_per_task=episodes_per_task, seed=seed, num_envs=num_envs,
                   buffer=buffer, progress=progress, source="demo", source_info={"noise": float(noise)})
