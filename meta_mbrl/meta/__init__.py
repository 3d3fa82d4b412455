"""Meta-learners: each implements ``meta_loss(TaskBatch)``, ``adapt(context)`` and ``prior(num_tasks)``.

Build any of them by name with :func:`make_learner` (names in :data:`LEARNER_NAMES`).
"""

from meta_mbrl.meta.context import PEARL, CaDM
from meta_mbrl.meta.ensemble import Ensemble
from meta_mbrl.meta.maml import MAML
from meta_mbrl.meta.multitask import FineTune, MultiTask
from meta_mbrl.meta.registry import ANIL, FOMAML, LEARNER_CLASSES, LEARNER_NAMES, MetaSGD, build_learner, make_learner
from meta_mbrl.meta.reptile import Reptile

__all__ = [
    "MAML", "FOMAML", "MetaSGD", "ANIL", "Reptile", "CaDM", "PEARL", "MultiTask", "FineTune", "Ensemble",
    "LEARNER_CLASSES", "LEARNER_NAMES", "build_learner", "make_learner",
]
