"""Gymnasium registration of the suites' single-task envs, made at ``import task_suites``.

Ids:
    ``task_suites/PointMass-v0``: :class:`~task_suites.point_mass.PointMassEnv`; kwargs ``mass``,
    ``damping``, ``goal``, ``render_mode``; 50-step ``TimeLimit``.
    ``task_suites/PointMaze-v0``: :class:`~task_suites.maze.PointMazeEnv`, the point mass in a maze; kwargs
    ``mass``, ``damping``, ``goal``, ``walls``, ``start_region``, ``render_mode``; 100-step ``TimeLimit``.
    ``task_suites/MetaWorld-v0``: one task of a Meta-World suite, by its stable id; kwargs
    ``task_id`` (e.g. ``"ml10/test/door-close-v3/03"``; its prefix names the suite), ``suite_seed``
    (the suite's goal seed, default 0), ``render_mode``; 500-step ``TimeLimit``.
    ``task_suites/MuJoCoParam-v0``: one task of a CaDM parametric-dynamics MuJoCo suite
    (:mod:`task_suites.mujoco_params`); kwargs ``task_id`` (e.g. ``"cadm:halfcheetah-mass/test/03"``),
    ``suite`` (optional; must be the id's prefix), ``suite_seed``, ``render_mode``; 1000-step ``TimeLimit``.

Registration is idempotent: importing (or reloading) the package again registers nothing twice.

Example:
    >>> import gymnasium as gym
    >>> import task_suites
    >>> POINT_MASS_ID in gym.registry and POINT_MAZE_ID in gym.registry and METAWORLD_ID in gym.registry
    True
    >>> MUJOCO_PARAM_ID in gym.registry
    True
"""

from __future__ import annotations

import gymnasium as gym

__all__ = ["POINT_MASS_ID", "POINT_MAZE_ID", "METAWORLD_ID", "MUJOCO_PARAM_ID", "register_envs"]

POINT_MASS_ID = "task_suites/PointMass-v0"
POINT_MAZE_ID = "task_suites/PointMaze-v0"
METAWORLD_ID = "task_suites/MetaWorld-v0"
MUJOCO_PARAM_ID = "task_suites/MuJoCoParam-v0"


def register_envs() -> None:
    """Registers the ids above with gymnasium, unless they are registered already."""
    if POINT_MASS_ID not in gym.registry:
        gym.register(POINT_MASS_ID, entry_point="task_suites.point_mass:PointMassEnv", max_episode_steps=50)
    if POINT_MAZE_ID not in gym.registry:
        gym.register(POINT_MAZE_ID, entry_point="task_suites.maze:PointMazeEnv", max_episode_steps=100)
    if METAWORLD_ID not in gym.registry:
        gym.register(METAWORLD_ID, entry_point="task_suites.metaworld_suite:make_task_env", max_episode_steps=500)
    if MUJOCO_PARAM_ID not in gym.registry:
        gym.register(MUJOCO_PARAM_ID, entry_point="task_suites.mujoco_params:make_param_env", max_episode_steps=1000)
