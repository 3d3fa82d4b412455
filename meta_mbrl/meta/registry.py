"""The one learner registry: built-in learners by name, and the learners a user registers.

Names: ``maml``, ``fomaml``, ``metasgd``, ``anil`` (MAML with flags), ``reptile``, ``cadm``,
``pearl``, ``multitask``, ``finetune``, ``alpaca``; ``ensemble`` (registered by :mod:`meta_mbrl.meta.ensemble`).
Checkpoints record a learner by its registered name and rebuild it from here.

Imports go one way: ``ensemble`` and ``factory`` import this module, never the reverse.
"""

from __future__ import annotations

from torch import nn

from meta_mbrl.meta.alpaca import ALPaCA
from meta_mbrl.meta.context import PEARL, CaDM
from meta_mbrl.meta.maml import MAML
from meta_mbrl.meta.multitask import FineTune, MultiTask
from meta_mbrl.meta.reptile import Reptile
from meta_mbrl.meta.variants import ANIL, FOMAML, MetaSGD

__all__ = ["LEARNER_CLASSES", "LEARNER_NAMES", "LEARNERS", "CONDITIONED", "MODEL_DEFAULTS", "build_learner", "register_learner",
           "learner_name"]

LEARNER_CLASSES: dict[str, type] = {
    "maml": MAML, "fomaml": FOMAML, "metasgd": MetaSGD, "anil": ANIL, "reptile": Reptile,
    "cadm": CaDM, "pearl": PEARL, "multitask": MultiTask, "finetune": FineTune, "alpaca": ALPaCA,
}
LEARNER_NAMES: tuple[str, ...] = tuple(LEARNER_CLASSES)
#: learners whose network is conditioned on a task vector, with the kwarg naming its size and its default
CONDITIONED: dict[str, tuple[str, int]] = {"cadm": ("context_dim", 10), "pearl": ("context_dim", 10),
                                           "multitask": ("embed_dim", 8)}


#: network options a learner is built with by default (``make_learner``; ``model_kwargs`` may override them)
MODEL_DEFAULTS: dict[str, dict] = {"alpaca": {"skip": True}}


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


#: every learner a checkpoint can name: the built-ins, ``ensemble``, and those added by :func:`register_learner`
LEARNERS: dict[str, type] = dict(LEARNER_CLASSES)


def register_learner(name: str, cls: type) -> None:
    """Makes ``cls`` buildable and rebuildable from checkpoints under ``name``.

    Example:
        >>> class MyMAML(MAML): pass
        >>> register_learner("my-maml", MyMAML)
        >>> learner_name(MyMAML(__import__("meta_mbrl").DynamicsMLP(3, 1, hidden=(8,))))
        'my-maml'
        >>> del LEARNERS["my-maml"]
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"name: expected a non-empty string, got {name!r}")
    if not isinstance(cls, type):
        raise ValueError(f"cls: expected a class, got {type(cls).__name__}")
    LEARNERS[name] = cls


def learner_name(learner) -> str:
    """The registered name of ``learner``'s class (exact class match)."""
    for name, cls in LEARNERS.items():
        if type(learner) is cls:
            return name
    raise ValueError(f"learner: {type(learner).__name__} is not registered; call register_learner first")

