"""ALPaCA: meta-learned features with a closed-form Bayesian linear output layer (Harrison et al. 2018).

The network's hidden layers are a meta-learned feature map ``φ(s, a)``; its output layer ``W`` (the
normalized ``[Δobs, reward]`` head) has a matrix-normal prior with mean ``W0`` (the prior network's own
output layer) and a learned precision ``Λ0`` over the ``H + 1`` features (bias included). Adapting to
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

import torch
from torch import nn

from meta_mbrl.adaptation import AdaptedModel
from meta_mbrl.checks import check_adapted, check_options, check_positive_float, check_transitions
from meta_mbrl.types import TaskBatch, Transitions

__all__ = ["ALPaCA"]

_NO_STEPS = "alpaca adapts in one forward pass and a closed-form solve (a Bayesian linear head), without gradient steps"
_NO_SAMPLE = "alpaca adapts to the posterior mean and draws no sample"


class ALPaCA(nn.Module):
    """Closed-form Bayesian last-layer adaptation of a dynamics-and-reward network.

    Args:
        model: a :class:`~meta_mbrl.models.DynamicsMLP` (unconditioned).
        prior_precision: the initial ``Λ0 = prior_precision * I`` (learned during meta-training as
            ``L Lᵀ``, ``L`` lower triangular with a positive diagonal).

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

    def __init__(self, model: nn.Module, prior_precision: float = 1.0):
        super().__init__()
        if int(getattr(model, "context_dim", 0)) != 0 or not hasattr(model, "features_params"):
            raise ValueError("model: expected an unconditioned DynamicsMLP (context_dim=0) with features_params")
        self.prior_precision = check_positive_float("prior_precision", prior_precision, max=1e6)
        self.model = model
        n = model.hidden[-1] + 1
        self.precision_diag = nn.Parameter(torch.full((n,), 0.5 * float(torch.log(torch.tensor(self.prior_precision)))))
        self.precision_tril = nn.Parameter(torch.zeros(n, n))
        self._head = f"layers.{len(model.layers) - 1}"

    def init_kwargs(self) -> dict:
        """Constructor arguments (without the model), JSON-serializable."""
        return dict(prior_precision=self.prior_precision)

    # ------------------------------------------------------------------ the closed-form head
    def precision(self) -> torch.Tensor:
        """The prior precision ``Λ0 = L Lᵀ`` over the ``H + 1`` features, ``(H+1, H+1)``."""
        low = torch.tril(self.precision_tril, -1) + torch.diag(torch.exp(self.precision_diag))
        return low @ low.T

    def _features(self, params: dict, obs: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
        h = self.model.features_params(params, obs, act)
        return torch.cat([h, torch.ones_like(h[..., :1])], -1)

    def _posterior(self, params: dict, context: Transitions) -> dict[str, torch.Tensor]:
        """Task-batched parameters with the output layer's mean rows at their posterior mean; context ``(T, K, ·)``."""
        m = self.model
        d = m.target_dim
        w, b = params[f"{self._head}.weight"], params[f"{self._head}.bias"]
        w0 = torch.cat([w[:d], b[:d, None]], -1).T                               # (H+1, D): the prior mean
        phi = self._features(params, context.obs, context.act)                    # (T, K, H+1)
        y = m.targets(context)                                                    # (T, K, D)
        lam = self.precision()
        a = phi.transpose(1, 2) @ phi + lam                                       # (T, H+1, H+1)
        rhs = phi.transpose(1, 2) @ y + (lam @ w0)                                # (T, H+1, D)
        chol, _ = torch.linalg.cholesky_ex(a)  # Λ0 is positive definite, so is a: only non-finite features fail (checked later)
        post = torch.cholesky_solve(rhs, chol).transpose(1, 2)                   # (T, D, H+1)
        t = post.shape[0]
        new_w = torch.cat([post[..., :-1], w[d:].expand(t, *w[d:].shape)], 1)
        new_b = torch.cat([post[..., -1], b[d:].expand(t, *b[d:].shape)], 1)
        out = {k: v.expand(t, *v.shape) for k, v in params.items()}
        out[f"{self._head}.weight"], out[f"{self._head}.bias"] = new_w, new_b
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
        support, query = batch
        loss = self.model.task_loss(self._posterior(prior, support), query).mean()
        with torch.no_grad():
            pre = float(self.model.task_loss(prior, query).mean())
            sup = float(self.model.task_loss(prior, support).mean())
        return loss, {"query_loss": float(loss.detach()), "query_loss_pre": pre, "support_loss_pre": sup}

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
        head = {k: params[k] for k in (f"{self._head}.weight", f"{self._head}.bias")}
        check_adapted("context", context, self.model, head, hint=" (closed-form posterior of the output layer)")
        if single:
            return AdaptedModel(self.model, {k: v[0] for k, v in params.items()}, None)
        return AdaptedModel(self.model, params, context.obs.shape[0])
