"""Dynamics-and-reward networks (``DynamicsMLP`` takes ``context_dim`` for task-conditioned models)."""

from meta_mbrl.models.function_model import FunctionModel
from meta_mbrl.models.mlp import DynamicsMLP

__all__ = ["DynamicsMLP", "FunctionModel"]
