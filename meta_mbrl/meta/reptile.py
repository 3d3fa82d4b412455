"""Reptile (Nichol et al. 2018): move the prior toward the parameters SGD finds on each task.

The inner loop runs ``inner_steps`` plain SGD steps per task, batched over the tasks of a
meta-batch as task-batched parameters (a leading ``T`` dim), with the model's analytic gradient
(``loss_grad``), without any autograd graph. The outer update is expressed as a loss for the
standard ``loss.backward()`` + Adam loop of :func:`~meta_mbrl.training.meta_train`:
``loss = 0.5 * sum_p ||p - mean_T(adapted_p)||^2`` has gradient exactly ``p - mean_T(adapted_p)``,
so the optimizer follows the Reptile direction (with plain SGD of step ``eps`` it *is* Reptile).
"""

from __future__ import annotations

import torch
from torch import nn

from meta_mbrl.adaptation import AdaptedModel
from meta_mbrl.checks import MAX_LR, check_adapted, check_int, check_options, check_positive_float, check_transitions
from meta_mbrl.types import TaskBatch, Transitions

__all__ = ["Reptile"]

_INNER_DATA = ("both", "support")


def _cat(a: Transitions, b: Transitions) -> Transitions:
    """Concatenates two Transitions of batch shape ``(T, ·)`` along the sample dim."""
    return Transitions(*(torch.cat([x, y], dim=1) for x, y in zip(a, b)))


