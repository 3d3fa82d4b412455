"""Meta-learners: each implements ``meta_loss(TaskBatch)``, ``adapt(context)`` and ``prior(num_tasks)``.

Build any of them by name with :func:`make_learner` (names in :data:`LEARNER_NAMES`); the one registry
of learners (:data:`LEARNERS`, :func:`register_learner`) is in :mod:`meta_mbrl.meta.registry`.
"""

from meta_mbrl.meta.alpaca import ALPaCA
from meta_mbrl.meta.context import PEARL, CaDM
from meta_mbrl.meta.ensemble import Ensemble
from meta_mbrl.meta.factory import make_learner
from meta_mbrl.meta.maml import MAML
from meta_mbrl.meta.multitask import FineTune, MultiTask
from meta_mbrl.meta.registry import LEARNER_CLASSES, LEARNER_NAMES, LEARNERS, build_learner, learner_name, register_learner
from meta_mbrl.meta.reptile import Reptile
from meta_mbrl.meta.variants import ANIL, FOMAML, MetaSGD

__all__ = [
    "MAML", "FOMAML", "MetaSGD", "ANIL", "Reptile", "CaDM", "PEARL", "MultiTask", "FineTune", "ALPaCA", "Ensemble",
    "LEARNER_CLASSES", "LEARNER_NAMES", "LEARNERS", "build_learner", "make_learner", "register_learner", "learner_name",
]
