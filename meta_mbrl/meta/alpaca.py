"""ALPaCA: meta-learned features with a closed-form Bayesian linear output layer (Harrison et al. 2018).

The network's hidden layers are a meta-learned feature map ``φ(s, a)``; its output layer ``W`` (the
normalized ``[Δobs, reward]`` head) has a matrix-normal prior with mean ``W0`` (the prior network's own
output layer) and a learned precision ``Λ0`` over the features: the ``H`` hidden features, the network's
normalized inputs where it has a linear skip (:class:`~meta_mbrl.models.DynamicsMLP` ``skip=True``, what
:func:`~meta_mbrl.meta.make_learner` builds for ``alpaca``: a position-controlled arm's motion is largely
linear in its inputs), and a bias. Adapting to
a context of K transitions is the posterior mean, in closed form:

    W_K = (Φᵀ Φ + Λ0)⁻¹ (Φᵀ Y + Λ0 W0)

one ``(H+1) x (H+1)`` solve per task, no gradient steps, batched over tasks. With no data it is the prior;
as K grows the data outweighs ``Λ0`` and the head tends to the least-squares fit on the task's own data, so
the error does not grow with K the way a fixed number of gradient steps (MAML) or a mean-pooled encoder
trained on one context length (CaDM) can. Meta-training backpropagates the query loss through the solve
(as R2-D2, Bertinetto et al. 2019), learning the features, ``W0`` and ``Λ0`` together; meta-training
on support windows of varying length (``meta_train(..., support_max=...)``) teaches ``Λ0`` how much to
trust few and many transitions.

A Gaussian model's log-variance rows of the output layer keep their prior values.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from meta_mbrl.adaptation import AdaptedModel
from meta_mbrl.checks import check_adapted, check_options, check_positive_float, check_transitions
from meta_mbrl.meta.maml import loss_info
from meta_mbrl.types import TaskBatch, Transitions

__all__ = ["ALPaCA"]

_NO_STEPS = "alpaca adapts in one forward pass and a closed-form solve (a Bayesian linear head), without gradient steps"
_NO_SAMPLE = "alpaca adapts to the posterior mean and draws no sample"


class ALPaCA(nn.Module):
    """Closed-form Bayesian last-layer adaptation of a dynamics-and-reward network.

    Args:
        model: a :class:`~meta_mbrl.models.DynamicsMLP` (unconditioned; with ``skip=True`` its inputs join the features).
        prior_precision: the initial ``Λ0 = prior_precision * I`` (learned during meta-training as
            ``L Lᵀ``, ``L`` lower triangular with a positive diagonal).
        half_life: 0: every context transition weighs the same (the order of the context does not matter).
            > 0: the context is in time order and a transition ``a`` steps older than the newest weighs
            ``0.5 ** (a / half_life)`` in the posterior (a locally weighted fit around the present, what makes
            "repeat the last reward" hard to beat); the half-life is learned in meta-training, from this value.

    Shapes:
        ``adapt(context (K, ·))`` or ``(T, K, ·)``; ``meta_loss(TaskBatch)`` with supports ``(T, M, ·)``.

    Example:
        >>> import torch
        >>> from meta_mbrl.models import DynamicsMLP
        >>> learner = ALPaCA(DynamicsMLP(3, 1, hidden=(16,)))
        >>> ctx = Transitions(torch.randn(8, 3), torch.randn(8, 1), torch.randn(8), torch.randn(8, 3))
        >>> learner.adapt(ctx).predict(torch.zeros(2, 3), torch.zeros(2, 1)).next_obs.shape
        torch.Size([2, 3])
        >>> learner.adapt(ctx).params["layers.0.weight"].equal(learner.model.layers[0].weight)  # features: the prior's
        True
    """

    ADAPT_OPTIONS: tuple[str, ...] = ()
    """No options: ``steps`` / ``lr`` / ``sample`` / ``generator`` are accepted only as ``None``."""

    def __init__(self, model: nn.Module, prior_precision: float = 1.0, half_life: float = 0.0):
        super().__init__()
        if int(getattr(model, "context_dim", 0)) != 0 or not hasattr(model, "features_params"):
            raise ValueError("model: expected an unconditioned DynamicsMLP (context_dim=0) with features_params")
        self.prior_precision = check_positive_float("prior_precision", prior_precision, max=1e6)
        self.half_life = 0.0 if half_life == 0 else check_positive_float("half_life", half_life, max=1e6)
        # the recency weighting's half-life is learned (log scale) when it is on
        self.log_half_life = nn.Parameter(torch.tensor(math.log(self.half_life))) if self.half_life else None
        self.model = model
        n = model.hidden[-1] + int(getattr(model, "skip_inputs", 0)) + 1
        self.precision_diag = nn.Parameter(torch.full((n,), 0.5 * math.log(self.prior_precision)))
        self.precision_tril = nn.Parameter(torch.zeros(n, n))
        self._last = f"layers.{len(model.layers) - 1}"

    def init_kwargs(self) -> dict:
        """Constructor arguments (without the model), JSON-serializable."""
        return dict(prior_precision=self.prior_precision, half_life=self.half_life)

    # ------------------------------------------------------------------ the closed-form head
    def precision(self) -> torch.Tensor:
        """The prior precision ``Λ0 = L Lᵀ`` over the ``H + 1`` features, ``(H+1, H+1)``."""
        low = torch.tril(self.precision_tril, -1) + torch.diag(torch.exp(self.precision_diag))
        return low @ low.T

    def recency(self, k: int) -> torch.Tensor:
        """Weights ``(K,)`` of the context transitions, oldest first: ``0.5 ** (age / half_life)``, the newest 1
        (all ones without recency weighting)."""
        age = torch.arange(k - 1, -1, -1, dtype=self.precision_diag.dtype, device=self.precision_diag.device)
        if self.log_half_life is None:
            return torch.ones_like(age)
        return torch.exp(-age * math.log(2.0) / torch.exp(self.log_half_life))

    def _features(self, params: dict, obs: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
        """``[φ(s, a), normalized inputs (if the model has a linear skip), 1]``: what the output layer maps linearly."""
        m = self.model
        parts = [m.features_params(params, obs, act)]
        if m.skip_inputs:
            parts.append(m._inputs(obs, act))
        return torch.cat([*parts, torch.ones_like(parts[0][..., :1])], -1)

    def _head(self, params: dict) -> list[tuple[str, torch.Tensor]]:
        """The output layer's pieces in feature order: last layer weight, skip weight, bias (as a column)."""
        m = self.model
        pieces = [(f"{self._last}.weight", params[f"{self._last}.weight"])]
        if m.skip_inputs:
            pieces.append(("skip.weight", params["skip.weight"]))
        pieces.append((f"{self._last}.bias", params[f"{self._last}.bias"][..., None]))
        return pieces

    def _posterior(self, params: dict, context: Transitions) -> dict[str, torch.Tensor]:
        """Task-batched parameters with the output layer's mean rows at their posterior mean; context ``(T, K, ·)``."""
        m = self.model
        d = m.target_dim
        pieces = self._head(params)
        w0 = torch.cat([v[:d] for _, v in pieces], -1).T                         # (F, D): the prior mean
        phi = self._features(params, context.obs, context.act)                    # (T, K, F)
        y = m.targets(context)                                                    # (T, K, D)
        lam = self.precision()
        phi_w = phi if self.log_half_life is None else phi * self.recency(phi.shape[1]).to(phi.dtype)[:, None]
        a = phi_w.transpose(1, 2) @ phi + lam                                     # (T, F, F)
        rhs = phi_w.transpose(1, 2) @ y + (lam @ w0)                              # (T, F, D)
        chol, _ = torch.linalg.cholesky_ex(a)  # Λ0 is positive definite, so is a: only non-finite features fail (checked later)
        post = torch.cholesky_solve(rhs, chol).transpose(1, 2)                   # (T, D, F)
        t = post.shape[0]
        out = {k: v.expand(t, *v.shape) for k, v in params.items()}
        start = 0
        for name, v in pieces:
            width = v.shape[-1]
            rows = torch.cat([post[..., start:start + width], v[d:].expand(t, *v[d:].shape)], 1)
            out[name] = rows[..., 0] if name.endswith("bias") else rows
            start += width
        return out

    # ------------------------------------------------------------------ meta-training
    def meta_loss(self, batch: TaskBatch) -> tuple[torch.Tensor, dict[str, float]]:
        """Mean query loss with the output layer at each task's posterior mean given its support.

        Args:
            batch: support of batch shape ``(T, M)`` and query of batch shape ``(T, K)``.

        Returns:
            ``(loss, info)`` with ``query_loss``, ``query_loss_pre`` (the prior head) and ``support_loss_pre``.
        """
        prior = self.model.param_dict()
        loss = self.model.task_loss(self._posterior(prior, batch.support), batch.query).mean()
        return loss, loss_info(self.model, prior, batch, loss)

    # ------------------------------------------------------------------ adaptation
    def prior(self, num_tasks: int | None = None) -> AdaptedModel:
        """The unadapted prior (the output layer at ``W0``) as an AdaptedModel."""
        return AdaptedModel.from_prior(self.model, num_tasks)

    @torch.no_grad()
    def adapt(self, context: Transitions, **opts) -> AdaptedModel:
        """The posterior-mean model of one task (context ``(K, ·)``) or a batch (``(T, K, ·)``).

        Args:
            context: transitions from the new task(s), K >= 1 (:meth:`prior` is the model before any data).
            **opts: none apply; the other learners' options are accepted only as ``None``.

        Returns:
            An :class:`AdaptedModel` (task-batched output layer for a batch); the prior is not modified.

        Raises:
            ValueError: naming the argument: an option, a bad context, or ``context`` when the
                posterior is not finite (values too large for the model).
        """
        check_options("alpaca", opts, self.ADAPT_OPTIONS, {"steps": _NO_STEPS, "lr": _NO_STEPS,
                                                           "sample": _NO_SAMPLE, "generator": _NO_SAMPLE})
        prior = self.model.param_dict()
        ref = next(iter(prior.values()))
        check_transitions("context", context, obs_dim=self.model.obs_dim, act_dim=self.model.act_dim,
                          dtype=ref.dtype, device=ref.device, min_dims=1, max_dims=2)
        single = context.obs.dim() == 2
        batched = context if not single else Transitions(*(x.unsqueeze(0) for x in context))
        params = self._posterior(prior, batched)
        head = {name: params[name] for name, _ in self._head(prior)}
        check_adapted("context", context, self.model, head, hint=" (closed-form posterior of the output layer)")
        if single:
            return AdaptedModel(self.model, {k: v[0] for k, v in params.items()}, None)
        return AdaptedModel(self.model, params, context.obs.shape[0])
