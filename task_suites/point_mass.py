"""A fast suite for tests and tutorials: a 2-D point mass whose mass, damping and goal vary.

The goal is hidden from the observation ``[x, y, vx, vy]``; it shows only through the reward
``-||p - goal|| - 0.01 ||a||^2``, exactly like Meta-World's ML benchmarks hide their goals. Tasks
differ in dynamics (mass, damping) and reward (goal). The sync vector env is a single numpy-batched
env (no per-env Python loop), which is what makes it fast; the async one is gymnasium's
``AsyncVectorEnv`` over ``task_suites/PointMass-v0`` envs, and both give the same data for one seed.
"""

from __future__ import annotations

from collections.abc import Sequence

import gymnasium as gym
import numpy as np

from task_suites.base import BaseSuite, Task
from task_suites.registration import POINT_MASS_ID

__all__ = ["PointMassSuite", "PointMassEnv", "PointMassVecEnv", "BatchedPointVecEnv"]

DT = 0.1
BOUND = 2.0
START = 1.5  # episodes start anywhere in [-1.5, 1.5]^2, so exploration data covers the goals' region
MAX_SPEED = 10.0  # per axis; the suite's masses (>= 0.5) never get near it (< 5 wall to wall)


def _params(tasks: Sequence[Task]) -> np.ndarray:
    """``(n, 4)`` array of ``[mass, damping, goal_x, goal_y]``."""
    return np.array([[t.payload["mass"], t.payload["damping"], *t.payload["goal"]] for t in tasks], dtype=np.float64)


def _step(pos, vel, act, params):
    act = np.clip(act, -1.0, 1.0)
    mass, damping, goal = params[:, 0:1], params[:, 1:2], params[:, 2:4]
    vel = np.clip(vel + DT * (act / mass - damping * vel), -MAX_SPEED, MAX_SPEED)
    pos = pos + DT * vel
    hit = np.abs(pos) > BOUND  # a wall stops the mass along that axis
    pos, vel = np.clip(pos, -BOUND, BOUND), np.where(hit, 0.0, vel)
    reward = -np.linalg.norm(pos - goal, axis=-1) - 0.01 * np.sum(act * act, axis=-1)
    return pos, vel, reward


class BatchedPointVecEnv(gym.vector.VectorEnv):
    """Base of the numpy-batched point-mass vector envs: seeding, resets and same-step autoreset.

    Seeded like gymnasium's vector envs: ``reset(seed=s)`` seeds sub-env ``i`` with ``s + i``, and each sub-env
    draws its start positions from its own generator, so it produces exactly the data of an ``AsyncVectorEnv``
    over the single envs. Subclasses define ``_start(rng) -> (2,)`` and ``_advance(actions) -> (reward, info)``
    (moving ``pos`` / ``vel``).
    """

    metadata = {"autoreset_mode": gym.vector.AutoresetMode.SAME_STEP}

    def __init__(self, params: np.ndarray, max_episode_steps: int, seed: int | None = None):
        self.num_envs = len(params)
        self.params = params
        self.max_episode_steps = max_episode_steps
        self.single_observation_space = _observation_space()
        self.single_action_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
        self.observation_space = gym.vector.utils.batch_space(self.single_observation_space, self.num_envs)
        self.action_space = gym.vector.utils.batch_space(self.single_action_space, self.num_envs)
        self._seed(seed)
        self.pos = np.zeros((self.num_envs, 2))
        self.vel = np.zeros((self.num_envs, 2))
        self.t = np.zeros(self.num_envs, dtype=np.int64)

    def _seed(self, seed: int | None) -> None:
        seeds = [None] * self.num_envs if seed is None else [seed + i for i in range(self.num_envs)]
        self._rngs = [gym.utils.seeding.np_random(s)[0] for s in seeds]

    def _start(self, rng: np.random.Generator) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def _advance(self, actions: np.ndarray) -> tuple[np.ndarray, dict]:  # pragma: no cover - abstract
        raise NotImplementedError

    def _reset_idx(self, idx) -> None:
        for i in idx:
            self.pos[i] = self._start(self._rngs[i])
        self.vel[idx] = 0.0
        self.t[idx] = 0

    def _obs(self) -> np.ndarray:
        return np.concatenate([self.pos, self.vel], axis=1)

    def reset(self, *, seed=None, options=None):
        if seed is not None:
            self._seed(int(seed))
        self._reset_idx(np.arange(self.num_envs))
        return self._obs(), {}

    def step(self, actions):
        reward, info = self._advance(np.asarray(actions, dtype=np.float64))
        self.t += 1
        truncated = self.t >= self.max_episode_steps
        terminated = np.zeros(self.num_envs, dtype=bool)
        obs = self._obs()
        if truncated.any():
            info = {**info, "final_obs": obs.copy(), "_final_obs": truncated.copy()}
            self._reset_idx(np.flatnonzero(truncated))
            obs = self._obs()
        return obs, reward, terminated, truncated, info


