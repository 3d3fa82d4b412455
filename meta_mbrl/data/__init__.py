"""Data collection, per-task trajectory storage and normalizers."""

from meta_mbrl.data.buffer import TaskBuffer
from meta_mbrl.data.normalizer import Normalizer
from meta_mbrl.data.policies import ColoredNoisePolicy, OUPolicy, UniformPolicy, make_policy
from meta_mbrl.data.rollout import collect

__all__ = ["TaskBuffer", "Normalizer", "collect", "UniformPolicy", "ColoredNoisePolicy", "OUPolicy", "make_policy"]
