"""``make_learner``: any registered learner, or an ensemble of it, on a fresh network."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from meta_mbrl.meta.ensemble import Ensemble
from meta_mbrl.meta.registry import CONDITIONED, MODEL_DEFAULTS, _check_name, build_learner
from meta_mbrl.models.mlp import DynamicsMLP

__all__ = ["make_learner"]


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
        model_kwargs: more DynamicsMLP arguments (``activation``, ``gaussian``, ``reward_weight``, ``skip``);
            a learner's defaults (:data:`~meta_mbrl.meta.registry.MODEL_DEFAULTS`: ``alpaca`` has ``skip=True``)
            apply where these do not say otherwise.
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
    mk = {**MODEL_DEFAULTS.get(name, {}), **(model_kwargs or {})}
    if name in CONDITIONED:
        key, default = CONDITIONED[name]
        mk["context_dim"] = int(learner_kwargs.pop(key, default))
    with torch.random.fork_rng(devices=[], enabled=seed is not None):
        if seed is not None:
            torch.manual_seed(seed)
        model = DynamicsMLP(obs_dim, act_dim, hidden=hidden, **mk)
        if ensemble > 1:
            learner = Ensemble(model, member=name, size=ensemble, member_kwargs=learner_kwargs)
        else:
            learner = build_learner(name, model, **learner_kwargs)
    return learner.to(device) if device is not None else learner
