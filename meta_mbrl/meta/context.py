"""Context learners: adapt in one forward pass by encoding the context into a task vector ``z``.

- :class:`CaDM` (Lee et al. 2020): a deterministic, permutation-invariant context encoder (a
  per-transition MLP, a mean over the ``K`` transitions, a linear layer) and a dynamics-and-reward
  model conditioned on ``z``, trained with forward and backward prediction losses.
- :class:`PEARL` (Rakelly et al. 2019): a probabilistic encoder; each transition gives a Gaussian
  factor, combined by a product of Gaussians; training samples ``z`` (reparameterized) and adds
  a KL to the unit Gaussian prior.

Both encode the transition features ``[obs, act, reward, next_obs - obs]``, normalized with the
model's own normalizers, so the encoders see the same scales as the model. The conditioned model
is a :class:`~meta_mbrl.models.DynamicsMLP` built with ``context_dim=Z``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from meta_mbrl.adaptation import AdaptedModel
from meta_mbrl.checks import check_adapted, check_bool, check_float, check_options, check_sizes, check_transitions
from meta_mbrl.types import TaskBatch, Transitions

__all__ = ["CaDM", "PEARL"]

_ENC_ACTIVATIONS = {"relu": F.relu, "silu": F.silu, "tanh": torch.tanh}


def _mlp(layers: nn.ModuleList, x: torch.Tensor, act) -> torch.Tensor:
    """Applies ``layers`` with ``act`` after every layer (hidden features, no output head)."""
    for layer in layers:
        x = act(layer(x))
    return x


class _ContextLearner(nn.Module):
    """Shared plumbing: a conditioned model, a per-transition encoder MLP, features, prior, checks."""

    def __init__(self, model: nn.Module, encoder_hidden: Sequence[int], encoder_activation: str):
        super().__init__()
        zdim = int(getattr(model, "context_dim", 0))
        if zdim < 1:
            raise ValueError(
                f"model: expected a network conditioned on a task vector (context_dim > 0), got context_dim={zdim}; "
                "build it with DynamicsMLP(..., context_dim=Z) or use meta_mbrl.meta.make_learner"
            )
        if not isinstance(encoder_activation, str) or encoder_activation not in _ENC_ACTIVATIONS:
            raise ValueError(f"encoder_activation: expected one of {sorted(_ENC_ACTIVATIONS)}, got {encoder_activation!r}")
        hidden = list(check_sizes("encoder_hidden", encoder_hidden))
        self.model, self.context_dim = model, zdim
        self.encoder_hidden, self.encoder_activation = hidden, encoder_activation
        self._enc_act = _ENC_ACTIVATIONS[encoder_activation]
        sizes = [2 * model.obs_dim + model.act_dim + 1, *hidden]
        self.encoder = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))

    def features(self, tr: Transitions) -> torch.Tensor:
        """Normalized transition features ``[obs, act, reward, next_obs - obs]``, shape ``(..., 2O + A + 1)``."""
        m = self.model
        return torch.cat([
            m.obs_norm.normalize(tr.obs), tr.act, m.reward_norm.normalize(tr.reward.unsqueeze(-1)),
            m.delta_norm.normalize(tr.next_obs - tr.obs),
        ], dim=-1)

    def _hidden(self, tr: Transitions) -> torch.Tensor:
        """Per-transition encoder features ``(..., K, H)``."""
        return _mlp(self.encoder, self.features(tr), self._enc_act)

    def _check_context(self, context: Transitions) -> int | None:
        """Validates ``context`` (one check) and returns ``T`` or ``None``."""
        ref = next(self.model.parameters())
        check_transitions("context", context, obs_dim=self.model.obs_dim, act_dim=self.model.act_dim,
                          dtype=ref.dtype, device=ref.device, min_dims=1, max_dims=2)
        return context.obs.shape[0] if context.obs.dim() == 3 else None

    def _check_options(self, opts: dict, accepted: tuple[str, ...]) -> dict:
        """Checks ``adapt``'s keyword options: ``accepted`` ones, and ``steps`` / ``lr`` only as ``None``."""
        name = type(self).__name__.lower()
        why = f"{name} adapts in one forward pass of its encoder and takes no gradient steps"
        reasons = {"steps": why, "lr": why}
        if "sample" not in accepted:
            reasons.update(sample=f"{name}'s encoder is deterministic (no posterior to sample)",
                           generator=f"{name}'s encoder is deterministic (no posterior to sample)")
        return check_options(name, opts, accepted, reasons)

    def _params(self) -> dict[str, torch.Tensor]:
        return {k: v.detach() for k, v in self.model.named_parameters()}

    def prior(self, num_tasks: int | None = None) -> AdaptedModel:
        """The unadapted prior: the model conditioned on ``z = 0`` (see the class docstring).

        Args:
            num_tasks: ``None`` for one task, else ``T`` identical copies (``z`` of shape ``(T, Z)``).
        """
        params = self._params()
        ref = next(iter(params.values()))
        shape = (self.context_dim,) if num_tasks is None else (int(num_tasks), self.context_dim)
        return AdaptedModel(self.model, params, num_tasks, task_vector=torch.zeros(shape, dtype=ref.dtype, device=ref.device))

    def _pre_losses(self, batch: TaskBatch) -> dict[str, float]:
        """Prior (``z = 0``) losses on query and support, for logging."""
        params, (support, query) = self.model.param_dict(), batch
        z0 = torch.zeros(query.obs.shape[0], self.context_dim, dtype=query.obs.dtype, device=query.obs.device)
        with torch.no_grad():
            return {"query_loss_pre": float(self.model.task_loss(params, query, z0).mean()),
                    "support_loss_pre": float(self.model.task_loss(params, support, z0).mean())}


