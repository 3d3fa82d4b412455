"""Meta-training loop, checkpoints and logging."""

from meta_mbrl.training.checkpoint import learner_from_checkpoint, load_checkpoint, save_checkpoint
from meta_mbrl.training.loop import meta_train
from meta_mbrl.training.model_based import model_based_meta_train

__all__ = ["meta_train", "model_based_meta_train", "save_checkpoint", "load_checkpoint", "learner_from_checkpoint"]