class PointMassVecEnv(BatchedPointVecEnv):
    """Numpy-batched point masses, one per task; same-step autoreset at ``max_episode_steps``.

    Seeded like gymnasium's vector envs (see :class:`BatchedPointVecEnv`), so it produces exactly the data of an
    ``AsyncVectorEnv`` over :class:`PointMassEnv` envs (``make_vec_env(strategy="async")``).

    Args:
        tasks: point-mass tasks, one sub-env each.
        max_episode_steps: episode length (every episode is truncated there).
        seed: seeds the first reset if it is called without a seed (sub-env ``i`` gets ``seed + i``).

    Example:
        >>> import task_suites
        >>> suite = task_suites.make("point-mass")
        >>> env = PointMassVecEnv(suite.test_tasks[:3], max_episode_steps=50)
        >>> env.reset(seed=0)[0].shape
        (3, 4)
    """

    def __init__(self, tasks: Sequence[Task], max_episode_steps: int, seed: int | None = None):
        super().__init__(_params(tasks), max_episode_steps, seed)

    def _start(self, rng: np.random.Generator) -> np.ndarray:
        return rng.uniform(-START, START, size=(1, 2))[0]

    def _advance(self, actions: np.ndarray) -> tuple[np.ndarray, dict]:
        self.pos, self.vel, reward = _step(self.pos, self.vel, actions, self.params)
        return reward, {}


def _real(name: str, x, *, positive: bool) -> float:
    if isinstance(x, bool) or not isinstance(x, (int, float, np.integer, np.floating)) or not np.isfinite(x) \
            or (x <= 0 if positive else x < 0):
        raise ValueError(f"{name}: expected a finite number {'> 0' if positive else '>= 0'}, got {x!r}")
    return float(x)


def _check_env_args(env: gym.Env, mass, damping, goal, render_mode) -> tuple[float, float, np.ndarray]:
    """The single envs' arguments checked: ``(mass, damping, goal (2,))``; raises ValueError naming the argument."""
    mass, damping = _real("mass", mass, positive=True), _real("damping", damping, positive=False)
    try:
        g = np.asarray(goal, dtype=np.float64)
    except (TypeError, ValueError):
        g = np.full(0, np.nan)
    if g.shape != (2,) or not np.isfinite(g).all():
        raise ValueError(f"goal: expected two finite numbers (x, y), got {goal!r}")
    if render_mode is not None and render_mode not in env.metadata["render_modes"]:
        raise ValueError(f"render_mode: expected None or one of {env.metadata['render_modes']}, got {render_mode!r}")
    return mass, damping, g


def _observation_space() -> gym.spaces.Box:
    """``[x, y, vx, vy]``: positions inside the walls, velocities at most ``MAX_SPEED`` per axis."""
    high = np.array([BOUND, BOUND, MAX_SPEED, MAX_SPEED])
    return gym.spaces.Box(-high, high, (4,), np.float64)


