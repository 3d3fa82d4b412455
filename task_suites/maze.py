"""A long-horizon suite: a point mass in a maze whose hidden goal lies behind a wall.

The arena is the point-mass arena (``[-2, 2]^2``, observation ``[x, y, vx, vy]``, force in ``[-1, 1]^2``,
goal hidden) with walls. The reward is D4RL maze2d's dense reward, ``exp(-||p - goal||)``, minus
``0.01 ||a||^2``: unlike the point mass's ``-||p - goal||`` it makes reaching the goal worth the detour
over an episode (pressing against the wall below the goal earns ``exp(-1.3) ~ 0.27`` a step, the goal 1). In the default layout one wall
splits the arena, ``y in [-0.1, 0.1]`` for ``x in [-2, 1]``, with a gap on the right: every episode
starts below the wall on the left, every goal lies above it on the left. Moving straight towards the
goal ends against the wall, which is a local optimum of the distance reward; the way round first
moves *away* from the goal, so a short-horizon planner that follows the reward greedily stalls there,
and the task needs a plan of roughly 30-45 steps (the episode has 100).

Success is ``||p - goal|| < 0.25`` (``info["success"]``, Meta-World's flag semantics: an episode
succeeds if it is ever 1). The sync vector env is numpy-batched like the point-mass suite's;
:meth:`PointMazeSuite.true_dynamics` gives the same dynamics as a torch function, to plan with the
true model and separate planning from model error.
"""

from __future__ import annotations

from collections.abc import Sequence

import gymnasium as gym
import numpy as np

from task_suites.base import BaseSuite, Task
from task_suites.point_mass import BOUND, DT, BatchedPointVecEnv, _check_env_args, _observation_space, top_view
from task_suites.registration import POINT_MAZE_ID

__all__ = ["PointMazeSuite", "PointMazeEnv", "PointMazeVecEnv", "WALLS", "SUCCESS_RADIUS"]

WALLS = ((-2.0, 0.4, -0.15, 0.15),)
"""The default layout: walls as ``(x_min, x_max, y_min, y_max)`` rectangles."""
START_REGION = (-1.2, -0.2, -1.6, -0.6)
"""Where episodes start: ``(x_min, x_max, y_min, y_max)``, below the wall."""
GOAL_REGION = (-1.6, -0.6, 0.6, 1.6)
"""Where the hidden goals lie, behind the wall."""
MAX_SPEED = 2.5
"""Speed cap per axis: one step moves at most 0.25, less than a wall's thickness (no tunnelling)."""
SUCCESS_RADIUS = 0.25


def _check_walls(walls) -> np.ndarray:
    try:
        w = np.asarray(walls, dtype=np.float64).reshape(-1, 4)
    except (TypeError, ValueError):
        w = np.full((1, 4), np.nan)
    if not np.isfinite(w).all() or (w[:, 0] >= w[:, 1]).any() or (w[:, 2] >= w[:, 3]).any():
        raise ValueError(f"walls: expected (x_min, x_max, y_min, y_max) rectangles with min < max, got {walls!r}")
    if (w[:, 1] - w[:, 0]).min() < DT * MAX_SPEED or (w[:, 3] - w[:, 2]).min() < DT * MAX_SPEED:
        raise ValueError(f"walls: expected every wall at least {DT * MAX_SPEED} thick (one step at full speed), got {walls!r}")
    return w


def _blocked(x, y, walls: np.ndarray):
    """Whether points ``(x, y)`` (arrays) lie outside the arena or inside a wall."""
    out = (np.abs(x) > BOUND) | (np.abs(y) > BOUND)
    for x0, x1, y0, y1 in walls:
        out = out | ((x > x0) & (x < x1) & (y > y0) & (y < y1))
    return out


