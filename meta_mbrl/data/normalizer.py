"""Moved: :class:`~meta_mbrl.models.normalizer.Normalizer` is part of a model's saved state and lives in
``meta_mbrl.models``; this module re-exports the same class for old imports."""

from meta_mbrl.models.normalizer import Normalizer

__all__ = ["Normalizer"]
