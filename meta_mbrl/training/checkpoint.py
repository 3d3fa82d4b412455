"""Checkpoints: one ``torch.save`` file of tensors and plain data, loaded with ``weights_only=True``
(no code runs on load), written atomically, enough to rebuild the learner and resume training."""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from meta_mbrl.io import atomic_path

__all__ = ["save_checkpoint", "load_checkpoint", "learner_from_checkpoint", "register_learner", "LEARNERS"]

FORMAT = "meta_mbrl.checkpoint/1"
LEARNERS: dict[str, type] = {}
MODELS: dict[str, type] = {}


def register_learner(name: str, cls: type) -> None:
    """Makes ``cls`` rebuildable from checkpoints under ``name``."""
    LEARNERS[name] = cls


def _registries():
    """Registers the built-in learners (``maml|fomaml|metasgd|anil|reptile|cadm|pearl|multitask|finetune``, and ``ensemble`` of any of them)
    and models, without overriding names registered by the user."""
    from meta_mbrl.meta import LEARNER_CLASSES, Ensemble
    from meta_mbrl.models import DynamicsMLP

    for name, cls in {**LEARNER_CLASSES, "ensemble": Ensemble}.items():
        LEARNERS.setdefault(name, cls)
    MODELS.setdefault("DynamicsMLP", DynamicsMLP)


def learner_name(learner) -> str:
    _registries()
    for name, cls in LEARNERS.items():
        if type(learner) is cls:
            return name
    raise ValueError(f"learner: {type(learner).__name__} is not registered; call register_learner first")


def save_checkpoint(path: str | os.PathLike, learner, optimizer=None, *, step: int = 0, env_steps: int = 0,
                    config: dict | None = None, sources: list | None = None, extra: dict | None = None) -> Path:
    """Writes learner (model + normalizers + learner params), optimizer and progress atomically."""
    payload = {
        "format": FORMAT,
        "learner": learner_name(learner),
        "learner_kwargs": json.dumps(learner.init_kwargs()),
        "model": type(learner.model).__name__,
        "model_kwargs": json.dumps(learner.model.init_kwargs()),
        "state_dict": {k: v.detach().cpu() for k, v in learner.state_dict().items()},
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "step": int(step),
        "env_steps": int(env_steps),
        "config": json.dumps(config or {}),
        "sources": json.dumps(sources or []),
        "extra": json.dumps(extra or {}),
        "torch_rng": torch.get_rng_state(),
    }
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return Path(path)


def load_checkpoint(path: str | os.PathLike) -> dict:
    """Loads a checkpoint file (or ``RUN_DIR/checkpoint.pt``) with ``weights_only=True``."""
    path = Path(path)
    if path.is_dir():
        path = path / "checkpoint.pt"
    if not path.exists():
        raise ValueError(f"checkpoint: no checkpoint file at {str(path)!r}")
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    if ckpt.get("format") != FORMAT:
        raise ValueError(f"checkpoint: expected format {FORMAT!r}, got {ckpt.get('format')!r} in {str(path)!r}")
    for key in ("learner_kwargs", "model_kwargs", "config", "sources", "extra"):
        ckpt[key] = json.loads(ckpt[key])
    return ckpt


def learner_from_checkpoint(path_or_ckpt, device: str | torch.device = "cpu"):
    """Rebuilds the learner saved in a checkpoint, on ``device``."""
    _registries()
    ckpt = path_or_ckpt if isinstance(path_or_ckpt, dict) else load_checkpoint(path_or_ckpt)
    model = MODELS[ckpt["model"]](**ckpt["model_kwargs"])
    learner = LEARNERS[ckpt["learner"]](model, **ckpt["learner_kwargs"])
    learner.load_state_dict(ckpt["state_dict"])
    return learner.to(device)
