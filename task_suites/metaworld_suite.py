"""Meta-World v3 meta-learning suites (ML1, ML10, ML45, custom splits); goals hidden."""

from __future__ import annotations

from collections.abc import Sequence

import gymnasium as gym
import numpy as np

from task_suites.base import BaseSuite, Task

__all__ = ["MetaWorldSuite"]


class MetaWorldSuite(BaseSuite):
    """A Meta-World ML benchmark as a task suite.

    Tasks are Meta-World's own (class, goal) tasks of the benchmark built with ``seed``, so task
    ``ml10/test/bin-picking-v3/07`` is the same goal on every machine. Observations hide the goal
    (its last 3 dims are zeros), as in the benchmark.

    Args:
        benchmark: ``"ML10"``, ``"ML45"``, ``"ML1:<env>"`` or ``"custom"``.
        seed: seed of Meta-World's goal generation.
        train_classes / test_classes: class names, for ``"custom"`` only.

    Example:
        >>> suite = MetaWorldSuite("ML1:reach-v3", seed=0)  # doctest: +SKIP
        >>> env = suite.make_env(suite.test_tasks[0], seed=0)  # doctest: +SKIP
    """

    max_episode_steps = 500

    def __init__(
        self,
        benchmark: str = "ML10",
        seed: int = 0,
        train_classes: Sequence[str] | None = None,
        test_classes: Sequence[str] | None = None,
    ):
        import metaworld

        self.seed = int(seed)
        self.benchmark_name = benchmark
        if benchmark == "ML10":
            bench, self.name = metaworld.ML10(seed=seed), "ml10"
        elif benchmark == "ML45":
            bench, self.name = metaworld.ML45(seed=seed), "ml45"
        elif benchmark.startswith("ML1:"):
            env_name = benchmark.split(":", 1)[1]
            if env_name not in metaworld.ALL_V3_ENVIRONMENTS:
                raise ValueError(
                    f"name: unknown Meta-World v3 class {env_name!r} in 'ml1:{env_name}'; "
                    f"expected one of {sorted(metaworld.ALL_V3_ENVIRONMENTS)}"
                )
            bench, self.name = metaworld.ML1(env_name, seed=seed), f"ml1:{env_name}"
        elif benchmark == "custom":
            train_classes, test_classes = list(train_classes or []), list(test_classes or [])
            for arg, names in (("train_classes", train_classes), ("test_classes", test_classes)):
                unknown = sorted(set(names) - set(metaworld.ALL_V3_ENVIRONMENTS))
                if not names or unknown:
                    raise ValueError(f"{arg}: expected non-empty Meta-World v3 class names, unknown: {unknown or names}")
            bench = metaworld.CustomML(train_classes, test_classes, seed=seed)
            self.name = "custom:" + ",".join(train_classes) + "|" + ",".join(test_classes)
        else:
            raise ValueError(f"benchmark: expected 'ML10', 'ML45', 'ML1:<env>' or 'custom', got {benchmark!r}")
        self.benchmark = bench
        self._classes = {**bench.train_classes, **bench.test_classes}
        self.train_classes = list(bench.train_classes)
        self.test_classes = list(bench.test_classes)
        self.train_tasks = self._wrap(bench.train_tasks, "train")
        self.test_tasks = self._wrap(bench.test_tasks, "test")
        probe = self.make_env(self.train_tasks[0])
        self.obs_dim = int(probe.observation_space.shape[0])
        self.act_dim = int(probe.action_space.shape[0])
        self.action_low = np.asarray(probe.action_space.low, dtype=np.float32)
        self.action_high = np.asarray(probe.action_space.high, dtype=np.float32)
        probe.close()

    def _wrap(self, mw_tasks, split: str) -> list[Task]:
        counts: dict[str, int] = {}
        out = []
        for t in mw_tasks:
            i = counts.get(t.env_name, 0)
            counts[t.env_name] = i + 1
            out.append(Task(f"{self.name}/{split}/{t.env_name}/{i:02d}", t.env_name, split, i, t))
        return out

    def make_env(self, task: Task, seed: int | None = None) -> gym.Env:
        """A gymnasium Env fixed to ``task`` (500-step episodes, goal hidden)."""
        if not isinstance(task, Task) or task.payload is None or task.name not in self._classes:
            raise ValueError(f"task: expected a task of suite {self.name!r}, got {task!r}")
        env = self._classes[task.name]()
        env.set_task(task.payload)
        if seed is not None:
            env.seed(seed)
        env = gym.wrappers.TimeLimit(env, env.max_path_length)
        if seed is not None:
            env.action_space.seed(seed)
        return env

    def make_benchmark_envs(self, split: str = "test", meta_batch_size: int | None = None, seed: int | None = None,
                            strategy: str = "sync", max_episode_steps: int | None = None,
                            total_tasks_per_cls: int | None = None) -> gym.vector.VectorEnv:
        """Meta-World's own vector env for ``split``, as ``metaworld.evaluation`` expects it.

        Args:
            split: ``"train"`` or ``"test"``.
            meta_batch_size: sub-envs, a multiple of the split's number of classes (default: one per class).
            seed: env seed (default: the suite's).
            strategy: ``"sync"`` or ``"async"``.
            max_episode_steps: shorter episodes than the benchmark's 500 (smoke tests only).
            total_tasks_per_cls: only the first goals of each class.
        """
        import metaworld

        if split not in ("train", "test"):
            raise ValueError(f"split: expected 'train' or 'test', got {split!r}")
        if self.benchmark_name == "custom":
            raise ValueError("suite: Meta-World's vector envs exist for ML1/ML10/ML45, not custom splits")
        classes = self.test_classes if split == "test" else self.train_classes
        mbs = meta_batch_size or len(classes)
        make = metaworld.make_ml_envs_test if split == "test" else metaworld.make_ml_envs_train
        extra = {} if max_episode_steps is None else {"max_episode_steps": int(max_episode_steps)}
        return make(
            self.benchmark_name.split(":", 1)[-1] if self.benchmark_name.startswith("ML1:") else self.benchmark_name,
            seed=self.seed if seed is None else seed, meta_batch_size=mbs, vector_strategy=strategy,
            total_tasks_per_cls=total_tasks_per_cls, **extra,
        )
