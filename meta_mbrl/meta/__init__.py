"""Meta-learners: each implements ``meta_loss(TaskBatch)`` and ``adapt(context)``."""

from meta_mbrl.meta.maml import MAML

__all__ = ["MAML"]
