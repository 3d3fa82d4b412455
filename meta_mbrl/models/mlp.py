"""Dynamics-and-reward MLP: predicts the normalized observation change and the reward.

The network is written as a pure function of a parameter dict (``forward_params``), so the same
code serves the module's own parameters, ``torch.func.functional_call`` swaps, and *task-batched*
parameters whose tensors carry a leading task dim ``T`` (one adapted copy per task).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from meta_mbrl.data.normalizer import Normalizer
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
        obs_dim: observation dimension ``O``.
        act_dim: action dimension ``A``.
        hidden: hidden layer widths.
        activation: ``"silu"``, ``"relu"`` or ``"tanh"``.
        gaussian: if True, also predicts a bounded log-variance and trains with Gaussian NLL
            (PETS-style); otherwise deterministic with MSE.
        reward_weight: weight of the reward term against the mean over observation dims.

    Shapes:
        ``predict(obs (..., O), act (..., A)) -> Prediction(next_obs (..., O), reward (...))``.
        ``task_loss(params, tr)``: with task-batched params (leading dim ``T``) and ``tr`` of batch
        shape ``(T, N)`` returns ``(T,)``; with plain params and batch shape ``(N,)`` returns ``()``.

    Example:
        >>> import torch
        >>> m = DynamicsMLP(4, 2, hidden=(32, 32))
        >>> p = m.predict(torch.zeros(7, 4), torch.zeros(7, 2))
        >>> p.next_obs.shape, p.reward.shape
        (torch.Size([7, 4]), torch.Size([7]))
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
    ):
        super().__init__()
        if activation not in _ACTIVATIONS:
            raise ValueError(f"activation: expected one of {sorted(_ACTIVATIONS)}, got {activation!r}")
        if obs_dim < 1 or act_dim < 1:
            raise ValueError(f"obs_dim/act_dim: expected positive ints, got {obs_dim}/{act_dim}")
        self.obs_dim, self.act_dim = int(obs_dim), int(act_dim)
        self.hidden = tuple(int(h) for h in hidden)
        self.activation, self.gaussian = activation, bool(gaussian)
        self.reward_weight = float(reward_weight)
        self.target_dim = self.obs_dim + 1
        sizes = [self.obs_dim + self.act_dim, *self.hidden, self.target_dim * (2 if gaussian else 1)]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))
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

    def forward_params(self, params: dict[str, torch.Tensor], obs: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
        """Raw network output for ``params``; task-batched params take inputs ``(T, ..., ·)``."""
        x = self._inputs(obs, act)
        layers = self._layers(params)
        lead = x.shape[:-1]
        h = x.reshape(layers[0][0].shape[0], -1, x.shape[-1]) if layers[0][0].dim() == 3 else x
        last = len(layers) - 1
        for i, (w, b) in enumerate(layers):
            h = self._linear(h, w, b)
            if i < last:
                h = self._act(h)
        return h.reshape(*lead, h.shape[-1])

    def forward(self, obs: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
        """Raw output with the module's own parameters (what ``functional_call`` swaps)."""
        return self.forward_params(dict(self.named_parameters()), obs, act)

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

    def task_loss(self, params: dict[str, torch.Tensor], tr: Transitions) -> torch.Tensor:
        """Loss per task (see Shapes); differentiable w.r.t. ``params``."""
        return self.loss_from_output(self.forward_params(params, tr.obs, tr.act), self.targets(tr))

    def loss_grad(
        self, params: dict[str, torch.Tensor], tr: Transitions, return_loss: bool = False
    ) -> tuple[torch.Tensor | None, dict[str, torch.Tensor]]:
        """Gradient of the loss w.r.t. ``params`` by an analytic backward pass (no autograd graph).

        Equal to ``torch.autograd.grad(task_loss(params, tr).sum(), params)`` (tested). It is made of
        plain differentiable torch ops, so MAML's outer loop can differentiate through it (second
        order), and it is cheaper than autograd's double backward. Accepts plain params with ``tr``
        of batch shape ``(N,)``, or task-batched params with ``(T, N)``.

        Returns:
            ``(loss or None, grads)``; the loss only when ``return_loss``.
        """
        layers = self._layers(params)
        h = self._inputs(tr.obs, tr.act)
        target = self.targets(tr)
        acts, dacts = [h], []
        last = len(layers) - 1
        for i, (w, b) in enumerate(layers):
            z = self._linear(h, w, b)
            if i < last:
                if self.activation == "silu":
                    s = torch.sigmoid(z)
                    h = z * s
                    dacts.append(s * (z - h + 1))  # silu'(z) = s (1 + z (1 - s))
                else:
                    h = self._act(z)
                    dacts.append(self._dact(z))
            else:
                h = z
            acts.append(h)
        loss = self.loss_from_output(h, target) if return_loss else None
        d = self.output_grad(h, target)
        grads: dict[str, torch.Tensor] = {}
        for i in range(last, -1, -1):
            w = layers[i][0]
            grads[f"layers.{i}.weight"] = torch.matmul(d.transpose(-1, -2), acts[i])
            grads[f"layers.{i}.bias"] = d.sum(-2)
            if i > 0:
                d = torch.matmul(d, w[0] if w.dim() == 3 and w.stride(0) == 0 else w) * dacts[i - 1]
        return loss, grads

    # ------------------------------------------------------------------ prediction
    def predict_params(self, params: dict[str, torch.Tensor], obs: torch.Tensor, act: torch.Tensor) -> Prediction:
        """Denormalized prediction for ``params`` (plain or task-batched)."""
        out = self.forward_params(params, obs, act)
        d, o = self.target_dim, self.obs_dim
        next_obs = obs + self.delta_norm.denormalize(out[..., :o])
        reward = self.reward_norm.denormalize(out[..., o:d]).squeeze(-1)
        if not self.gaussian:
            return Prediction(next_obs, reward)
        std = torch.exp(0.5 * self._logvar(out[..., d:]))
        return Prediction(next_obs, reward, std[..., :o] * self.delta_norm.std, std[..., o] * self.reward_norm.std[0])

    def predict(self, obs: torch.Tensor, act: torch.Tensor) -> Prediction:
        """Prediction with the module's own (unadapted) parameters."""
        return self.predict_params(self.param_dict(), obs, act)