class PointMassEnv(gym.Env):
    """One point mass as a gymnasium Env: ``task_suites/PointMass-v0`` (goal hidden, no time limit of its own).

    Observation ``[x, y, vx, vy]`` (float64), action a force in ``[-1, 1]^2`` (float32), reward
    ``-||p - goal|| - 0.01 ||a||^2``. Walls at ``|x|, |y| = 2`` stop the mass along that axis; speed is
    capped at ``MAX_SPEED`` per axis (10, beyond any of the suite's tasks). It never
    terminates; ``gym.make`` (and :meth:`PointMassSuite.make_env`) add the ``TimeLimit``.

    Args:
        mass: mass (> 0); the acceleration is ``action / mass``.
        damping: velocity damping (>= 0).
        goal: ``(x, y)`` of the hidden goal.
        render_mode: ``None`` or ``"rgb_array"`` (a 64x64 top view: the mass blue, the goal red).

    Example:
        >>> import gymnasium as gym
        >>> import task_suites
        >>> env = gym.make("task_suites/PointMass-v0", mass=2.0, goal=(1.0, 0.0))
        >>> obs, _ = env.reset(seed=0)
        >>> obs.shape, env.spec.max_episode_steps
        ((4,), 50)
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": int(round(1 / DT))}

    def __init__(self, mass: float = 1.0, damping: float = 0.5, goal: Sequence[float] = (0.0, 0.0),
                 render_mode: str | None = None):
        mass, damping, g = _check_env_args(self, mass, damping, goal, render_mode)
        self.mass, self.damping, self.goal = mass, damping, (float(g[0]), float(g[1]))
        self.params = np.array([[self.mass, self.damping, *self.goal]], dtype=np.float64)
        self.render_mode = render_mode
        self.observation_space = _observation_space()
        self.action_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
        self.pos = np.zeros((1, 2))
        self.vel = np.zeros((1, 2))

    def _obs(self) -> np.ndarray:
        return np.concatenate([self.pos, self.vel], axis=1)[0]

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self.pos = self.np_random.uniform(-START, START, size=(1, 2))
        self.vel = np.zeros((1, 2))
        return self._obs(), {}

    def step(self, action):
        self.pos, self.vel, reward = _step(self.pos, self.vel, np.asarray(action, dtype=np.float64)[None], self.params)
        return self._obs(), float(reward[0]), False, False, {}

    def render(self) -> np.ndarray | None:
        """A ``(64, 64, 3)`` uint8 top view in ``"rgb_array"`` mode, else ``None``."""
        if self.render_mode != "rgb_array":
            return None
        return top_view(self.goal, self.pos[0])


def top_view(goal, pos, blocked=None, size: int = 64) -> np.ndarray:
    """A ``(size, size, 3)`` uint8 view of the arena from above: the goal red, the mass blue, and in grey the pixels
    where ``blocked(x, y)`` (world coordinates, arrays) is true (the maze's walls)."""
    img = np.full((size, size, 3), 255, dtype=np.uint8)
    yy, xx = np.mgrid[0:size, 0:size]
    if blocked is not None:
        wx = xx / (size - 1) * 2 * BOUND - BOUND  # world coordinates of each pixel (row 0 at the top)
        wy = (size - 1 - yy) / (size - 1) * 2 * BOUND - BOUND
        img[blocked(wx, wy)] = (120, 120, 120)

    def disc(p, color):
        cx, cy = ((np.asarray(p) + BOUND) / (2 * BOUND) * (size - 1))
        img[(xx - cx) ** 2 + (yy - (size - 1 - cy)) ** 2 <= 6] = color

    disc(goal, (220, 40, 40))
    disc(pos, (40, 70, 220))
    return img


class PointMassSuite(BaseSuite):
    """Fast suite: point masses with mass in [0.5, 2.5], damping in [0, 1.5], goal within radius 1.5.

    Args:
        seed: seed of the task parameters (train and test tasks are disjoint draws).
        num_train / num_test: number of tasks per split.
        max_episode_steps: episode length.

    Example:
        >>> suite = PointMassSuite(seed=0)
        >>> env = suite.make_vec_env(suite.test_tasks)
        >>> obs, _ = env.reset(seed=0)
        >>> obs.shape
        (10, 4)
    """

    obs_dim = 4
    act_dim = 2
    action_low = -np.ones(2, dtype=np.float32)
    action_high = np.ones(2, dtype=np.float32)
    batched_vec_env = True
    subgoal_dims = (0, 1)
    subgoal_scale = 1.0
    """Its sync vector env is one numpy-batched env: collection puts every task in it at once."""

    def __init__(self, seed: int = 0, num_train: int = 40, num_test: int = 10, max_episode_steps: int = 50):
        self.name = "point-mass"
        self.seed = int(seed)
        self.max_episode_steps = int(max_episode_steps)
        rng = np.random.default_rng(seed)

        def draw(split, n):
            out = []
            for i in range(n):
                r, th = 1.5 * np.sqrt(rng.uniform()), rng.uniform(0, 2 * np.pi)
                payload = {
                    "mass": float(rng.uniform(0.5, 2.5)),
                    "damping": float(rng.uniform(0.0, 1.5)),
                    "goal": (float(r * np.cos(th)), float(r * np.sin(th))),
                }
                out.append(Task(f"point-mass/{split}/{i:02d}", "point-mass", split, i, payload))
            return out

        self.train_tasks, self.test_tasks = draw("train", num_train), draw("test", num_test)

    def make_env(self, task: Task, seed: int | None = None) -> gym.Env:
        """``gym.make("task_suites/PointMass-v0", ...)`` with the task's mass, damping and goal.

        Args:
            task: a task of this suite.
            seed: seeds the first reset if it is called without a seed, and the action space.

        Returns:
            The registered env with its ``TimeLimit`` of ``max_episode_steps``.
        """
        self.check_tasks([task])
        p = task.payload
        env = gym.make(POINT_MASS_ID, mass=p["mass"], damping=p["damping"], goal=tuple(p["goal"]),
                       max_episode_steps=self.max_episode_steps)
        if seed is not None:
            env.unwrapped.np_random = gym.utils.seeding.np_random(seed)[0]
            env.action_space.seed(seed)
        return env

    def make_vec_env(self, tasks: Sequence[Task], seed: int | None = None, strategy: str = "sync") -> gym.vector.VectorEnv:
        """``"sync"``: one numpy-batched env (fast); ``"async"``: gymnasium's AsyncVectorEnv of :meth:`make_env` envs.

        Both give the same observations and rewards for the same ``seed`` and actions.
        """
        if strategy == "async":
            return super().make_vec_env(tasks, seed, strategy)
        if strategy != "sync":
            raise ValueError(f"strategy: expected 'sync' or 'async', got {strategy!r}")
        return PointMassVecEnv(self.check_tasks(tasks), self.max_episode_steps, seed)