class CaDM(_ContextLearner):
    """Context-aware dynamics model (Lee et al. 2020): a deterministic context encoder + conditioned model.

    ``z = W mean_k(mlp(features_k)) + b``: invariant to the order of the context transitions.
    Training (``meta_loss``): the support of each task is encoded, the conditioned model predicts the
    query (forward loss), and a backward model ``(next_obs, act, z) -> obs`` is trained on the query
    with the same ``z`` (CaDM's backward prediction loss, weight ``backward_weight``); both losses
    shape the encoder. The backward model is used only in training.

    The prior (``prior()``, and the ``query_loss_pre`` logged) is the model conditioned on ``z = 0``:
    the encoding of an empty context is defined as zeros (the mean over no transitions is undefined).
    The model is never trained on ``z = 0``, so it is a weak prior unless ``prior_weight > 0`` adds
    the query loss at ``z = 0`` to training.

    Args:
        model: a conditioned network (``DynamicsMLP(..., context_dim=Z)``; CaDM uses ``Z = 10``).
        encoder_hidden: widths of the per-transition MLP (the paper's encoder: 256-128-64).
        backward_weight: weight of the backward prediction loss (0 disables it and its network).
        backward_hidden: widths of the backward model (default: the model's ``hidden``).
        encoder_activation: ``"relu"``, ``"silu"`` or ``"tanh"``.
        prior_weight: weight of the query loss at ``z = 0`` (trains the prior as a multi-task model).

    Shapes:
        ``encode(context (K, ·)) -> (Z,)``; ``encode(context (T, K, ·)) -> (T, Z)``.

    Example:
        >>> import torch
        >>> from meta_mbrl.models import DynamicsMLP
        >>> from meta_mbrl.types import Transitions
        >>> learner = CaDM(DynamicsMLP(3, 1, hidden=(16,), context_dim=4), encoder_hidden=(16,))
        >>> ctx = Transitions(torch.randn(8, 3), torch.randn(8, 1), torch.randn(8), torch.randn(8, 3))
        >>> learner.adapt(ctx).task_vector.shape
        torch.Size([4])
        >>> learner.adapt(ctx, steps=3)
        Traceback (most recent call last):
        ...
        ValueError: steps: cadm adapts in one forward pass of its encoder and takes no gradient steps; got steps=3
    """

    ADAPT_OPTIONS: tuple[str, ...] = ()
    """``adapt`` takes no options: ``steps`` / ``lr`` / ``sample`` / ``generator`` are accepted only as ``None``."""

    def __init__(
        self,
        model: nn.Module,
        encoder_hidden: Sequence[int] = (128, 128),
        backward_weight: float = 1.0,
        backward_hidden: Sequence[int] | None = None,
        encoder_activation: str = "relu",
        prior_weight: float = 0.0,
    ):
        super().__init__(model, encoder_hidden, encoder_activation)
        self.backward_weight = check_float("backward_weight", backward_weight, 0.0)
        self.prior_weight = check_float("prior_weight", prior_weight, 0.0)
        self.head = nn.Linear(self.encoder_hidden[-1], self.context_dim)
        self.backward_hidden = None if backward_hidden is None else list(check_sizes("backward_hidden", backward_hidden))
        if self.backward_weight > 0:
            o, a = model.obs_dim, model.act_dim
            sizes = [o + a + self.context_dim, *(self.backward_hidden or model.hidden), o]
            self.backward = nn.ModuleList(nn.Linear(i, j) for i, j in zip(sizes[:-1], sizes[1:]))

    def init_kwargs(self) -> dict:
        """Constructor arguments (without the model), JSON-serializable."""
        return dict(encoder_hidden=self.encoder_hidden, backward_weight=self.backward_weight,
                    backward_hidden=self.backward_hidden, encoder_activation=self.encoder_activation,
                    prior_weight=self.prior_weight)

    def encode(self, context: Transitions) -> torch.Tensor:
        """Context vector ``z`` (differentiable, unchecked; see Shapes): mean over ``K``, then linear."""
        return self.head(self._hidden(context).mean(dim=-2))

    def backward_loss(self, tr: Transitions, z: torch.Tensor) -> torch.Tensor:
        """Per-task backward prediction loss: predict normalized ``obs - next_obs`` from ``(next_obs, act, z)``.

        Shapes:
            ``tr`` of batch shape ``(T, N)``, ``z (T, Z)`` -> ``(T,)``.
        """
        m = self.model
        zb = z.unsqueeze(-2).expand(*tr.obs.shape[:-1], z.shape[-1])
        h = torch.cat([m.obs_norm.normalize(tr.next_obs), tr.act, zb], dim=-1)
        act, last = _ENC_ACTIVATIONS[m.activation], len(self.backward) - 1
        for i, layer in enumerate(self.backward):
            h = layer(h)
            if i < last:
                h = act(h)
        target = -m.delta_norm.normalize(tr.next_obs - tr.obs)
        return (h - target).pow(2).mean(dim=(-2, -1))

    def meta_loss(self, batch: TaskBatch) -> tuple[torch.Tensor, dict[str, float]]:
        """Forward loss on the query given ``z`` encoded from the support, plus the backward loss.

        Args:
            batch: support of batch shape ``(T, M)`` and query of batch shape ``(T, K)``.

        Returns:
            ``(loss, info)``; info: ``query_loss`` (forward loss after encoding the support),
            ``query_loss_pre`` / ``support_loss_pre`` (the prior, ``z = 0``), ``backward_loss``.
        """
        support, query = batch
        params = self.model.param_dict()
        z = self.encode(support)
        fwd = self.model.task_loss(params, query, z).mean()
        loss, info = fwd, {"query_loss": float(fwd.detach())}
        if self.backward_weight > 0:
            bwd = self.backward_loss(query, z).mean()
            loss = loss + self.backward_weight * bwd
            info["backward_loss"] = float(bwd.detach())
        if self.prior_weight > 0:
            loss = loss + self.prior_weight * self.model.task_loss(params, query, torch.zeros_like(z)).mean()
        return loss, {**info, **self._pre_losses(batch)}

    @torch.no_grad()
    def adapt(self, context: Transitions, **opts) -> AdaptedModel:
        """Encodes the context of one task (``(K, ·)``) or a batch (``(T, K, ·)``): one forward pass.

        Args:
            context: transitions from the new task(s).
            **opts: none apply (see :attr:`ADAPT_OPTIONS`); the options of other learners (``steps``,
                ``lr``, ``sample``, ``generator``) are accepted as ``None`` and rejected by name otherwise.

        Returns:
            An :class:`AdaptedModel` holding the prior's parameters and ``z`` (``(Z,)`` or ``(T, Z)``).

        Raises:
            ValueError: naming the argument: an option, a bad context, or ``context`` when its
                encoding is not finite (values too large for the encoder).
        """
        self._check_options(opts, self.ADAPT_OPTIONS)
        num_tasks = self._check_context(context)
        z = self.encode(context)
        check_adapted("context", context, self.model, {"z": z}, what="task vector")
        return AdaptedModel(self.model, self._params(), num_tasks, task_vector=z)


