"""Multi-task priors: a task-embedding model (CAVIA-style) and the fine-tuning transfer baseline.

- :class:`MultiTask`: one shared network conditioned on a task embedding ``z``. Meta-batches carry
  no task ids, so instead of a lookup table (``num_train_tasks x embed_dim``) the embedding of each
  task is *fitted*: it starts at zeros and takes a few gradient steps on the support with the network
  frozen (CAVIA, Zintgraf et al. 2019); the network is trained on the query with the fitted
  embedding. Adaptation fits a fresh embedding the same way.
- :class:`FineTune`: no meta-learning. The prior is one model trained on the pooled data of all
  tasks; adaptation fine-tunes all its weights on the context with Adam, on copies.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.func import grad

from meta_mbrl.adaptation import AdaptedModel
from meta_mbrl.checks import (
    MAX_LR,
    check_adapted,
    check_bool,
    check_int,
    check_options,
    check_positive_float,
    check_transitions,
)
from meta_mbrl.types import TaskBatch, Transitions

__all__ = ["MultiTask", "FineTune"]


def _check_context(model, context: Transitions) -> int | None:
    """Validates ``context`` against ``model`` and returns ``T`` (or ``None`` for one task)."""
    ref = next(iter(model.param_dict().values()))
    check_transitions("context", context, obs_dim=model.obs_dim, act_dim=model.act_dim,
                      dtype=ref.dtype, device=ref.device, min_dims=1, max_dims=2)
    return context.obs.shape[0] if context.obs.dim() == 3 else None


def _check_options(name: str, opts: dict, accepted: tuple[str, ...]) -> None:
    """``adapt``'s extra options: none besides its own ``accepted`` (named in the message); PEARL's only as ``None``."""
    why = f"{name} adapts by deterministic gradient steps and draws no sample of a posterior"
    check_options(name, opts, accepted, {"sample": why, "generator": why})


class MultiTask(nn.Module):
    """A multi-task prior with a per-task embedding fitted by gradient steps (CAVIA-style).

    ``z`` starts at zeros (so :meth:`prior` is the network at ``z = 0``) and takes ``inner_steps``
    gradient steps of size ``inner_lr`` on the support loss, the network frozen; ``meta_loss`` is
    the query loss at the fitted ``z``. With ``first_order=False`` the outer gradient also flows
    through the inner steps (second order, as in CAVIA).

    Args:
        model: a conditioned network (``DynamicsMLP(..., context_dim=embed_dim)``).
        inner_lr: step size of the embedding updates (CAVIA uses large ones, e.g. 1.0).
        inner_steps: embedding updates in training and, by default, in ``adapt``.
        first_order: drop the gradient through the inner steps.

    Example:
        >>> import torch
        >>> from meta_mbrl.models import DynamicsMLP
        >>> from meta_mbrl.types import Transitions
        >>> learner = MultiTask(DynamicsMLP(3, 1, hidden=(16,), context_dim=4))
        >>> ctx = Transitions(torch.randn(8, 3), torch.randn(8, 1), torch.randn(8), torch.randn(8, 3))
        >>> learner.adapt(ctx).task_vector.shape
        torch.Size([4])
    """

    ADAPT_OPTIONS: tuple[str, ...] = ("steps", "lr")
    """The keyword options of :meth:`adapt` (``sample`` / ``generator`` are rejected by name)."""

    def __init__(self, model: nn.Module, inner_lr: float = 1.0, inner_steps: int = 2, first_order: bool = True):
        super().__init__()
        zdim = int(getattr(model, "context_dim", 0))
        if zdim < 1:
            raise ValueError(
                f"model: expected a network conditioned on a task embedding (context_dim > 0), got context_dim={zdim}; "
                "build it with DynamicsMLP(..., context_dim=embed_dim) or use meta_mbrl.meta.make_learner"
            )
        inner_lr = check_positive_float("inner_lr", inner_lr, max=MAX_LR)
        inner_steps = check_int("inner_steps", inner_steps, 0)
        self.model, self.embed_dim = model, zdim
        self.inner_lr, self.inner_steps, self.first_order = inner_lr, inner_steps, check_bool("first_order", first_order)

    def init_kwargs(self) -> dict:
        """Constructor arguments (without the model), JSON-serializable."""
        return dict(inner_lr=self.inner_lr, inner_steps=self.inner_steps, first_order=self.first_order)

    def fit_embedding(self, params: dict[str, torch.Tensor], tr: Transitions, steps: int, lr: float,
                      create_graph: bool = False) -> torch.Tensor:
        """Fits ``z`` from zeros by ``steps`` gradient steps on ``tr`` with ``params`` frozen.

        The gradient is the model's analytic ``z_grad`` when it has one, else ``torch.func.grad``;
        with ``create_graph`` the steps stay differentiable (second-order outer gradient).

        Shapes:
            ``tr`` of batch shape ``(K,)`` -> ``(Z,)``; ``(T, K)`` -> ``(T, Z)``.
        """
        z = tr.obs.new_zeros(*tr.obs.shape[:-2], self.embed_dim)
        analytic = callable(getattr(self.model, "z_grad", None))

        def loss(z: torch.Tensor) -> torch.Tensor:
            return self.model.task_loss(params, tr, z).sum()

        for _ in range(steps):
            with torch.set_grad_enabled(create_graph and torch.is_grad_enabled()):
                g = self.model.z_grad(params, tr, z)[1] if analytic else grad(loss)(z)
            z = z - lr * (g if create_graph else g.detach())
        return z

    def meta_loss(self, batch: TaskBatch) -> tuple[torch.Tensor, dict[str, float]]:
        """Query loss with each task's embedding fitted on its support.

        Args:
            batch: support of batch shape ``(T, M)`` and query of batch shape ``(T, K)``.

        Returns:
            ``(loss, info)``; info: ``query_loss``, ``query_loss_pre`` / ``support_loss_pre`` (``z = 0``).
        """
        params, (support, query) = self.model.param_dict(), batch
        z = self.fit_embedding(params, support, self.inner_steps, self.inner_lr, create_graph=not self.first_order)
        loss = self.model.task_loss(params, query, z).mean()
        with torch.no_grad():
            z0 = torch.zeros_like(z)
            info = {"query_loss": float(loss.detach()), "query_loss_pre": float(self.model.task_loss(params, query, z0).mean()),
                    "support_loss_pre": float(self.model.task_loss(params, support, z0).mean())}
        return loss, info

    def prior(self, num_tasks: int | None = None) -> AdaptedModel:
        """The network at ``z = 0`` (the embedding's starting point); ``num_tasks`` copies if given."""
        params = {k: v.detach() for k, v in self.model.param_dict().items()}
        ref = next(iter(params.values()))
        shape = (self.embed_dim,) if num_tasks is None else (int(num_tasks), self.embed_dim)
        return AdaptedModel(self.model, params, num_tasks, task_vector=torch.zeros(shape, dtype=ref.dtype, device=ref.device))

    @torch.no_grad()
    def adapt(self, context: Transitions, steps: int | None = None, lr: float | None = None, **opts) -> AdaptedModel:
        """Fits a fresh embedding for one task (context ``(K, ·)``) or a batch (``(T, K, ·)``).

        Args:
            context: transitions from the new task(s).
            steps: embedding updates, an integer ``>= 0`` (default: ``inner_steps``).
            lr: their step size in ``(0, MAX_LR]`` (default: ``inner_lr``).
            **opts: nothing else; ``sample`` / ``generator`` are accepted only as ``None``.

        Returns:
            An :class:`AdaptedModel` with the prior's parameters and the fitted ``z``.

        Raises:
            ValueError: naming the argument: a bad option, a bad context, or ``context`` when the
                fitted embedding is not finite.
        """
        _check_options("multitask", opts, self.ADAPT_OPTIONS)
        steps = self.inner_steps if steps is None else check_int("steps", steps, 0)
        lr = self.inner_lr if lr is None else check_positive_float("lr", lr, max=MAX_LR)
        num_tasks = _check_context(self.model, context)
        params = {k: v.detach() for k, v in self.model.param_dict().items()}
        z = self.fit_embedding(params, context, steps, lr)
        if steps:
            check_adapted("context", context, self.model, {"z": z}, what="task vector",
                          hint=f" ({steps} embedding step(s) of size {lr:g})")
        return AdaptedModel(self.model, params, num_tasks, task_vector=z)


class FineTune(nn.Module):
    """Transfer baseline: a prior trained on pooled multi-task data, fine-tuned per task with Adam.

    ``meta_loss`` is plain regression on the support and query of all tasks of the batch (no inner
    loop), so its ``query_loss`` equals ``query_loss_pre`` (the prior's, logged for comparability).
    ``adapt`` fine-tunes *copies* of all weights on the context (full batch, analytic gradients, one
    independent Adam per task when batched); the prior is never touched.

    Args:
        model: a network with ``param_dict``, ``task_loss``, ``loss_grad`` and ``predict_params``.
        adapt_steps: Adam steps in ``adapt`` (default of its ``steps``).
        adapt_lr: Adam learning rate in ``adapt`` (default of its ``lr``).

    Example:
        >>> import torch
        >>> from meta_mbrl.models import DynamicsMLP
        >>> from meta_mbrl.types import Transitions
        >>> learner = FineTune(DynamicsMLP(3, 1, hidden=(16,)))
        >>> ctx = Transitions(torch.randn(8, 3), torch.randn(8, 1), torch.randn(8), torch.randn(8, 3))
        >>> learner.adapt(ctx, steps=5).predict(torch.zeros(2, 3), torch.zeros(2, 1)).next_obs.shape
        torch.Size([2, 3])
    """

    ADAPT_OPTIONS: tuple[str, ...] = ("steps", "lr")
    """The keyword options of :meth:`adapt` (``sample`` / ``generator`` are rejected by name)."""

    def __init__(self, model: nn.Module, adapt_steps: int = 50, adapt_lr: float = 1e-3):
        super().__init__()
        adapt_steps = check_int("adapt_steps", adapt_steps, 0)
        adapt_lr = check_positive_float("adapt_lr", adapt_lr, max=MAX_LR)
        self.model, self.adapt_steps, self.adapt_lr = model, adapt_steps, adapt_lr

    def init_kwargs(self) -> dict:
        """Constructor arguments (without the model), JSON-serializable."""
        return dict(adapt_steps=self.adapt_steps, adapt_lr=self.adapt_lr)

    def meta_loss(self, batch: TaskBatch) -> tuple[torch.Tensor, dict[str, float]]:
        """Mean loss over the support and query transitions of all tasks (the prior as one model).

        Args:
            batch: support of batch shape ``(T, M)`` and query of batch shape ``(T, K)``.

        Returns:
            ``(loss, info)``; info: ``query_loss`` = ``query_loss_pre`` (the prior's), ``support_loss_pre``.
        """
        params, (support, query) = self.model.param_dict(), batch
        sup, qry = self.model.task_loss(params, support), self.model.task_loss(params, query)
        m, k = support.obs.shape[1], query.obs.shape[1]
        loss = (sup.mean() * m + qry.mean() * k) / (m + k)
        q = float(qry.detach().mean())
        return loss, {"query_loss": q, "query_loss_pre": q, "support_loss_pre": float(sup.detach().mean())}

    def prior(self, num_tasks: int | None = None) -> AdaptedModel:
        """The unadapted prior as an AdaptedModel (a batch of ``num_tasks`` copies, no memory copy)."""
        return AdaptedModel.from_prior(self.model, num_tasks)

    @torch.no_grad()
    def adapt(self, context: Transitions, steps: int | None = None, lr: float | None = None, **opts) -> AdaptedModel:
        """Fine-tunes copies of all weights with Adam on one task (``(K, ·)``) or a batch (``(T, K, ·)``).

        Args:
            context: transitions from the new task(s).
            steps: Adam steps, an integer ``>= 0`` (default: ``adapt_steps``).
            lr: Adam learning rate in ``(0, MAX_LR]`` (default: ``adapt_lr``).
            **opts: nothing else; ``sample`` / ``generator`` are accepted only as ``None``.

        Returns:
            An :class:`AdaptedModel` with the fine-tuned parameters (task-batched when ``T`` is given).

        Raises:
            ValueError: naming the argument: a bad option, a bad context, or ``context`` when
                fine-tuning produces non-finite parameters.
        """
        _check_options("finetune", opts, self.ADAPT_OPTIONS)
        steps = self.adapt_steps if steps is None else check_int("steps", steps, 0)
        lr = self.adapt_lr if lr is None else check_positive_float("lr", lr, max=MAX_LR)
        num_tasks = _check_context(self.model, context)
        params = {k: (v.detach() if num_tasks is None else v.detach().expand(num_tasks, *v.shape)).clone()
                  for k, v in self.model.param_dict().items()}
        if steps:
            opt = torch.optim.Adam(list(params.values()), lr=lr)  # on the copies: leaves that need no autograd
            for _ in range(steps):
                _, g = self.model.loss_grad(params, context)
                for k, p in params.items():
                    p.grad = g[k]
                opt.step()
            for p in params.values():
                p.grad = None
            check_adapted("context", context, self.model, params, hint=f" ({steps} Adam step(s), lr {lr:g})")
        return AdaptedModel(self.model, params, num_tasks)