def _maze_step(pos, vel, act, params, walls):
    """One step of every maze; ``params (n, 4)``: ``[mass, damping, goal_x, goal_y]``."""
    act = np.clip(act, -1.0, 1.0)
    mass, damping, goal = params[:, 0:1], params[:, 1:2], params[:, 2:4]
    vel = np.clip(vel + DT * (act / mass - damping * vel), -MAX_SPEED, MAX_SPEED)
    x, y = pos[:, 0], pos[:, 1]
    nx = x + DT * vel[:, 0]
    hit_x = _blocked(nx, y, walls)  # move along x, then along y; a wall stops that axis
    x = np.where(hit_x, x, nx)
    ny = y + DT * vel[:, 1]
    hit_y = _blocked(x, ny, walls)
    y = np.where(hit_y, y, ny)
    vel = np.stack([np.where(hit_x, 0.0, vel[:, 0]), np.where(hit_y, 0.0, vel[:, 1])], axis=1)
    pos = np.stack([x, y], axis=1)
    dist = np.linalg.norm(pos - goal, axis=-1)
    reward = np.exp(-dist) - 0.01 * np.sum(act * act, axis=-1)
    return pos, vel, reward, dist < SUCCESS_RADIUS


def _uniform(rng: np.random.Generator, region) -> np.ndarray:
    x0, x1, y0, y1 = region
    return np.array([rng.uniform(x0, x1), rng.uniform(y0, y1)])


class PointMazeVecEnv(BatchedPointVecEnv):
    """Numpy-batched mazes, one per task; same-step autoreset at ``max_episode_steps``; ``info["success"]`` every step.

    Seeded like gymnasium's vector envs (sub-env ``i`` gets ``seed + i``), so it gives the data of an
    ``AsyncVectorEnv`` over :class:`PointMazeEnv` envs.

    Example:
        >>> import task_suites
        >>> suite = task_suites.make("point-maze")
        >>> env = PointMazeVecEnv(suite.test_tasks[:3], max_episode_steps=100)
        >>> obs, _ = env.reset(seed=0)
        >>> obs.shape, bool((obs[:, 1] < -0.1).all())  # every start lies below the wall
        ((3, 4), True)
    """

    def __init__(self, tasks: Sequence[Task], max_episode_steps: int, seed: int | None = None, walls=WALLS,
                 start_region=START_REGION):
        self.walls, self.start_region = _check_walls(walls), tuple(start_region)
        params = np.array([[t.payload["mass"], t.payload["damping"], *t.payload["goal"]] for t in tasks])
        super().__init__(params, max_episode_steps, seed)

    def _start(self, rng: np.random.Generator) -> np.ndarray:
        return _uniform(rng, self.start_region)

    def _advance(self, actions: np.ndarray) -> tuple[np.ndarray, dict]:
        self.pos, self.vel, reward, success = _maze_step(self.pos, self.vel, actions, self.params, self.walls)
        return reward, {"success": success.astype(np.float64), "_success": np.ones(self.num_envs, dtype=bool)}


