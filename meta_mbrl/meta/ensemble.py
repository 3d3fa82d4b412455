"""Ensembles of any learner: E members with stacked parameters, adapted in one call, one forward pass.

An :class:`Ensemble` holds ``E`` independently initialised members of one learner kind (each a
full :class:`~meta_mbrl.protocols.MetaLearner`: MAML, CaDM, ...). Their state stays in ordinary
sub-modules (checkpoints, ``.to(device)`` and optimizers work unchanged); for ``adapt`` / ``prior``
every member adapts in one call -- under one ``torch.func.vmap`` over the members' state stacked
by ``torch.func.stack_module_state``, or member by member where that measured faster (CPU) -- and
the result is an :class:`~meta_mbrl.adaptation.EnsembleAdaptedModel` with stacked parameters whose
forward pass runs all members at once. Planners roll it out with trajectory sampling across members
(PETS's TS-1 / TS-inf: ``particles`` and ``propagation`` of :func:`meta_mbrl.planning.imagine`).

Meta-training couples nothing across members: ``meta_loss`` is the mean of the members' own losses,
so the members stay independent models that start from different weights. With ``bootstrap=True``
each member sees its own resample (with replacement) of the meta-batch's tasks (PETS's bootstrap, at
the task level); it is off by default because it measured worse: on ML1 reach-v3 (quick preset, CaDM)
both members of a bootstrap-free 2-ensemble solved all 10 test goals, one of two bootstrapped members
solved none.
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from meta_mbrl.adaptation import EnsembleAdaptedModel
from meta_mbrl.checks import check_adapted, check_bool, check_int, deferred_adapted_checks
from meta_mbrl.meta.registry import LEARNER_CLASSES, build_learner, register_learner
from meta_mbrl.types import TaskBatch, Transitions

__all__ = ["Ensemble"]


class _Call(nn.Module):
    """Calls ``learner.<method>`` as ``forward`` so ``functional_call`` can swap in one member's state."""

    def __init__(self, learner: nn.Module, method: str):
        super().__init__()
        self.learner, self.method = learner, method

    def forward(self, *args, **kwargs):
        am = getattr(self.learner, self.method)(*args, **kwargs)
        return (am.params,) + (() if am.task_vector is None else (am.task_vector,))


def _fresh_copy(model: nn.Module) -> nn.Module:
    """A deep copy of ``model`` with every sub-module that has ``reset_parameters`` re-initialised."""
    new = copy.deepcopy(model)
    for m in new.modules():
        if m is not new and callable(getattr(m, "reset_parameters", None)):
            m.reset_parameters()
    return new


