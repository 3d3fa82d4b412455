"""A fast suite for tests and tutorials: a 2-D point mass whose mass, damping and goal vary.

The goal is hidden from the observation ``[x, y, vx, vy]``; it shows only through the reward
``-||p - goal|| - 0.01 ||a||^2``, exactly like Meta-World's ML benchmarks hide their goals. Tasks
differ in dynamics (mass, damping) and reward (goal). The vector env is a single numpy-batched
env (no per-env Python loop), which is what makes it fast.
"""

from __future__ import annotations

from collections.abc import Sequence

import gymnasium as gym
import numpy as np

from task_suites.base import BaseSuite, Task

__all__ = ["PointMassSuite", "PointMassEnv", "PointMassVecEnv"]

DT = 0.1
BOUND = 2.0
START = 1.5  # episodes start anywhere in [-1.5, 1.5]^2, so exploration data covers the goals' region


def _params(tasks: Sequence[Task]) -> np.ndarray:
    """``(n, 4)`` array of ``[mass, damping, goal_x, goal_y]``."""
    return np.array([[t.payload["mass"], t.payload["damping"], *t.payload["goal"]] for t in tasks], dtype=np.float64)


def _step(pos, vel, act, params):
    act = np.clip(act, -1.0, 1.0)
    mass, damping, goal = params[:, 0:1], params[:, 1:2], params[:, 2:4]
    vel = vel + DT * (act / mass - damping * vel)
    pos = pos + DT * vel
    hit = np.abs(pos) > BOUND  # a wall stops the mass along that axis
    pos, vel = np.clip(pos, -BOUND, BOUND), np.where(hit, 0.0, vel)
    reward = -np.linalg.norm(pos - goal, axis=-1) - 0.01 * np.sum(act * act, axis=-1)
    return pos, vel, reward


class PointMassVecEnv(gym.vector.VectorEnv):
    """Numpy-batched point masses, one per task; same-step autoreset at ``max_episode_steps``."""

    metadata = {"autoreset_mode": gym.vector.AutoresetMode.SAME_STEP}

    def __init__(self, tasks: Sequence[Task], max_episode_steps: int, seed: int | None = None):
        self.num_envs = len(tasks)
        self.params = _params(tasks)
        self.max_episode_steps = max_episode_steps
        self.single_observation_space = gym.spaces.Box(-np.inf, np.inf, (4,), np.float64)
        self.single_action_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
        self.observation_space = gym.vector.utils.batch_space(self.single_observation_space, self.num_envs)
        self.action_space = gym.vector.utils.batch_space(self.single_action_space, self.num_envs)
        self._rng = np.random.default_rng(seed)
        self.pos = np.zeros((self.num_envs, 2))
        self.vel = np.zeros((self.num_envs, 2))
        self.t = np.zeros(self.num_envs, dtype=np.int64)

    def _reset_idx(self, idx):
        self.pos[idx] = self._rng.uniform(-START, START, size=(len(idx), 2))
        self.vel[idx] = 0.0
        self.t[idx] = 0

    def _obs(self):
        return np.concatenate([self.pos, self.vel], axis=1)

    def reset(self, *, seed=None, options=None):
        if seed is not None:
            self._rng = np.random.default_rng(seed)
        self._reset_idx(np.arange(self.num_envs))
        return self._obs(), {}

    def step(self, actions):
        self.pos, self.vel, reward = _step(self.pos, self.vel, np.asarray(actions, dtype=np.float64), self.params)
        self.t += 1
        truncated = self.t >= self.max_episode_steps
        terminated = np.zeros(self.num_envs, dtype=bool)
        obs = self._obs()
        info = {}
        if truncated.any():
            idx = np.flatnonzero(truncated)
            info = {"final_obs": obs.copy(), "_final_obs": truncated.copy()}
            self._reset_idx(idx)
            obs = self._obs()
        return obs, reward, terminated, truncated, info


class PointMassEnv(gym.Env):
    """One point-mass task as a plain gymnasium Env (goal hidden)."""

    def __init__(self, task: Task, max_episode_steps: int, seed: int | None = None):
        self.params = _params([task])
        self.max_episode_steps = max_episode_steps
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (4,), np.float64)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
        self._rng = np.random.default_rng(seed)
        if seed is not None:
            self.action_space.seed(seed)

    def reset(self, *, seed=None, options=None):
        if seed is not None:
            self._rng = np.random.default_rng(seed)
        self.pos = self._rng.uniform(-START, START, size=(1, 2))
        self.vel = np.zeros((1, 2))
        self.t = 0
        return np.concatenate([self.pos, self.vel], axis=1)[0], {}

    def step(self, action):
        self.pos, self.vel, reward = _step(self.pos, self.vel, np.asarray(action, dtype=np.float64)[None], self.params)
        self.t += 1
        obs = np.concatenate([self.pos, self.vel], axis=1)[0]
        return obs, float(reward[0]), False, self.t >= self.max_episode_steps, {}


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
        self.check_tasks([task])
        return PointMassEnv(task, self.max_episode_steps, seed)

    def make_vec_env(self, tasks: Sequence[Task], seed: int | None = None, strategy: str = "sync") -> gym.vector.VectorEnv:
        """``"sync"``: one numpy-batched env (fast); ``"async"``: gymnasium's AsyncVectorEnv."""
        if strategy == "async":
            return super().make_vec_env(tasks, seed, strategy)
        if strategy != "sync":
            raise ValueError(f"strategy: expected 'sync' or 'async', got {strategy!r}")
        return PointMassVecEnv(self.check_tasks(tasks), self.max_episode_steps, seed)
