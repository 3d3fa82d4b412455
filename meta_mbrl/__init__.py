"""meta_mbrl: multi-task, meta-learned model-based reinforcement learning.

Example:
    >>> import task_suites
    >>> from meta_mbrl import collect, DynamicsMLP, MAML, meta_train
    >>> suite = task_suites.make("point-mass")
    >>> buffer = collect(suite, suite.train_tasks, episodes_per_task=2, progress=False)
    >>> learner = MAML(DynamicsMLP(suite.obs_dim, suite.act_dim, hidden=(64, 64)), inner_lr=0.01)
    >>> log = meta_train(learner, buffer, steps=10, progress=False)
"""

from meta_mbrl.adaptation import AdaptedModel
from meta_mbrl.data import ColoredNoisePolicy, Normalizer, OUPolicy, TaskBuffer, UniformPolicy, collect
from meta_mbrl.meta import MAML
from meta_mbrl.models import DynamicsMLP
from meta_mbrl.training import learner_from_checkpoint, load_checkpoint, meta_train, save_checkpoint
from meta_mbrl.types import Prediction, TaskBatch, Transitions, as_tensor_transitions

__version__ = "0.1.0"

__all__ = [
    "AdaptedModel", "ColoredNoisePolicy", "DynamicsMLP", "MAML", "Normalizer", "OUPolicy", "Prediction",
    "TaskBatch", "TaskBuffer", "Transitions", "UniformPolicy", "as_tensor_transitions", "collect", "learner_from_checkpoint",
    "load_checkpoint", "meta_train", "save_checkpoint",
]