class PointMazeEnv(gym.Env):
    """One maze as a gymnasium Env: ``task_suites/PointMaze-v0`` (goal hidden; ``TimeLimit`` of 100 from ``gym.make``).

    Args:
        mass: mass (> 0).
        damping: velocity damping (>= 0).
        goal: ``(x, y)`` of the hidden goal.
        walls: ``(x_min, x_max, y_min, y_max)`` rectangles (default :data:`WALLS`).
        start_region: ``(x_min, x_max, y_min, y_max)`` of the start positions.
        render_mode: ``None`` or ``"rgb_array"`` (a 64x64 top view: walls grey, mass blue, goal red).

    Example:
        >>> import gymnasium as gym
        >>> import task_suites
        >>> env = gym.make("task_suites/PointMaze-v0", goal=(-1.0, 1.0))
        >>> obs, _ = env.reset(seed=0)
        >>> obs, r, term, trunc, info = env.step(np.array([0.0, 1.0], dtype=np.float32))
        >>> obs.shape, env.spec.max_episode_steps, info["success"]
        ((4,), 100, False)
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": int(round(1 / DT))}

    def __init__(self, mass: float = 1.0, damping: float = 0.25, goal: Sequence[float] = (-1.0, 1.2), walls=WALLS,
                 start_region=START_REGION, render_mode: str | None = None):
        mass, damping, g = _check_env_args(self, mass, damping, goal, render_mode)
        self.walls, self.start_region = _check_walls(walls), tuple(start_region)
        self.goal = (float(g[0]), float(g[1]))
        self.params = np.array([[mass, damping, *self.goal]])
        self.render_mode = render_mode
        self.observation_space = _observation_space()
        self.action_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
        self.pos = np.zeros((1, 2))
        self.vel = np.zeros((1, 2))

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self.pos = _uniform(self.np_random, self.start_region)[None]
        self.vel = np.zeros((1, 2))
        return np.concatenate([self.pos, self.vel], axis=1)[0], {}

    def step(self, action):
        self.pos, self.vel, reward, success = _maze_step(self.pos, self.vel, np.asarray(action, dtype=np.float64)[None],
                                                         self.params, self.walls)
        obs = np.concatenate([self.pos, self.vel], axis=1)[0]
        return obs, float(reward[0]), False, False, {"success": bool(success[0])}

    def render(self) -> np.ndarray | None:
        """A ``(64, 64, 3)`` uint8 top view in ``"rgb_array"`` mode, else ``None``."""
        if self.render_mode != "rgb_array":
            return None
        return top_view(self.goal, self.pos[0], lambda x, y: _blocked(x, y, self.walls))


class PointMazeSuite(BaseSuite):
    """The maze suite ``"point-maze"``: mass in [0.5, 1.5], damping in [0, 0.3], goals behind the wall.

    Tasks differ in dynamics (mass, damping) and in the hidden goal (uniform in :data:`GOAL_REGION`);
    the walls are the same in every task (``walls=`` chooses another layout for the whole suite).
    Observation and action spaces are the point-mass suite's, so a point-mass prior transfers as is.

    Args:
        seed: seed of the task parameters (train and test tasks are disjoint draws).
        num_train / num_test: tasks per split.
        max_episode_steps: episode length (100: the way round takes 40-60 steps).
        walls / start_region / goal_region: the layout, ``(x_min, x_max, y_min, y_max)`` rectangles.

    Example:
        >>> suite = PointMazeSuite(seed=0)
        >>> suite
        PointMazeSuite('point-maze', train=40, test=10, obs_dim=4, act_dim=2)
        >>> model = suite.true_dynamics(suite.test_tasks[:2])  # torch: (B, ..., 4), (B, ..., 2) -> next obs, reward
    """

    obs_dim = 4
    act_dim = 2
    action_low = -np.ones(2, dtype=np.float32)
    action_high = np.ones(2, dtype=np.float32)
    batched_vec_env = True
    subgoal_dims = (0, 1)
    subgoal_scale = 1.2

    def __init__(self, seed: int = 0, num_train: int = 40, num_test: int = 10, max_episode_steps: int = 100,
                 walls=WALLS, start_region=START_REGION, goal_region=GOAL_REGION):
        self.name = "point-maze"
        self.seed = int(seed)
        self.max_episode_steps = int(max_episode_steps)
        self.walls = _check_walls(walls)
        self.start_region, self.goal_region = tuple(start_region), tuple(goal_region)
        rng = np.random.default_rng(seed)

        def draw(split, n):
            out = []
            for i in range(n):
                g = _uniform(rng, self.goal_region)
                payload = {"mass": float(rng.uniform(0.5, 1.5)), "damping": float(rng.uniform(0.0, 0.3)),
                           "goal": (float(g[0]), float(g[1]))}
                out.append(Task(f"point-maze/{split}/{i:02d}", "point-maze", split, i, payload))
            return out

        self.train_tasks, self.test_tasks = draw("train", num_train), draw("test", num_test)

    def _layout(self) -> dict:
        return {"walls": tuple(map(tuple, self.walls.tolist())), "start_region": self.start_region}

    def make_env(self, task: Task, seed: int | None = None) -> gym.Env:
        """``gym.make("task_suites/PointMaze-v0", ...)`` with the task's parameters and the suite's layout."""
        self.check_tasks([task])
        p = task.payload
        env = gym.make(POINT_MAZE_ID, mass=p["mass"], damping=p["damping"], goal=tuple(p["goal"]),
                       max_episode_steps=self.max_episode_steps, **self._layout())
        if seed is not None:
            env.unwrapped.np_random = gym.utils.seeding.np_random(seed)[0]
            env.action_space.seed(seed)
        return env

    def make_vec_env(self, tasks: Sequence[Task], seed: int | None = None, strategy: str = "sync") -> gym.vector.VectorEnv:
        """``"sync"``: one numpy-batched env (fast); ``"async"``: gymnasium's AsyncVectorEnv of :meth:`make_env` envs."""
        if strategy == "async":
            return super().make_vec_env(tasks, seed, strategy)
        if strategy != "sync":
            raise ValueError(f"strategy: expected 'sync' or 'async', got {strategy!r}")
        return PointMazeVecEnv(self.check_tasks(tasks), self.max_episode_steps, seed, **self._layout())

    def true_dynamics(self, tasks: Sequence[Task]):
        """The tasks' exact dynamics and reward as a torch function, e.g. for ``meta_mbrl.models.FunctionModel``.

        Returns:
            ``fn(obs (B, ..., 4), act (B, ..., 2)) -> (next_obs (B, ..., 4), reward (B, ...))`` for the
            ``B = len(tasks)`` tasks in order (task ``b`` on the leading index ``b``), in the inputs' dtype;
            the same numbers as the env's ``step`` (up to float rounding).
        """
        import torch

        params = torch.as_tensor(np.array([[t.payload["mass"], t.payload["damping"], *t.payload["goal"]]
                                           for t in self.check_tasks(tasks)]))
        walls = torch.as_tensor(self.walls)

        def blocked(x, y):
            out = (x.abs() > BOUND) | (y.abs() > BOUND)
            for x0, x1, y0, y1 in walls.tolist():
                out = out | ((x > x0) & (x < x1) & (y > y0) & (y < y1))
            return out

        def fn(obs, act):
            if obs.dim() < 2 or obs.shape[0] != params.shape[0]:
                raise ValueError(f"obs: expected shape ({params.shape[0]}, ..., 4) (one leading index per task), "
                                 f"got {tuple(obs.shape)}")
            p = params.to(device=obs.device, dtype=obs.dtype).reshape(params.shape[0], *([1] * (obs.dim() - 2)), 4)
            a = act.clamp(-1.0, 1.0)
            vel = (obs[..., 2:] + DT * (a / p[..., 0:1] - p[..., 1:2] * obs[..., 2:])).clamp(-MAX_SPEED, MAX_SPEED)
            x, y = obs[..., 0], obs[..., 1]
            nx = x + DT * vel[..., 0]
            hit_x = blocked(nx, y)
            x = torch.where(hit_x, x, nx)
            ny = y + DT * vel[..., 1]
            hit_y = blocked(x, ny)
            y = torch.where(hit_y, y, ny)
            vx = torch.where(hit_x, torch.zeros_like(x), vel[..., 0])
            vy = torch.where(hit_y, torch.zeros_like(y), vel[..., 1])
            nxt = torch.stack([x, y, vx, vy], dim=-1)
            reward = torch.exp(-(nxt[..., :2] - p[..., 2:4]).norm(dim=-1)) - 0.01 * a.square().sum(-1)
            return nxt, reward

        return fn
