"""Task suites: ``make(name)`` returns a suite of train and test tasks (see DESIGN.md, TaskSuite).

Names:
    ``"ml10"``, ``"ml45"``, ``"ml1:<env-name>"`` (e.g. ``"ml1:reach-v3"``): Meta-World v3, goals hidden.
    ``"custom:<train,...>|<test,...>"``: a custom ML split over any Meta-World v3 classes.
    ``"point-mass"``: the fast suite for tests and tutorials.

Example:
    >>> import task_suites
    >>> suite = task_suites.make("point-mass", seed=0)
    >>> len(suite.train_tasks), len(suite.test_tasks)
    (40, 10)
"""

from __future__ import annotations

from task_suites.base import BaseSuite, Task
from task_suites.point_mass import PointMassSuite

__all__ = ["make", "Task", "BaseSuite", "PointMassSuite", "NAMES"]

NAMES = ("ml10", "ml45", "ml1:<env-name>", "custom:<train,...>|<test,...>", "point-mass")


def make(name: str, seed: int = 0, **kwargs) -> BaseSuite:
    """Builds the suite called ``name`` (see module docstring) with task seed ``seed``."""
    if not isinstance(name, str):
        raise ValueError(f"name: expected a suite name string, got {type(name).__name__}")
    key = name.strip()
    low = key.lower()
    if low == "point-mass":
        return PointMassSuite(seed=seed, **kwargs)
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
