"""Parametric-dynamics MuJoCo suites of CaDM (Lee et al. 2020) and GrBAL over Gymnasium's MuJoCo v5 envs.

Each task scales the MuJoCo model's parameters of one Gymnasium v5 env by the task's factors, from the
env's defaults (a fresh env per task: factors never compound): ``body_mass`` (``mass``), ``dof_damping``
(``damping``), or sets actuators' gears to 0 (``crippled``: those actuators' controls have no effect).

Suites (names for ``task_suites.make``), with their train / test factor sets:

``"cadm:halfcheetah-mass"`` / ``"cadm:halfcheetah-damping"`` (``HalfCheetah-v5``)
    train {0.75, 0.85, 1.0, 1.15, 1.25}; test {0.2, 0.3, 0.4, 0.5, 1.5, 1.6, 1.7, 1.8}.
``"cadm:ant-mass"`` (``Ant-v5``)
    train {0.85, 0.9, 0.95, 1.0}; test {0.2, 0.25, ..., 0.6} (step 0.05).
``"cadm:ant-damping"`` (``Ant-v5``)
    CaDM keeps the Ant's damping at 1.0; this suite borrows HalfCheetah's damping sets (not CaDM's).
``"cadm:crippled-halfcheetah"`` (``HalfCheetah-v5``)
    one crippled actuator per task: train actuators {0, 1, 2, 3} (the back leg and the front thigh),
    test {4, 5} (front shin, front foot).
``"cadm:slim-humanoid"`` (``Humanoid-v5`` without cinert, cvel, qfrc_actuator and cfrc_ext: 45 observation dims)
    mass and damping scaled together: train every pair of {0.8, 0.9, 1.0, 1.15, 1.25}; test the pairs
    within each of CaDM's four test groups {0.4, 0.5}, {0.6, 0.7}, {1.5, 1.6}, {1.7, 1.8}.
``"grbal:crippled-ant"`` (``Ant-v5``)
    GrBAL's (Nagabandi, Clavera et al. 2019) crippled Ant: one crippled leg per task, both of its actuators
    (hip and ankle) given gear 0. Train: GrBAL's legs 0, 1, 2 (actuators (2, 3) ``hip_1``/``ankle_1``, front
    left; (4, 5) ``hip_2``/``ankle_2``, front right; (6, 7) ``hip_3``/``ankle_3``, back); test: leg 3
    (actuators (0, 1) ``hip_4``/``ankle_4``, right back). From ``learning_to_adapt/envs/ant_env.py``
    (iclavera/learning_to_adapt), whose ``reset_task`` draws a train leg with ``randint(0, 3)`` ("0 1 2 are
    train... 3 is test") and masks those actions; its geom names match v5's Ant. GrBAL also halves the
    crippled leg's geoms (radius and length) and pulls its ankle geom up to the thigh; this suite does not
    (the leg keeps its shape and hangs limp). GrBAL's Ant reward (forward velocity + 0.05, no control or
    contact cost, no termination) is not v5's either. Episodes last 1000 steps like the other suites: GrBAL's
    Ant episode length is not in its released code (its sweep script's ``max_path_length`` is 100, for
    HalfCheetah); pass ``max_episode_steps=100`` for that length.

The CaDM sets are CaDM's ``cadm/envs/config.py`` (younggyoseo/CaDM), where a test range ``[[a, b], [c, d]]`` is
the set of mass factors {a, b} and damping factors {c, d}. Unlike CaDM, the mass and damping suites vary one
parameter each (CaDM's HalfCheetah draws both), and tasks are fixed factors rather than a redraw at every reset.
Episodes last 1000 steps (CaDM's ``max_path_length``). Rewards, terminations, observations and reset noise are
Gymnasium v5's: CaDM's HalfCheetah reward (forward velocity - 0.1 |a|^2) equals v5's, but its observation holds
the x velocity first and its reset noise is 0.001 (v5: 0.1); v5 Ant and Humanoid terminate when unhealthy and add
healthy / contact terms; a crippled actuator's action is still charged in v5's control cost (CaDM masks it first).

Example:
    >>> import task_suites
    >>> suite = task_suites.make("cadm:halfcheetah-mass", seed=0)
    >>> [t.payload["mass"] for t in suite.train_tasks]
    [0.75, 0.85, 1.0, 1.15, 1.25]
    >>> suite.test_tasks[2].id, suite.test_tasks[2].payload["mass"]
    ('cadm:halfcheetah-mass/test/02', 0.4)
    >>> env = suite.make_env(suite.test_tasks[2], seed=0)
    >>> env.spec.id, env.spec.max_episode_steps, env.observation_space.shape
    ('task_suites/MuJoCoParam-v0', 1000, (17,))
"""