class Reptile(nn.Module):
    """Reptile meta-learning of a dynamics-and-reward prior.

    Args:
        model: a network with ``param_dict``, ``task_loss``, ``loss_grad`` and ``predict_params``
            (e.g. :class:`~meta_mbrl.models.DynamicsMLP`).
        inner_lr: inner SGD step size (also ``adapt``'s default).
        inner_steps: inner SGD steps in training and, by default, in ``adapt``.
        inner_data: what the inner loop trains on in ``meta_loss``: ``"both"`` (support and query
            of the task, Reptile's "train on the task") or ``"support"`` only.

    ``meta_loss``'s info reports ``query_loss``: the query loss after ``inner_steps`` steps on the
    *support only* (what ``adapt`` does at test time, so comparable with other learners; with
    ``inner_data="both"`` that costs one more gradient-free inner loop), and ``reptile_dist``,
    the squared distance from the prior to the mean adapted parameters.

    Example:
        >>> import torch
        >>> from meta_mbrl.models import DynamicsMLP
        >>> from meta_mbrl.types import Transitions
        >>> learner = Reptile(DynamicsMLP(3, 1, hidden=(16,)), inner_lr=0.05, inner_steps=3)
        >>> ctx = Transitions(torch.randn(2, 8, 3), torch.randn(2, 8, 1), torch.randn(2, 8), torch.randn(2, 8, 3))
        >>> learner.adapt(ctx).predict(torch.zeros(2, 5, 3), torch.zeros(2, 5, 1)).reward.shape
        torch.Size([2, 5])
    """

    ADAPT_OPTIONS: tuple[str, ...] = ("steps", "lr")
    """The keyword options of :meth:`adapt` (``sample`` / ``generator`` are rejected by name)."""

    def __init__(self, model: nn.Module, inner_lr: float = 0.02, inner_steps: int = 5, inner_data: str = "both"):
        super().__init__()
        inner_steps = check_int("inner_steps", inner_steps, 1)
        inner_lr = check_positive_float("inner_lr", inner_lr, max=MAX_LR)
        if inner_data not in _INNER_DATA:
            raise ValueError(f"inner_data: expected one of {_INNER_DATA}, got {inner_data!r}")
        self.model = model
        self.inner_lr, self.inner_steps, self.inner_data = float(inner_lr), int(inner_steps), inner_data

    def init_kwargs(self) -> dict:
        """Constructor arguments (without the model), JSON-serializable."""
        return dict(inner_lr=self.inner_lr, inner_steps=self.inner_steps, inner_data=self.inner_data)

    def _sgd(self, params: dict[str, torch.Tensor], tr: Transitions, steps: int, lr: float) -> dict[str, torch.Tensor]:
        for _ in range(steps):
            _, g = self.model.loss_grad(params, tr)
            params = {k: torch.add(v, g[k], alpha=-lr) for k, v in params.items()}
        return params

    def meta_loss(self, batch: TaskBatch) -> tuple[torch.Tensor, dict[str, float]]:
        """Half the squared distance from the prior to the mean of the task-adapted parameters.

        Args:
            batch: support of batch shape ``(T, M)`` and query of batch shape ``(T, K)``.

        Returns:
            ``(loss, info)``; the gradient of ``loss`` on each prior parameter is
            ``prior - mean_T(adapted)``. info: ``query_loss``, ``query_loss_pre``,
            ``support_loss_pre``, ``reptile_dist`` (see the class docstring).
        """
        prior = self.model.param_dict()
        support, query = batch
        t = support.obs.shape[0]
        with torch.no_grad():
            expanded = {k: v.detach().expand(t, *v.shape) for k, v in prior.items()}
            on_support = self._sgd(expanded, support, self.inner_steps, self.inner_lr)
            adapted = on_support if self.inner_data == "support" else self._sgd(
                expanded, _cat(support, query), self.inner_steps, self.inner_lr)
            target = {k: v.mean(0) for k, v in adapted.items()}
            info = {
                "query_loss": float(self.model.task_loss(on_support, query).mean()),
                "query_loss_pre": float(self.model.task_loss(prior, query).mean()),
                "support_loss_pre": float(self.model.task_loss(prior, support).mean()),
            }
        loss = 0.5 * sum((p - target[k]).pow(2).sum() for k, p in prior.items())
        return loss, {**info, "reptile_dist": float(loss.detach()) * 2}

    def prior(self, num_tasks: int | None = None) -> AdaptedModel:
        """The unadapted prior as an AdaptedModel (a batch of ``num_tasks`` copies, no memory copy)."""
        return AdaptedModel.from_prior(self.model, num_tasks)

    @torch.no_grad()
    def adapt(self, context: Transitions, steps: int | None = None, lr: float | None = None, **opts) -> AdaptedModel:
        """``steps`` SGD steps from the prior on one task (context ``(K, ·)``) or a batch (``(T, K, ·)``).

        Args:
            context: transitions from the new task(s).
            steps: SGD steps, an integer ``>= 0`` (default: ``inner_steps``).
            lr: step size in ``(0, MAX_LR]`` (default: ``inner_lr``).
            **opts: nothing else; ``sample`` / ``generator`` are accepted only as ``None``.

        Returns:
            An :class:`AdaptedModel`; the prior is not modified.

        Raises:
            ValueError: naming the argument: a bad option, a bad context, or ``context`` when the
                steps produce non-finite parameters.
        """
        why = "reptile adapts by deterministic SGD steps and draws no sample of a posterior"
        check_options("reptile", opts, self.ADAPT_OPTIONS, {"sample": why, "generator": why})
        steps = self.inner_steps if steps is None else check_int("steps", steps, 0)
        lr = self.inner_lr if lr is None else check_positive_float("lr", lr, max=MAX_LR)
        ref = next(self.model.parameters())
        check_transitions("context", context, obs_dim=self.model.obs_dim, act_dim=self.model.act_dim,
                          dtype=ref.dtype, device=ref.device, min_dims=1, max_dims=2)
        num_tasks = context.obs.shape[0] if context.obs.dim() == 3 else None
        params = self._sgd(self.prior(num_tasks).params, context, steps, lr)
        if steps:
            check_adapted("context", context, self.model, params, hint=f" ({steps} SGD step(s) of size {lr:g})")
        return AdaptedModel(self.model, params, num_tasks)
