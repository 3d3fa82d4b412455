"""Dynamics-and-reward networks (``DynamicsMLP`` takes ``context_dim`` for task-conditioned models) and
the ``Normalizer`` whose statistics are part of a model's saved state."""

from meta_mbrl.models.actor_critic import ActorCritic, TaskActorCritic
from meta_mbrl.models.function_model import FunctionModel
from meta_mbrl.models.known_reward import KnownRewardModel
from meta_mbrl.models.mlp import DynamicsMLP
from meta_mbrl.models.normalizer import Normalizer

__all__ = ["ActorCritic", "DynamicsMLP", "FunctionModel", "KnownRewardModel", "Normalizer", "TaskActorCritic"]
