"""The learner family by name: MAML variants as classes, and ``make_learner`` to build any of them.

Names: ``maml``, ``fomaml``, ``metasgd``, ``anil`` (MAML with flags), ``reptile``, ``cadm``,
``pearl``, ``multitask``, ``finetune``. The variants are thin subclasses of :class:`MAML` whose
defaults set the flag, so a checkpoint records (and rebuilds) the variant by name while
``init_kwargs`` keeps every setting explicit.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from meta_mbrl.meta.context import PEARL, CaDM
from meta_mbrl.meta.maml import MAML
from meta_mbrl.meta.multitask import FineTune, MultiTask
from meta_mbrl.meta.reptile import Reptile
from meta_mbrl.models.mlp import DynamicsMLP

__all__ = ["FOMAML", "MetaSGD", "ANIL", "LEARNER_CLASSES", "LEARNER_NAMES", "CONDITIONED", "build_learner", "make_learner"]


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


LEARNER_CLASSES: dict[str, type] = {
    "maml": MAML, "fomaml": FOMAML, "metasgd": MetaSGD, "anil": ANIL, "reptile": Reptile,
    "cadm": CaDM, "pearl": PEARL, "multitask": MultiTask, "finetune": FineTune,
}
LEARNER_NAMES: tuple[str, ...] = tuple(LEARNER_CLASSES)
#: learners whose network is conditioned on a task vector, with the kwarg naming its size and its default
CONDITIONED: dict[str, tuple[str, int]] = {"cadm": ("context_dim", 10), "pearl": ("context_dim", 10),
                                           "multitask": ("embed_dim", 8)}


def _check_name(name: str) -> str:
    if name not in LEARNER_CLASSES:
        raise ValueError(f"name: expected one of {'|'.join(LEARNER_NAMES)}, got {name!r}")
    return name


def build_learner(name: str, model: nn.Module, **learner_kwargs) -> nn.Module:
    """The learner called ``name`` over an existing ``model`` (conditioned for cadm/pearl/multitask).

    Example:
        >>> from meta_mbrl.models import DynamicsMLP
        >>> type(build_learner("anil", DynamicsMLP(3, 1, hidden=(8,)))).__name__
        'ANIL'
    """
    return LEARNER_CLASSES[_check_name(name)](model, **learner_kwargs)


def make_learner(
    name: str,
    obs_dim: int,
    act_dim: int,
    hidden: Sequence[int] = (200, 200, 200),
    *,
    model_kwargs: dict | None = None,
    seed: int | None = None,
    device: str | torch.device | None = None,
    ensemble: int = 1,
    **learner_kwargs,
) -> nn.Module:
    """Builds the learner called ``name`` on a fresh :class:`DynamicsMLP` of the right kind.

    Args:
        name: one of :data:`LEARNER_NAMES`.
        obs_dim / act_dim: the suite's dimensions.
        hidden: the network's hidden widths.
        model_kwargs: more DynamicsMLP arguments (``activation``, ``gaussian``, ``reward_weight``).
        seed: if given, the weights are initialized under this seed (the global RNG state is restored).
        device: where the learner goes (default: CPU).
        ensemble: ``E > 1`` builds an :class:`~meta_mbrl.meta.ensemble.Ensemble` of ``E`` independently
            initialised members of this kind (stacked parameters, vmapped adapt and forward); 1: the plain learner.
        **learner_kwargs: the learner's own arguments; for ``cadm`` / ``pearl`` also ``context_dim``
            (default 10), for ``multitask`` ``embed_dim`` (default 8): the size of the task vector.

    Returns:
        The learner (an ``nn.Module`` with ``.model``).

    Example:
        >>> learner = make_learner("pearl", 4, 2, hidden=(32, 32), context_dim=5, kl_weight=0.1)
        >>> learner.model.context_dim, learner.kl_weight
        (5, 0.1)
        >>> make_learner("anil", 4, 2, hidden=(32,), ensemble=3).size
        3
    """
    _check_name(name)
    if isinstance(ensemble, bool) or not isinstance(ensemble, int) or ensemble < 1:
        raise ValueError(f"ensemble: expected an int >= 1 (the number of members), got {ensemble!r}")
    mk = dict(model_kwargs or {})
    if name in CONDITIONED:
        key, default = CONDITIONED[name]
        mk["context_dim"] = int(learner_kwargs.pop(key, default))
    with torch.random.fork_rng(devices=[], enabled=seed is not None):
        if seed is not None:
            torch.manual_seed(seed)
        model = DynamicsMLP(obs_dim, act_dim, hidden=hidden, **mk)
        if ensemble > 1:
            from meta_mbrl.meta.ensemble import Ensemble

            learner = Ensemble(model, member=name, size=ensemble, member_kwargs=learner_kwargs)
        else:
            learner = build_learner(name, model, **learner_kwargs)
    return learner.to(device) if device is not None else learner
