"""Meta-training loop, the value agent's training loop, checkpoints, logging and the run-directory lock."""

from meta_mbrl.training.actor_critic import ActorCriticTrainer, ValueBatch, sample_value_batch
from meta_mbrl.training.agent_loop import train_value_agent
from meta_mbrl.training.checkpoint import (
    check_state_dict,
    learner_from_checkpoint,
    load_checkpoint,
    save_checkpoint,
    state_dict_checksum,
)
from meta_mbrl.training.logging import CSVLogger, read_log
from meta_mbrl.training.loop import meta_train
from meta_mbrl.training.model_based import model_based_meta_train
from meta_mbrl.training.rundir import RunDirLock

__all__ = [
    "meta_train", "model_based_meta_train", "save_checkpoint", "load_checkpoint", "learner_from_checkpoint",
    "check_state_dict", "state_dict_checksum", "CSVLogger", "read_log", "RunDirLock", "train_value_agent",
    "ActorCriticTrainer", "ValueBatch", "sample_value_batch",
]
