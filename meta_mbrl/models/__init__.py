"""Dynamics-and-reward networks."""

from meta_mbrl.models.function_model import FunctionModel
from meta_mbrl.models.mlp import DynamicsMLP

__all__ = ["DynamicsMLP", "FunctionModel"]
