"""Input validation with messages that name the argument, the expected and the actual value."""

from __future__ import annotations

import torch

from meta_mbrl.types import Transitions

__all__ = ["check_tensor", "check_transitions", "check_obs_act"]


def check_tensor(
    name: str,
    x: object,
    *,
    last_dim: int | None = None,
    dtype: torch.dtype | None = None,
    device: torch.device | None = None,
) -> torch.Tensor:
    """Checks that ``x`` is a finite tensor with the expected last dim, dtype and device.

    Raises:
        ValueError: naming ``name`` with the expected and actual value.
    """
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{name}: expected a torch.Tensor, got {type(x).__name__}")
    if dtype is not None and x.dtype != dtype:
        raise ValueError(f"{name}: expected dtype {dtype}, got {x.dtype}")
    if device is not None and x.device.type != torch.device(device).type:
        raise ValueError(f"{name}: expected device {torch.device(device)}, got {x.device}")
    if last_dim is not None and (x.dim() == 0 or x.shape[-1] != last_dim):
        raise ValueError(f"{name}: expected last dimension {last_dim}, got shape {tuple(x.shape)}")
    if x.is_floating_point() and not bool(torch.isfinite(x).all()):
        bad = int((~torch.isfinite(x)).sum())
        raise ValueError(f"{name}: expected finite values, got {bad} NaN/Inf entries")
    return x


def check_obs_act(obs, act, *, obs_dim: int, act_dim: int, dtype, device, prefix: str = "") -> None:
    """Checks an ``(obs, act)`` pair: dims, dtype, device, finiteness and matching batch dims."""
    check_tensor(f"{prefix}obs", obs, last_dim=obs_dim, dtype=dtype, device=device)
    check_tensor(f"{prefix}act", act, last_dim=act_dim, dtype=dtype, device=device)
    if obs.shape[:-1] != act.shape[:-1]:
        raise ValueError(
            f"{prefix}act: expected batch dims {tuple(obs.shape[:-1])} (those of {prefix}obs), "
            f"got {tuple(act.shape[:-1])}"
        )


def check_transitions(
    name: str,
    tr: object,
    *,
    obs_dim: int,
    act_dim: int,
    dtype: torch.dtype,
    device: torch.device,
    min_dims: int = 1,
    max_dims: int | None = None,
) -> Transitions:
    """Checks a Transitions: types, dims, dtype, device, finiteness, batch dims, non-empty.

    Args:
        name: argument name used in error messages (e.g. ``"context"``).
        min_dims / max_dims: allowed number of leading batch dims of ``reward``.
    """
    if not isinstance(tr, Transitions):
        raise ValueError(f"{name}: expected a meta_mbrl.Transitions, got {type(tr).__name__}")
    check_obs_act(tr.obs, tr.act, obs_dim=obs_dim, act_dim=act_dim, dtype=dtype, device=device, prefix=f"{name}.")
    check_tensor(f"{name}.next_obs", tr.next_obs, last_dim=obs_dim, dtype=dtype, device=device)
    check_tensor(f"{name}.reward", tr.reward, dtype=dtype, device=device)
    batch = tuple(tr.obs.shape[:-1])
    for field, shape in (("next_obs", tuple(tr.next_obs.shape[:-1])), ("reward", tuple(tr.reward.shape))):
        if shape != batch:
            raise ValueError(f"{name}.{field}: expected batch dims {batch} (those of {name}.obs), got {shape}")
    n = len(batch)
    if n < min_dims or (max_dims is not None and n > max_dims):
        want = f"{min_dims}" if max_dims == min_dims else f"{min_dims}..{max_dims if max_dims is not None else 'any'}"
        raise ValueError(f"{name}.obs: expected {want} batch dims before the obs dim, got shape {tuple(tr.obs.shape)}")
    if tr.reward.numel() == 0:
        raise ValueError(f"{name}: expected at least one transition, got an empty batch {batch}")
    return tr