class PEARL(_ContextLearner):
    """Probabilistic context encoder (Rakelly et al. 2019) over a conditioned dynamics-and-reward model.

    Every context transition gives a Gaussian factor ``N(mu_k, var_k)`` (an MLP per transition);
    the posterior is their product with the unit Gaussian prior ``N(0, I)`` (precision-weighted):
    ``var = 1 / (1 + sum_k 1/var_k)``, ``mean = var * sum_k mu_k / var_k``. It is invariant to the
    order of the transitions, its variance shrinks as ``K`` grows, and an empty context gives the
    prior, which is what :meth:`prior` uses (``z = 0``, the prior mean). Training samples
    ``z ~ N(mean, var)`` from the support's posterior (reparameterized, torch's global RNG, which
    ``meta_train`` seeds and checkpoints) and adds ``kl_weight * KL(posterior || N(0, I))``.

    Args:
        model: a conditioned network (``DynamicsMLP(..., context_dim=Z)``).
        encoder_hidden: widths of the per-transition MLP.
        kl_weight: weight of the KL term (PEARL uses 0.1 next to a Bellman loss; our loss is a per-transition
            mean over the query, against one KL per task, and 0.1 drives the posterior to the prior).
        encoder_activation: ``"relu"``, ``"silu"`` or ``"tanh"``.
        min_var: floor of each factor's variance.

    Shapes:
        ``posterior(context (K, ·)) -> (mean (Z,), var (Z,))``; ``(T, K, ·) -> ((T, Z), (T, Z))``.

    Example:
        >>> import torch
        >>> from meta_mbrl.models import DynamicsMLP
        >>> from meta_mbrl.types import Transitions
        >>> learner = PEARL(DynamicsMLP(3, 1, hidden=(16,), context_dim=4), encoder_hidden=(16,))
        >>> ctx = Transitions(torch.randn(2, 8, 3), torch.randn(2, 8, 1), torch.randn(2, 8), torch.randn(2, 8, 3))
        >>> mean, var = learner.posterior(ctx)
        >>> mean.shape, bool((var < 1).all())
        (torch.Size([2, 4]), True)
        >>> learner.ADAPT_OPTIONS
        ('sample', 'generator')
    """

    ADAPT_OPTIONS: tuple[str, ...] = ("sample", "generator")
    """The keyword options of :meth:`adapt` (``steps`` / ``lr`` are accepted only as ``None``)."""

    def __init__(
        self,
        model: nn.Module,
        encoder_hidden: Sequence[int] = (128, 128),
        kl_weight: float = 0.01,
        encoder_activation: str = "relu",
        min_var: float = 1e-6,
    ):
        super().__init__(model, encoder_hidden, encoder_activation)
        self.kl_weight = check_float("kl_weight", kl_weight, 0.0)
        self.min_var = check_float("min_var", min_var, 0.0, low_open=True)
        self.head = nn.Linear(self.encoder_hidden[-1], 2 * self.context_dim)

    def init_kwargs(self) -> dict:
        """Constructor arguments (without the model), JSON-serializable."""
        return dict(encoder_hidden=self.encoder_hidden, kl_weight=self.kl_weight,
                    encoder_activation=self.encoder_activation, min_var=self.min_var)

    def _posterior(self, context: Transitions) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.head(self._hidden(context))
        mu, raw = out.split(self.context_dim, dim=-1)
        prec = 1.0 / (F.softplus(raw) + self.min_var)
        total = 1.0 + prec.sum(dim=-2)
        var = 1.0 / total
        return (mu * prec).sum(dim=-2) * var, var

    def posterior(self, context: Transitions) -> tuple[torch.Tensor, torch.Tensor]:
        """Posterior ``(mean, var)`` of ``z`` given the context (checked; differentiable; see Shapes)."""
        self._check_context(context)
        return self._posterior(context)

    @staticmethod
    def kl(mean: torch.Tensor, var: torch.Tensor) -> torch.Tensor:
        """``KL(N(mean, var) || N(0, I))`` summed over the last dim."""
        return 0.5 * (var + mean.pow(2) - 1.0 - var.log()).sum(-1)

    def meta_loss(self, batch: TaskBatch) -> tuple[torch.Tensor, dict[str, float]]:
        """Query loss with ``z`` sampled from the support's posterior, plus ``kl_weight`` times the KL.

        Args:
            batch: support of batch shape ``(T, M)`` and query of batch shape ``(T, K)``.

        Returns:
            ``(loss, info)``; info: ``query_loss`` (at the posterior mean, as ``adapt`` gives),
            ``query_loss_sample`` (at the sampled ``z``, the trained term), ``kl``, and the prior's
            ``query_loss_pre`` / ``support_loss_pre`` (``z = 0``).
        """
        support, query = batch
        params = self.model.param_dict()
        mean, var = self._posterior(support)
        z = mean + var.sqrt() * torch.randn_like(mean)
        fit = self.model.task_loss(params, query, z).mean()
        kl = self.kl(mean, var).mean()
        loss = fit + self.kl_weight * kl
        with torch.no_grad():
            at_mean = float(self.model.task_loss(params, query, mean).mean())
        info = {"query_loss": at_mean, "query_loss_sample": float(fit.detach()), "kl": float(kl.detach())}
        return loss, {**info, **self._pre_losses(batch)}

    @torch.no_grad()
    def adapt(self, context: Transitions, sample: bool | None = None, generator: torch.Generator | None = None,
              **opts) -> AdaptedModel:
        """Conditions the prior on the posterior of one task (``(K, ·)``) or a batch (``(T, K, ·)``).

        Args:
            context: transitions from the new task(s).
            sample: use a sample of the posterior instead of its mean (``None``: ``False``).
            generator: random generator for the sample (a ``torch.Generator`` on the model's device).
            **opts: ``steps`` / ``lr`` (gradient learners' options) are accepted only as ``None``.

        Returns:
            An :class:`AdaptedModel` holding the prior's parameters and ``z``.

        Raises:
            ValueError: naming the argument: an option, a bad context, or ``context`` when the
                posterior is not finite (values too large for the encoder).
        """
        self._check_options(opts, self.ADAPT_OPTIONS)
        sample = False if sample is None else check_bool("sample", sample)
        ref = next(self.model.parameters())
        if generator is not None and (not isinstance(generator, torch.Generator) or generator.device.type != ref.device.type):
            got = f"one on {generator.device}" if isinstance(generator, torch.Generator) else type(generator).__name__
            raise ValueError(f"generator: expected None or a torch.Generator on {ref.device}, got {got}")
        num_tasks = self._check_context(context)
        mean, var = self._posterior(context)
        z = mean
        if sample:
            z = mean + var.sqrt() * torch.randn(mean.shape, generator=generator, dtype=mean.dtype, device=mean.device)
        check_adapted("context", context, self.model, {"z": z}, what="task vector")
        return AdaptedModel(self.model, self._params(), num_tasks, task_vector=z)
