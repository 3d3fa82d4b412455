"""Meta-World v3 meta-learning suites (ML1, ML10, ML45, custom splits); goals hidden."""

from __future__ import annotations

import functools
import weakref
from collections.abc import Sequence

import gymnasium as gym
import numpy as np

from task_suites.base import BaseSuite, Task
from task_suites.registration import METAWORLD_ID

__all__ = ["MetaWorldSuite", "make_task_env"]

# live suites by (name, seed), so gym.make("task_suites/MetaWorld-v0", ...) reuses one the caller built
_LIVE: weakref.WeakValueDictionary[tuple[str, int], MetaWorldSuite] = weakref.WeakValueDictionary()


@functools.lru_cache(maxsize=2)
def _build_suite(name: str, seed: int) -> BaseSuite:
    from task_suites import make

    return make(name, seed=seed)


def make_task_env(task_id: str, suite_seed: int = 0, render_mode: str | None = None) -> gym.Env:
    """Entry point of ``task_suites/MetaWorld-v0``: the raw Meta-World env of one suite task (goal hidden).

    ``gym.make`` adds the 500-step ``TimeLimit``. The suite is the prefix of ``task_id`` (``"ml10"``,
    ``"ml45"``, ``"ml1:<env>"``, ``"custom:<train>|<test>"``); a live suite of that name and seed is
    reused, else one is built (and the last two built are cached).

    Args:
        task_id: a suite task's id, e.g. ``"ml10/test/door-close-v3/03"``.
        suite_seed: seed of the suite's goals (``task_suites.make(name, seed=suite_seed)``).
        render_mode: passed to the Meta-World env (``"rgb_array"`` renders offscreen).

    Example:
        >>> import gymnasium as gym
        >>> env = gym.make("task_suites/MetaWorld-v0", task_id="ml10/test/door-close-v3/03")  # doctest: +SKIP
        >>> env.reset(seed=0)[0].shape  # doctest: +SKIP
        (39,)
    """
    parts = task_id.rsplit("/", 3) if isinstance(task_id, str) else []
    if len(parts) != 4 or parts[1] not in ("train", "test") or parts[0] == "point-mass":
        raise ValueError(f"task_id: expected a Meta-World suite task id '<suite>/<split>/<class>/<index>' "
                         f"such as 'ml10/test/door-close-v3/03', got {task_id!r}")
    if isinstance(suite_seed, bool) or not isinstance(suite_seed, int):
        raise ValueError(f"suite_seed: expected an int, got {suite_seed!r}")
    suite = _LIVE.get((parts[0], suite_seed))
    if suite is None:
        try:
            suite = _build_suite(parts[0], suite_seed)
        except ValueError as e:
            raise ValueError(f"task_id: {task_id!r} names no Meta-World suite ({parts[0]!r}): {e}") from e
    return suite._raw_env(suite.task(task_id), render_mode)


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
    # Meta-World v3 observations: hand xyz (0:3), gripper (3), object 1 xyz (4:7) + quaternion (7:11),
    # object 2 xyz (11:14) + quaternion (14:18), the previous frame's 18 (18:36), the goal (36:39, hidden)
    object_slices = ((4, 7), (11, 14))
    subgoal_dims = (0, 1, 2)  # the gripper's position
    subgoal_scale = 0.15  # metres

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
        _LIVE[(self.name, self.seed)] = self
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

    def _raw_env(self, task: Task, render_mode: str | None = None) -> gym.Env:
        if not isinstance(task, Task) or task.payload is None or task.name not in self._classes:
            raise ValueError(f"task: expected a task of suite {self.name!r}, got {task!r}")
        env = self._classes[task.name](**({} if render_mode is None else {"render_mode": render_mode}))
        env.set_task(task.payload)
        return env

    def make_env(self, task: Task, seed: int | None = None) -> gym.Env:
        """``gym.make("task_suites/MetaWorld-v0", task_id=task.id, suite_seed=self.seed)``: 500-step episodes, goal hidden.

        Args:
            task: a task of this suite.
            seed: seeds the Meta-World env (its ``reset`` ignores a seed) and its action space.
        """
        if not isinstance(task, Task) or task.payload is None or task.name not in self._classes:
            raise ValueError(f"task: expected a task of suite {self.name!r}, got {task!r}")
        _LIVE[(self.name, self.seed)] = self  # also in a worker process that unpickled this suite
        # Gymnasium's passive checker only warns that some of Meta-World's observation bounds are equal
        env = gym.make(METAWORLD_ID, task_id=task.id, suite_seed=self.seed, disable_env_checker=True)
        if seed is not None:
            env.unwrapped.seed(seed)
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