class Ensemble(nn.Module):
    """An ensemble of ``size`` learners of the kind ``member`` (any name of ``LEARNER_NAMES``).

    Args:
        model: the network of member 0; the other members get fresh copies (same architecture and
            normalizers, re-initialised weights).
        member: the members' learner name (``maml``, ``cadm``, ...; see ``meta_mbrl.meta.LEARNER_NAMES``).
        size: the number of members ``E`` (>= 1).
        bootstrap: train each member on its own resample (with replacement) of the meta-batch's tasks
            (off by default, see the module docstring).
        member_kwargs: the members' own learner arguments (``inner_lr``, ``context_dim`` is the model's).
        adapt_mode: how ``adapt`` runs the members: ``"vmap"`` (one ``torch.func.vmap`` over stacked
            state), ``"loop"`` (each member's ``adapt``, results stacked), or ``"auto"``: loop on CPU,
            where it measured faster (``benchmarks/bench_ensemble.py``: vmap's per-op dispatch costs
            more than it saves at these sizes), vmap elsewhere. ``FineTune`` (Adam, no batching rules)
            always loops. Either way the result is the same stacked model.

    ``adapt(context, **opts)`` passes ``opts`` to every member's ``adapt``.

    Example:
        >>> import torch
        >>> from meta_mbrl.models import DynamicsMLP
        >>> from meta_mbrl.types import Transitions
        >>> ens = Ensemble(DynamicsMLP(3, 1, hidden=(16,)), member="maml", size=4, member_kwargs={"inner_lr": 0.01})
        >>> ctx = Transitions(torch.randn(8, 3), torch.randn(8, 1), torch.randn(8), torch.randn(8, 3))
        >>> adapted = ens.adapt(ctx)
        >>> adapted.ensemble_size, adapted.predict_members(torch.zeros(2, 3), torch.zeros(2, 1)).next_obs.shape
        (4, torch.Size([4, 2, 3]))
    """

    def __init__(self, model: nn.Module, member: str = "maml", size: int = 5, bootstrap: bool = False,
                 member_kwargs: dict | None = None, adapt_mode: str = "auto"):
        super().__init__()
        if not isinstance(member, str) or member not in LEARNER_CLASSES:
            raise ValueError(f"member: expected one of {'|'.join(LEARNER_CLASSES)}, got {member!r}")
        size = check_int("size", size, 1)
        self.member, self.size, self.bootstrap = member, size, check_bool("bootstrap", bootstrap)
        kwargs = dict(member_kwargs or {})
        self.members = nn.ModuleList(
            build_learner(member, model if i == 0 else _fresh_copy(model), **kwargs) for i in range(self.size)
        )
        self.member_kwargs = self.members[0].init_kwargs() if hasattr(self.members[0], "init_kwargs") else kwargs
        if not isinstance(adapt_mode, str) or adapt_mode not in ("auto", "vmap", "loop"):
            raise ValueError(f"adapt_mode: expected one of auto|vmap|loop, got {adapt_mode!r}")
        self.adapt_mode = adapt_mode

    @property
    def ADAPT_OPTIONS(self) -> tuple[str, ...]:  # noqa: N802 -- the learners' class attribute, per instance here
        """The keyword options of :meth:`adapt`: the members' (``LEARNER_CLASSES[member].ADAPT_OPTIONS``)."""
        return tuple(getattr(self.members[0], "ADAPT_OPTIONS", ()))

    @property
    def model(self) -> nn.Module:
        """Member 0's network: the architecture, dims, device and normalizers all members share."""
        return self.members[0].model

    def init_kwargs(self) -> dict:
        """Constructor arguments (without the model), JSON-serializable."""
        return dict(member=self.member, size=self.size, bootstrap=self.bootstrap, member_kwargs=self.member_kwargs,
                    adapt_mode=self.adapt_mode)

    @torch.no_grad()
    def fit_normalizers(self, tr: Transitions) -> None:
        """Fits every member's normalizers on the training transitions (same data, same statistics)."""
        for m in self.members:
            m.model.fit_normalizers(tr)

    # ------------------------------------------------------------------ meta-training
    def meta_loss(self, batch: TaskBatch) -> tuple[torch.Tensor, dict[str, float]]:
        """Mean of the members' meta-losses (each on its own resample of the batch's tasks with ``bootstrap``).

        Returns:
            ``(loss, info)``; info holds the members' mean of every info key of one member.
        """
        t = batch.support.obs.shape[0]
        losses, infos = [], []
        for m in self.members:
            if self.bootstrap and self.size > 1:
                idx = torch.randint(t, (t,), device=batch.support.obs.device)
                b = TaskBatch(batch.support.index(idx), batch.query.index(idx))
            else:
                b = batch
            loss, info = m.meta_loss(b)
            losses.append(loss)
            infos.append(info)
        info = {k: sum(i[k] for i in infos) / self.size for k in infos[0]}
        return torch.stack(losses).mean(), info

    # ------------------------------------------------------------------ adaptation
    def _stacked(self, num_tasks: int | None, method: str, *args, **kwargs) -> EnsembleAdaptedModel:
        mode = self.adapt_mode
        if mode == "auto":
            mode = "loop" if next(self.parameters()).device.type == "cpu" else "vmap"
        # FineTune (Adam) has no batching rules; an explicit generator is one stream shared by the members,
        # which vmap cannot split: both run member by member
        if mode == "loop" or self.member == "finetune" or kwargs.get("generator") is not None:
            outs = [getattr(m, method)(*args, **kwargs) for m in self.members]
            params = {k: torch.stack([o.params[k] for o in outs]) for k in outs[0].params}
            z = None if outs[0].task_vector is None else torch.stack([o.task_vector for o in outs])
            return EnsembleAdaptedModel(self.model, params, num_tasks, task_vector=z)
        params, buffers = stack_module_state(list(self.members))
        call = _Call(self.members[0], method)
        state = ({f"learner.{k}": v.detach() for k, v in params.items()}, {f"learner.{k}": v for k, v in buffers.items()})

        def one(p, b):
            return functional_call(call, (p, b), args, kwargs)

        with torch.no_grad(), deferred_adapted_checks():  # no per-member bool() under vmap: checked stacked, below
            out = vmap(one, randomness="different")(*state)
        z = out[1] if len(out) == 2 else None
        if method == "adapt":
            check_adapted("context", args[0], self.model, {**out[0], "z": z})
        return EnsembleAdaptedModel(self.model, out[0], num_tasks, task_vector=z)

    def prior(self, num_tasks: int | None = None) -> EnsembleAdaptedModel:
        """Every member's unadapted prior, stacked (``num_tasks`` copies of each if given)."""
        return self._stacked(num_tasks, "prior", num_tasks)

    def adapt(self, context: Transitions, **opts) -> EnsembleAdaptedModel:
        """Adapts every member to the task(s) of ``context`` in one call (``opts``: the member's adapt options).

        Args:
            context: transitions ``(K, ·)`` from one task or ``(T, K, ·)`` from a batch of tasks.
            **opts: passed to each member's ``adapt`` in either mode (e.g. ``steps``, ``lr``; see
                :attr:`ADAPT_OPTIONS`); a member rejects a bad one by name.

        Returns:
            An :class:`~meta_mbrl.adaptation.EnsembleAdaptedModel` of ``E`` members; no member is modified.

        Raises:
            ValueError: as the members' ``adapt`` (a bad option or context, non-finite adapted members).
        """
        if not isinstance(context, Transitions) or not isinstance(context.obs, torch.Tensor):
            raise ValueError(f"context: expected a Transitions of tensors, got {type(context).__name__}")
        num_tasks = context.obs.shape[0] if context.obs.dim() == 3 else None
        return self._stacked(num_tasks, "adapt", context, **opts)

    def extra_repr(self) -> str:
        return f"member={self.member!r}, size={self.size}, bootstrap={self.bootstrap}, adapt_mode={self.adapt_mode!r}"



register_learner("ensemble", Ensemble)
