"""Dynamics-and-reward MLP: predicts the normalized observation change and the reward.

The network is written as a pure function of a parameter dict (``forward_params``), so the same
code serves the module's own parameters, ``torch.func.functional_call`` swaps, and *task-batched*
parameters whose tensors carry a leading task dim ``T`` (one adapted copy per task).

With ``context_dim > 0`` the network is *conditioned* on a task vector ``z`` (CaDM / PEARL context,
a CAVIA task embedding): its input is ``[normalized obs, act, z]``. ``z`` is constant over the
samples of a task, so the first layer splits into ``W_x x + (W_z z + b)`` and the ``z`` term is
computed once per task and broadcast (same maths as concatenating, cheaper for planners).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from meta_mbrl.checks import check_bool, check_float, check_int, check_sizes
from meta_mbrl.models.normalizer import Normalizer
from meta_mbrl.types import Prediction, Transitions

__all__ = ["DynamicsMLP"]

_ACTIVATIONS = {
    "silu": (F.silu, lambda z: (s := torch.sigmoid(z)) * (1 + z * (1 - s))),
    "relu": (F.relu, lambda z: (z > 0).to(z.dtype)),
    "tanh": (torch.tanh, lambda z: 1 - torch.tanh(z) ** 2),
}


class DynamicsMLP(nn.Module):
    """MLP over ``[normalized obs, act]`` predicting ``[normalized Δobs, normalized reward]``.

    Args:
        obs_dim: observation dimension ``O`` (an integer >= 1).
        act_dim: action dimension ``A`` (an integer >= 1).
        hidden: hidden layer widths: at least one, each an integer >= 1.
        activation: ``"silu"``, ``"relu"`` or ``"tanh"``.
        gaussian: if True, also predicts a bounded log-variance and trains with Gaussian NLL
            (PETS-style); otherwise deterministic with MSE.
        reward_weight: weight of the reward term against the mean over observation dims.
        context_dim: size ``Z`` of a task vector the network is conditioned on (0: unconditioned).
            When > 0, every forward takes ``z``: ``(Z,)``, or ``(T, Z)`` / any prefix of the inputs'
            batch dims, broadcast over the remaining (middle) batch dims.
        skip: add a linear map of the normalized inputs to the output (``skip.weight``, no bias, zero at
            init), so a linear part of the dynamics (much of a position-controlled arm's) needs no hidden
            units. Its gradients come from autograd: the analytic ``loss_grad`` / ``z_grad`` refuse it.

    Shapes:
        ``predict(obs (..., O), act (..., A)) -> Prediction(next_obs (..., O), reward (...))``.
        ``task_loss(params, tr)``: with task-batched params (leading dim ``T``) and ``tr`` of batch
        shape ``(T, N)`` returns ``(T,)``; with plain params and batch shape ``(N,)`` returns ``()``.
        Conditioned: ``predict(obs (T, ..., O), act (T, ..., A), z=(T, Z))``.

    Example:
        >>> import torch
        >>> m = DynamicsMLP(4, 2, hidden=(32, 32))
        >>> p = m.predict(torch.zeros(7, 4), torch.zeros(7, 2))
        >>> p.next_obs.shape, p.reward.shape
        (torch.Size([7, 4]), torch.Size([7]))
        >>> c = DynamicsMLP(4, 2, hidden=(32,), context_dim=3)
        >>> c.predict(torch.zeros(2, 7, 4), torch.zeros(2, 7, 2), z=torch.zeros(2, 3)).reward.shape
        torch.Size([2, 7])
    """

    min_logvar = -10.0
    max_logvar = 0.5

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        hidden: Sequence[int] = (200, 200, 200),
        activation: str = "silu",
        gaussian: bool = False,
        reward_weight: float = 1.0,
        context_dim: int = 0,
        skip: bool = False,
    ):
        super().__init__()
        if not isinstance(activation, str) or activation not in _ACTIVATIONS:
            raise ValueError(f"activation: expected one of {sorted(_ACTIVATIONS)}, got {activation!r}")
        self.obs_dim, self.act_dim = check_int("obs_dim", obs_dim, 1), check_int("act_dim", act_dim, 1)
        self.context_dim = check_int("context_dim", context_dim, 0)
        self.hidden = check_sizes("hidden", hidden)
        self.activation, self.gaussian = activation, check_bool("gaussian", gaussian)
        self.reward_weight = check_float("reward_weight", reward_weight, 0.0)
        self.target_dim = self.obs_dim + 1
        sizes = [self.obs_dim + self.act_dim + self.context_dim, *self.hidden, self.target_dim * (2 if gaussian else 1)]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))
        self.skip_inputs = self.obs_dim + self.act_dim if check_bool("skip", skip) else 0
        if self.skip_inputs:
            self.skip = nn.Linear(self.skip_inputs, sizes[-1], bias=False)
            nn.init.zeros_(self.skip.weight)
        self.obs_norm = Normalizer(self.obs_dim)
        self.delta_norm = Normalizer(self.obs_dim)
        self.reward_norm = Normalizer(1)
        w = torch.full((self.target_dim,), 1.0 / self.obs_dim)
        w[-1] = self.reward_weight
        self.register_buffer("loss_weights", w, persistent=False)
        self._act, self._dact = _ACTIVATIONS[activation]

    # ------------------------------------------------------------------ construction helpers
    def init_kwargs(self) -> dict:
        """Constructor arguments, JSON-serializable, so checkpoints can rebuild the model."""
        return dict(
            obs_dim=self.obs_dim, act_dim=self.act_dim, hidden=list(self.hidden),
            activation=self.activation, gaussian=self.gaussian, reward_weight=self.reward_weight,
            context_dim=self.context_dim, skip=bool(self.skip_inputs),
        )

    @torch.no_grad()
    def fit_normalizers(self, tr: Transitions) -> None:
        """Fits the observation, Δobs and reward normalizers on training transitions."""
        obs = tr.obs.reshape(-1, self.obs_dim)
        self.obs_norm.fit(obs)
        self.delta_norm.fit(tr.next_obs.reshape(-1, self.obs_dim) - obs)
        self.reward_norm.fit(tr.reward.reshape(-1, 1))

    def param_dict(self) -> dict[str, torch.Tensor]:
        """The trainable parameters as an ordered ``{name: tensor}`` dict."""
        return dict(self.named_parameters())

    # ------------------------------------------------------------------ functional forward
    def _inputs(self, obs: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.obs_norm.normalize(obs), act], dim=-1)

    def _layers(self, params: dict[str, torch.Tensor]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        return [(params[f"layers.{i}.weight"], params[f"layers.{i}.bias"]) for i in range(len(self.layers))]

    @staticmethod
    def _linear(h: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """``h @ w.T + b`` for plain ``(out, in)`` or task-batched ``(T, out, in)`` weights, ``h (T, N, in)``."""
        if w.dim() == 2:
            return F.linear(h, w, b)
        if w.stride(0) == 0 and b.stride(0) == 0:  # an expanded prior: one weight for all tasks, one big GEMM
            return F.linear(h, w[0], b[0])
        return torch.baddbmm(b.unsqueeze(1), h, w.transpose(1, 2))

    def _check_z(self, z: torch.Tensor | None, lead: tuple) -> None:
        """Checks that ``z`` fits: required iff conditioned, size ``Z``, leading dims a prefix of ``lead``."""
        if self.context_dim == 0:
            if z is not None:
                raise ValueError(f"z: this model has context_dim=0 (unconditioned), got a z of shape {tuple(z.shape)}")
            return
        if z is None:
            raise ValueError(f"z: expected a task vector with last dimension {self.context_dim} (context_dim), got None")
        if z.dim() == 0 or z.shape[-1] != self.context_dim or z.dim() - 1 > len(lead) or tuple(z.shape[:-1]) != tuple(lead[:z.dim() - 1]):
            raise ValueError(
                f"z: expected shape (*prefix, {self.context_dim}) with prefix a prefix of the inputs' batch dims "
                f"{tuple(lead)}, got {tuple(z.shape)}"
            )

    def _first_layer(self, h: torch.Tensor, w: torch.Tensor, b: torch.Tensor, z: torch.Tensor | None, lead: tuple) -> torch.Tensor:
        """First layer on ``h`` (``(..., O+A)``, or ``(T, n, O+A)`` for task-batched ``w``), adding ``W_z z``."""
        if self.context_dim == 0:
            return self._linear(h, w, b)
        d = self.obs_dim + self.act_dim
        wx, wz = w[..., :d], w[..., d:]
        nz = z.dim() - 1
        if w.dim() == 2:
            zc = F.linear(z, wz, b)
            zc = zc.reshape(*zc.shape[:-1], *([1] * (len(lead) - nz)), zc.shape[-1])
            return F.linear(h, wx) + zc
        t = w.shape[0]
        if nz == 0:
            z3 = z.expand(t, 1, z.shape[-1])
        elif nz == 1:
            z3 = z.unsqueeze(1)
        else:
            z3 = z.reshape(*z.shape[:-1], *([1] * (len(lead) - nz)), z.shape[-1]).expand(*lead, z.shape[-1]).reshape(t, -1, z.shape[-1])
        if w.stride(0) == 0 and b.stride(0) == 0:
            return F.linear(h, wx[0]) + F.linear(z3, wz[0], b[0])
        return torch.baddbmm(torch.baddbmm(b.unsqueeze(1), z3, wz.transpose(1, 2)), h, wx.transpose(1, 2))

    def forward_params(
        self, params: dict[str, torch.Tensor], obs: torch.Tensor, act: torch.Tensor, z: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Raw network output for ``params``; task-batched params take inputs ``(T, ..., ·)``.

        ``z`` (conditioned models only): the task vector, ``(Z,)`` or with leading dims that are a
        prefix of the inputs' batch dims (e.g. ``(T, Z)`` for inputs ``(T, N, ·)``).
        """
        layers = self._layers(params)
        h, x, lead = self._trunk(layers, obs, act, z)
        h = self._linear(h, *layers[-1])
        if self.skip_inputs:
            w = params["skip.weight"]
            w = w[0] if w.dim() == 3 and w.stride(0) == 0 else w
            h = h + (F.linear(x, w) if w.dim() == 2 else torch.bmm(x, w.transpose(1, 2)))
        return h.reshape(*lead, h.shape[-1])

    def _trunk(self, layers, obs: torch.Tensor, act: torch.Tensor, z: torch.Tensor | None):
        """Last hidden features (after the activation) and the network's inputs, both flattened to ``(T, N, ·)``
        for task-batched params; and the inputs' batch shape."""
        x = self._inputs(obs, act)
        lead = x.shape[:-1]
        self._check_z(z, lead)
        x = x.reshape(layers[0][0].shape[0], -1, x.shape[-1]) if layers[0][0].dim() == 3 else x
        h = self._first_layer(x, *layers[0], z, lead)
        for w, b in layers[1:-1]:
            h = self._linear(self._act(h), w, b)
        return self._act(h), x, lead

    def features_params(self, params: dict[str, torch.Tensor], obs: torch.Tensor, act: torch.Tensor,
                        z: torch.Tensor | None = None) -> torch.Tensor:
        """The last hidden layer's features ``(..., H)``: what the output layer maps linearly to the output.

        Example:
            >>> m = DynamicsMLP(4, 2, hidden=(8, 5))
            >>> m.features_params(m.param_dict(), torch.zeros(3, 4), torch.zeros(3, 2)).shape
            torch.Size([3, 5])
        """
        h, _, lead = self._trunk(self._layers(params), obs, act, z)
        return h.reshape(*lead, h.shape[-1])

    def forward(self, obs: torch.Tensor, act: torch.Tensor, z: torch.Tensor | None = None) -> torch.Tensor:
        """Raw output with the module's own parameters (what ``functional_call`` swaps)."""
        return self.forward_params(dict(self.named_parameters()), obs, act, z)

    # ------------------------------------------------------------------ targets and losses
    def targets(self, tr: Transitions) -> torch.Tensor:
        """Normalized regression targets ``[Δobs, reward]`` of shape ``(..., O + 1)``."""
        delta = self.delta_norm.normalize(tr.next_obs - tr.obs)
        rew = self.reward_norm.normalize(tr.reward.unsqueeze(-1))
        return torch.cat([delta, rew], dim=-1)

    def _logvar(self, raw: torch.Tensor) -> torch.Tensor:
        lv = self.max_logvar - F.softplus(self.max_logvar - raw)
        return self.min_logvar + F.softplus(lv - self.min_logvar)

    def loss_from_output(self, out: torch.Tensor, target: torch.Tensor, sample_dims: int = 1) -> torch.Tensor:
        """Weighted MSE (or Gaussian NLL), averaged over the last ``sample_dims`` batch dims."""
        d = self.target_dim
        err = out[..., :d] - target
        if self.gaussian:
            lv = self._logvar(out[..., d:])
            per = err.pow(2) * torch.exp(-lv) + lv
        else:
            per = err.pow(2)
        per = (per * self.loss_weights).sum(-1)
        return per.mean(dim=tuple(range(-sample_dims, 0))) if sample_dims else per

    def output_grad(self, out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Analytic gradient of ``loss_from_output(out, target).sum()`` w.r.t. ``out`` (last batch dim averaged)."""
        d, n = self.target_dim, out.shape[-2]
        err = out[..., :d] - target
        w = self.loss_weights / n
        if not self.gaussian:
            return err * (2 * w)
        raw = out[..., d:]
        lv1 = self.max_logvar - F.softplus(self.max_logvar - raw)
        lv = self.min_logvar + F.softplus(lv1 - self.min_logvar)
        inv = torch.exp(-lv)
        dlv = w * (1 - err.pow(2) * inv) * torch.sigmoid(self.max_logvar - raw) * torch.sigmoid(lv1 - self.min_logvar)
        return torch.cat([err * inv * (2 * w), dlv], dim=-1)

    def task_loss(self, params: dict[str, torch.Tensor], tr: Transitions, z: torch.Tensor | None = None) -> torch.Tensor:
        """Loss per task (see Shapes); differentiable w.r.t. ``params`` (and ``z``)."""
        return self.loss_from_output(self.forward_params(params, tr.obs, tr.act, z), self.targets(tr))

    def _forward_cache(self, params: dict[str, torch.Tensor], tr: Transitions, z: torch.Tensor | None):
        """Forward pass keeping what the analytic backward needs: layers, activations, activation slopes."""
        if self.skip_inputs:
            raise ValueError("model: the analytic gradients (loss_grad, z_grad) do not cover the linear skip; build the "
                             "network with skip=False for gradient-based learners, or use autograd (task_loss)")
        layers = self._layers(params)
        h = self._inputs(tr.obs, tr.act)
        self._check_z(z, h.shape[:-1])
        if z is not None:
            zb = z.reshape(*z.shape[:-1], *([1] * (h.dim() - z.dim())), z.shape[-1])
            h = torch.cat([h, zb.expand(*h.shape[:-1], z.shape[-1])], dim=-1)
        acts, dacts = [h], []
        last = len(layers) - 1
        for i, (w, b) in enumerate(layers):
            pre = self._linear(h, w, b)
            if i < last:
                if self.activation == "silu":
                    s = torch.sigmoid(pre)
                    h = pre * s
                    dacts.append(s * (pre - h + 1))  # silu'(x) = s (1 + x (1 - s))
                else:
                    h = self._act(pre)
                    dacts.append(self._dact(pre))
            else:
                h = pre
            acts.append(h)
        return layers, acts, dacts

    @staticmethod
    def _shared(w: torch.Tensor) -> torch.Tensor:
        return w[0] if w.dim() == 3 and w.stride(0) == 0 else w

    def loss_grad(
        self, params: dict[str, torch.Tensor], tr: Transitions, return_loss: bool = False, z: torch.Tensor | None = None
    ) -> tuple[torch.Tensor | None, dict[str, torch.Tensor]]:
        """Gradient of the loss w.r.t. ``params`` by an analytic backward pass (no autograd graph).

        Equal to ``torch.autograd.grad(task_loss(params, tr).sum(), params)`` (tested). It is made of
        plain differentiable torch ops, so MAML's outer loop can differentiate through it (second
        order), and it is cheaper than autograd's double backward. Accepts plain params with ``tr``
        of batch shape ``(N,)``, or task-batched params with ``(T, N)``. A conditioned model takes
        ``z`` as in :meth:`forward_params` (gradients w.r.t. the parameters only; see :meth:`z_grad`).

        Returns:
            ``(loss or None, grads)``; the loss only when ``return_loss``.
        """
        layers, acts, dacts = self._forward_cache(params, tr, z)
        out, target = acts[-1], self.targets(tr)
        loss = self.loss_from_output(out, target) if return_loss else None
        d = self.output_grad(out, target)
        grads: dict[str, torch.Tensor] = {}
        last = len(layers) - 1
        for i in range(last, -1, -1):
            grads[f"layers.{i}.weight"] = torch.matmul(d.transpose(-1, -2), acts[i])
            grads[f"layers.{i}.bias"] = d.sum(-2)
            if i > 0:
                d = torch.matmul(d, self._shared(layers[i][0])) * dacts[i - 1]
        return loss, grads

    def z_grad(
        self, params: dict[str, torch.Tensor], tr: Transitions, z: torch.Tensor, return_loss: bool = False
    ) -> tuple[torch.Tensor | None, torch.Tensor]:
        """Gradient of ``task_loss(params, tr, z).sum()`` w.r.t. the task vector ``z`` (analytic, like :meth:`loss_grad`).

        Made of plain differentiable torch ops (a second-order outer loop can differentiate through it).

        Returns:
            ``(loss or None, dz)`` with ``dz`` of the shape of ``z``.
        """
        if self.context_dim == 0:
            raise ValueError("z: z_grad needs a conditioned model (context_dim > 0), this one has context_dim=0")
        layers, acts, dacts = self._forward_cache(params, tr, z)
        out, target = acts[-1], self.targets(tr)
        loss = self.loss_from_output(out, target) if return_loss else None
        d = self.output_grad(out, target)
        for i in range(len(layers) - 1, 0, -1):
            d = torch.matmul(d, self._shared(layers[i][0])) * dacts[i - 1]
        dz = torch.matmul(d, self._shared(layers[0][0])[..., self.obs_dim + self.act_dim:])
        extra = tuple(range(z.dim() - 1, dz.dim() - 1))
        return loss, dz.sum(dim=extra) if extra else dz

    # ------------------------------------------------------------------ prediction
    def predict_params(
        self, params: dict[str, torch.Tensor], obs: torch.Tensor, act: torch.Tensor, z: torch.Tensor | None = None
    ) -> Prediction:
        """Denormalized prediction for ``params`` (plain or task-batched), conditioned on ``z`` if given."""
        out = self.forward_params(params, obs, act, z)
        d, o = self.target_dim, self.obs_dim
        next_obs = obs + self.delta_norm.denormalize(out[..., :o])
        reward = self.reward_norm.denormalize(out[..., o:d]).squeeze(-1)
        if not self.gaussian:
            return Prediction(next_obs, reward)
        std = torch.exp(0.5 * self._logvar(out[..., d:]))
        return Prediction(next_obs, reward, std[..., :o] * self.delta_norm.std, std[..., o] * self.reward_norm.std[0])

    def predict(self, obs: torch.Tensor, act: torch.Tensor, z: torch.Tensor | None = None) -> Prediction:
        """Prediction with the module's own (unadapted) parameters."""
        return self.predict_params(self.param_dict(), obs, act, z)
