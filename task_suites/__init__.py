"""Task suites: ``make(name)`` returns a suite of train and test tasks (see DESIGN.md, TaskSuite).

Names:
    ``"ml10"``, ``"ml45"``, ``"ml1:<env-name>"`` (e.g. ``"ml1:reach-v3"``): Meta-World v3, goals hidden.
    ``"custom:<train,...>|<test,...>"``: a custom ML split over any Meta-World v3 classes.
    ``"point-mass"``: the fast suite for tests and tutorials.
    ``"point-maze"``: the point mass in a maze, goal behind a wall: a long-horizon suite (hierarchy, transfer).
    ``"cadm:halfcheetah-mass"``, ``"cadm:halfcheetah-damping"``, ``"cadm:ant-mass"``, ``"cadm:ant-damping"``,
    ``"cadm:crippled-halfcheetah"``, ``"cadm:slim-humanoid"``: CaDM's parametric-dynamics suites over Gymnasium's
    MuJoCo v5 envs (mass / damping factors, a crippled actuator); see :mod:`task_suites.mujoco_params`.
    ``"grbal:crippled-ant"``: GrBAL's crippled-leg Ant (Ant-v5, one leg's two actuators off), same module.

Every suite's ``make_env(task, seed)`` returns a registered gymnasium env, exactly what ``gym.make``
of its id returns (with the ``TimeLimit``). The ids are registered at ``import task_suites``:

``"task_suites/PointMass-v0"``
    One point mass; kwargs ``mass`` (1.0), ``damping`` (0.5), ``goal`` (``(0.0, 0.0)``) and
    ``render_mode`` (``None`` or ``"rgb_array"``); 50 steps per episode (``max_episode_steps=`` changes it).
``"task_suites/PointMaze-v0"``
    One maze: the point mass's kwargs plus ``walls`` and ``start_region``; 100 steps per episode.
``"task_suites/MetaWorld-v0"``
    One task of a Meta-World suite by its stable id: ``task_id="ml10/test/door-close-v3/03"`` (the id's
    prefix names the suite: ``ml10``, ``ml45``, ``ml1:<env>``, ``custom:<train>|<test>``), ``suite_seed``
    (the seed the suite was made with, default 0), ``render_mode``; 500 steps per episode, goal hidden.
``"task_suites/MuJoCoParam-v0"``
    One task of a CaDM or GrBAL suite by its stable id: ``task_id="cadm:halfcheetah-mass/test/03"``, ``suite`` (optional,
    the id's prefix), ``suite_seed`` (default 0), ``render_mode``; 1000 steps per episode.

Example:
    >>> import gymnasium as gym
    >>> import task_suites
    >>> suite = task_suites.make("point-mass", seed=0)
    >>> len(suite.train_tasks), len(suite.test_tasks)
    (40, 10)
    >>> env = gym.make("task_suites/PointMass-v0", mass=2.0, damping=0.1, goal=(1.0, -0.5))
    >>> obs, info = env.reset(seed=0)
    >>> bool((obs == env.reset(seed=0)[0]).all()), obs.shape
    (True, (4,))
    >>> type(suite.make_env(suite.test_tasks[0])) is type(env)  # both the TimeLimit-wrapped registered env
    True
"""

from __future__ import annotations

from task_suites.base import BaseSuite, Task
from task_suites.maze import PointMazeEnv, PointMazeSuite
from task_suites.point_mass import PointMassEnv, PointMassSuite
from task_suites.registration import METAWORLD_ID, MUJOCO_PARAM_ID, POINT_MASS_ID, POINT_MAZE_ID, register_envs

__all__ = ["make", "Task", "BaseSuite", "PointMassSuite", "PointMassEnv", "PointMazeSuite", "PointMazeEnv", "NAMES", "POINT_MASS_ID",
           "POINT_MAZE_ID", "METAWORLD_ID", "MUJOCO_PARAM_ID"]

register_envs()

NAMES = ("ml10", "ml45", "ml1:<env-name>", "custom:<train,...>|<test,...>", "point-mass", "point-maze",
         "cadm:halfcheetah-mass", "cadm:halfcheetah-damping", "cadm:ant-mass", "cadm:ant-damping",
         "cadm:crippled-halfcheetah", "cadm:slim-humanoid", "grbal:crippled-ant")


def make(name: str, seed: int = 0, **kwargs) -> BaseSuite:
    """Builds the suite called ``name`` (see module docstring) with task seed ``seed``."""
    if not isinstance(name, str):
        raise ValueError(f"name: expected a suite name string, got {type(name).__name__}")
    key = name.strip()
    low = key.lower()
    if low == "point-mass":
        return PointMassSuite(seed=seed, **kwargs)
    if low == "point-maze":
        return PointMazeSuite(seed=seed, **kwargs)
    if low.startswith(("cadm:", "grbal:")):
        from task_suites.mujoco_params import SUITES, MuJoCoParamSuite

        if low not in SUITES:
            raise ValueError(f"name: expected one of {NAMES}, got {name!r}")
        return MuJoCoParamSuite(low, seed=seed, **kwargs)
    from task_suites.metaworld_suite import MetaWorldSuite

    if low == "ml10":
        return MetaWorldSuite("ML10", seed=seed)
    if low == "ml45":
        return MetaWorldSuite("ML45", seed=seed)
    if low.startswith("ml1:"):
        return MetaWorldSuite("ML1:" + key.split(":", 1)[1], seed=seed)
    if low.startswith("custom:") and "|" in key:
        train, test = key.split(":", 1)[1].split("|", 1)
        return MetaWorldSuite(
            "custom", seed=seed, train_classes=[c for c in train.split(",") if c],
            test_classes=[c for c in test.split(",") if c],
        )
    raise ValueError(f"name: expected one of {NAMES}, got {name!r}")