from __future__ import annotations

import functools
import itertools

import gymnasium as gym
import numpy as np

from task_suites.base import BaseSuite, Task
from task_suites.registration import MUJOCO_PARAM_ID

__all__ = ["MuJoCoParamSuite", "make_param_env", "SUITES"]

_CHEETAH_TRAIN = (0.75, 0.85, 1.0, 1.15, 1.25)
_CHEETAH_TEST = (0.2, 0.3, 0.4, 0.5, 1.5, 1.6, 1.7, 1.8)
_HUMANOID_TRAIN = (0.8, 0.9, 1.0, 1.15, 1.25)
_HUMANOID_GROUPS = ((0.4, 0.5), (0.6, 0.7), (1.5, 1.6), (1.7, 1.8))
_SLIM = dict(include_cinert_in_observation=False, include_cvel_in_observation=False,
             include_qfrc_actuator_in_observation=False, include_cfrc_ext_in_observation=False)


def _pairs(values):
    return tuple((float(m), float(d)) for m, d in itertools.product(values, values))


SUITES: dict[str, dict] = {
    "cadm:halfcheetah-mass": dict(env="HalfCheetah-v5", params=("mass",), train=_CHEETAH_TRAIN, test=_CHEETAH_TEST),
    "cadm:halfcheetah-damping": dict(env="HalfCheetah-v5", params=("damping",), train=_CHEETAH_TRAIN, test=_CHEETAH_TEST),
    "cadm:ant-mass": dict(env="Ant-v5", params=("mass",), train=(0.85, 0.9, 0.95, 1.0),
                          test=(0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6)),
    "cadm:ant-damping": dict(env="Ant-v5", params=("damping",), train=_CHEETAH_TRAIN, test=_CHEETAH_TEST),
    "cadm:crippled-halfcheetah": dict(env="HalfCheetah-v5", params=("crippled",), train=(0, 1, 2, 3), test=(4, 5)),
    "grbal:crippled-ant": dict(env="Ant-v5", params=("crippled",), train=((2, 3), (4, 5), (6, 7)), test=((0, 1),)),
    "cadm:slim-humanoid": dict(env="Humanoid-v5", env_kwargs=_SLIM, params=("mass", "damping"),
                               train=_pairs(_HUMANOID_TRAIN),
                               test=tuple(p for g in _HUMANOID_GROUPS for p in _pairs(g))),
}
"""Each suite's Gymnasium env, the parameters its tasks set, and its train and test factor sets (for
``crippled``: an actuator index, or a tuple of those crippled together)."""


def _spec(name) -> tuple[str, dict]:
    key = name.strip().lower() if isinstance(name, str) else None
    if key not in SUITES:
        raise ValueError(f"name: expected one of {tuple(SUITES)}, got {name!r}")
    return key, SUITES[key]


def _payload(name: str, split: str, index: int, seed: int) -> dict:
    """The factors of task ``index`` of ``split``: the sorted set's ``index``-th value, or past the set's
    size a draw from it seeded by ``(seed, split, index)``, so a task id and seed alone give its factors."""
    spec = SUITES[name]
    values = spec[split]
    if index < len(values):
        value = values[index]
    else:
        rng = np.random.default_rng([int(seed), 0 if split == "train" else 1, int(index)])
        value = values[int(rng.integers(len(values)))]
    out = {"env": spec["env"], "mass": 1.0, "damping": 1.0, "crippled": ()}
    params = spec["params"]
    if params == ("crippled",):
        out["crippled"] = tuple(int(j) for j in value) if isinstance(value, tuple) else (int(value),)
    elif params == ("mass", "damping"):
        out["mass"], out["damping"] = float(value[0]), float(value[1])
    else:
        out[params[0]] = float(value)
    return out


