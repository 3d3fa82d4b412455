"""The MAML variants as classes: thin subclasses of :class:`MAML` whose defaults set the flag, so a
checkpoint records (and rebuilds) the variant by name while ``init_kwargs`` keeps every setting explicit."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from meta_mbrl.meta.maml import MAML

__all__ = ["FOMAML", "MetaSGD", "ANIL"]


class FOMAML(MAML):
    """First-order MAML: :class:`MAML` with ``first_order=True`` by default.

    Example:
        >>> from meta_mbrl.models import DynamicsMLP
        >>> FOMAML(DynamicsMLP(3, 1, hidden=(8,))).first_order
        True
    """

    def __init__(self, model: nn.Module, first_order: bool = True, **kwargs):
        super().__init__(model, first_order=first_order, **kwargs)


class MetaSGD(MAML):
    """Meta-SGD (Li et al. 2017): :class:`MAML` with learned per-parameter inner learning rates.

    Example:
        >>> from meta_mbrl.models import DynamicsMLP
        >>> len(MetaSGD(DynamicsMLP(3, 1, hidden=(8,))).inner_lrs)
        4
    """

    def __init__(self, model: nn.Module, meta_sgd: bool = True, **kwargs):
        super().__init__(model, meta_sgd=meta_sgd, **kwargs)


class ANIL(MAML):
    """ANIL (Raghu et al. 2020): :class:`MAML` adapting only the last layer by default.

    Example:
        >>> from meta_mbrl.models import DynamicsMLP
        >>> ANIL(DynamicsMLP(3, 1, hidden=(8,))).adapt_names
        ['layers.1.weight', 'layers.1.bias']
    """

    def __init__(self, model: nn.Module, adapt_params: Sequence[str] | None = None, **kwargs):
        if adapt_params is None:
            last = len(model.layers) - 1
            adapt_params = [f"layers.{last}.weight", f"layers.{last}.bias"]
        super().__init__(model, adapt_params=adapt_params, **kwargs)
