"""Data collection and per-task trajectory storage (``Normalizer`` is re-exported from ``meta_mbrl.models``)."""

from meta_mbrl.data.buffer import TaskBuffer
from meta_mbrl.data.demos import collect_demos
from meta_mbrl.data.policies import ColoredNoisePolicy, OUPolicy, UniformPolicy, make_policy
from meta_mbrl.data.rollout import collect
from meta_mbrl.models.normalizer import Normalizer

__all__ = ["TaskBuffer", "Normalizer", "collect", "collect_demos", "UniformPolicy", "ColoredNoisePolicy", "OUPolicy", "make_policy"]