def _parse(task_id) -> tuple[str, str, int]:
    parts = task_id.rsplit("/", 2) if isinstance(task_id, str) else []
    if len(parts) != 3 or parts[1] not in ("train", "test") or not parts[2].isdigit():
        raise ValueError(f"task_id: expected '<suite>/<split>/<index>' such as 'cadm:halfcheetah-mass/test/03', "
                         f"got {task_id!r}")
    try:
        name, _ = _spec(parts[0])
    except ValueError as e:
        raise ValueError(f"task_id: {task_id!r} names no MuJoCo parameter suite: {e}") from e
    return name, parts[1], int(parts[2])


@functools.lru_cache(maxsize=8)
def _defaults(env_id: str, kwargs_items: tuple) -> tuple[int, int, np.ndarray, np.ndarray]:
    env = gym.make(env_id, **dict(kwargs_items))
    try:
        return (int(env.observation_space.shape[0]), int(env.action_space.shape[0]),
                env.action_space.low.copy(), env.action_space.high.copy())
    finally:
        env.close()


def make_param_env(task_id: str, suite: str | None = None, suite_seed: int = 0,
                   render_mode: str | None = None) -> gym.Env:
    """Entry point of ``task_suites/MuJoCoParam-v0``: the raw Gymnasium v5 MuJoCo env of one task.

    ``gym.make`` adds the 1000-step ``TimeLimit``. The env's model parameters are its defaults scaled by
    the task's factors (see the module docstring), set once here.

    Args:
        task_id: a task id such as ``"cadm:halfcheetah-mass/test/03"``; its prefix names the suite.
        suite: the suite's name; if given, it must be the id's prefix.
        suite_seed: the seed the suite was made with (it matters only for tasks past a factor set's size).
        render_mode: passed to the Gymnasium env.

    Example:
        >>> import gymnasium as gym
        >>> env = gym.make("task_suites/MuJoCoParam-v0", task_id="cadm:halfcheetah-damping/test/00")
        >>> default = gym.make("HalfCheetah-v5").unwrapped.model.dof_damping
        >>> round(float(env.unwrapped.model.dof_damping[3] / default[3]), 6)
        0.2
    """
    name, split, index = _parse(task_id)
    if suite is not None and _spec(suite)[0] != name:
        raise ValueError(f"suite: {suite!r} is not the suite of task_id {task_id!r}")
    if isinstance(suite_seed, bool) or not isinstance(suite_seed, (int, np.integer)):
        raise ValueError(f"suite_seed: expected an int, got {suite_seed!r}")
    if index >= 10_000:
        raise ValueError(f"task_id: index {index} is too large in {task_id!r}")
    spec = SUITES[name]
    p = _payload(name, split, index, int(suite_seed))
    env = gym.make(spec["env"], render_mode=render_mode, **spec.get("env_kwargs", {})).unwrapped
    model = env.model
    model.body_mass[:] = model.body_mass * p["mass"]  # a fresh model: its values are the defaults
    model.dof_damping[:] = model.dof_damping * p["damping"]
    for j in p["crippled"]:
        model.actuator_gear[j, :] = 0.0
    env.task_payload = dict(p)
    return env


def _cheetah_reward(obs, act, next_obs):
    """HalfCheetah-v5's reward from observations: mean x velocity over the step (index 8) - 0.1 |a|^2."""
    return 0.5 * (obs[..., 8] + next_obs[..., 8]) - 0.1 * act.square().sum(-1)


class MuJoCoParamSuite(BaseSuite):
    """A CaDM (or GrBAL) parametric-dynamics suite: one Gymnasium v5 MuJoCo env, tasks differing in physical factors.

    Task ``i`` of a split holds the ``i``-th value of the split's sorted factor set (so the default task
    counts give each value once, in order, whatever the seed); tasks past the set's size draw a value
    from it with the suite seed. Ids: ``"<name>/<split>/<NN>"``; payload: ``{"env", "mass", "damping",
    "crippled"}`` (factors, and the tuple of crippled actuator indices).

    Args:
        name: a key of :data:`SUITES`, e.g. ``"cadm:halfcheetah-mass"``.
        seed: the suite seed.
        num_train / num_test: tasks per split (default: the size of the split's factor set).
        max_episode_steps: episode length (CaDM: 1000); shorter ones make quick checks.

    Example:
        >>> suite = MuJoCoParamSuite("cadm:crippled-halfcheetah")
        >>> [t.payload["crippled"] for t in suite.test_tasks]
        [(4,), (5,)]
        >>> ant = MuJoCoParamSuite("grbal:crippled-ant")
        >>> [t.payload["crippled"] for t in ant.train_tasks], ant.test_tasks[0].payload["crippled"]
        ([(2, 3), (4, 5), (6, 7)], (0, 1))
    """

    def __init__(self, name: str, seed: int = 0, num_train: int | None = None, num_test: int | None = None,
                 max_episode_steps: int = 1000):
        self.name, spec = _spec(name)
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
            raise ValueError(f"seed: expected an int, got {seed!r}")
        if isinstance(max_episode_steps, bool) or not isinstance(max_episode_steps, (int, np.integer)) \
                or max_episode_steps < 1:
            raise ValueError(f"max_episode_steps: expected a positive int, got {max_episode_steps!r}")
        self.seed = int(seed)
        self.max_episode_steps = int(max_episode_steps)
        self.env_id = spec["env"]

        def tasks(split, n):
            n = len(spec[split]) if n is None else n
            if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or not 1 <= n < 10_000:
                raise ValueError(f"num_{split}: expected an int in [1, 10000), got {n!r}")
            short = self.name.split(":", 1)[1]
            return [Task(f"{self.name}/{split}/{i:02d}", short, split, i, _payload(self.name, split, i, self.seed))
                    for i in range(n)]

        self.train_tasks, self.test_tasks = tasks("train", num_train), tasks("test", num_test)
        self.obs_dim, self.act_dim, low, high = _defaults(self.env_id, tuple(sorted(spec.get("env_kwargs", {}).items())))
        self.action_low, self.action_high = low.astype(np.float32), high.astype(np.float32)

    @property
    def reward_fn(self):
        """The env's reward as a torch function ``(obs, act, next_obs) -> reward``, where the observation holds it
        (HalfCheetah: forward velocity - 0.1 |a|^2, the velocity being the mean of the root's x velocity
        ``obs[..., 8]`` before and ``next_obs[..., 8]`` after the step; v5 takes the root's displacement over the
        step instead: under uniform random actions the two correlate at 0.90-0.96 per step and their episode sums
        differ by under 6%); ``None`` for Ant and Humanoid, whose contact and health terms the observation does not
        determine exactly. CaDM and PETS plan with the known reward like this (``planner.known_reward``).

        Example:
            >>> import torch
            >>> fn = MuJoCoParamSuite("cadm:halfcheetah-mass").reward_fn
            >>> round(float(fn(torch.zeros(17), torch.ones(6), torch.arange(17.0))), 4)  # (0 + 8) / 2 - 0.1 * 6
            3.4
            >>> MuJoCoParamSuite("cadm:ant-mass").reward_fn is None
            True
        """
        if self.env_id != "HalfCheetah-v5":
            return None
        return _cheetah_reward

    def make_env(self, task: Task, seed: int | None = None) -> gym.Env:
        """``gym.make("task_suites/MuJoCoParam-v0", task_id=task.id, ...)``, with the suite's episode length.

        Args:
            task: a task of this suite.
            seed: seeds the first reset if it is called without a seed, and the action space.
        """
        self.check_tasks([task])
        env = gym.make(MUJOCO_PARAM_ID, task_id=task.id, suite=self.name, suite_seed=self.seed,
                       max_episode_steps=self.max_episode_steps)
        if seed is not None:
            env.unwrapped.np_random = gym.utils.seeding.np_random(seed)[0]
            env.action_space.seed(seed)
        return env
