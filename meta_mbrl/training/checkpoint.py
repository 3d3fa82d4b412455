"""Checkpoints: one ``torch.save`` file of tensors and plain data, loaded with ``weights_only=True``
(no code runs on load), written atomically, enough to rebuild the learner and resume training.

Format ``meta_mbrl.checkpoint/2`` adds a sha256 ``checksum`` over every state-dict tensor (names,
dtypes, shapes, bytes, in sorted order), recomputed on load. Files of the older format ``/1`` (no
checksum) are still accepted; their tensors are only checked to be finite. Nothing non-finite is ever
written: :func:`save_checkpoint` refuses a state dict or optimizer state holding NaN/Inf. The bytes
written are a function of the saved state alone (two saves of the same state are identical files).

Every way a file can be unreadable (missing, not a zip archive, truncated, a pickle payload that is
refused, missing or mistyped fields, a checksum mismatch, shapes that do not fit the learner) raises
one :class:`~meta_mbrl.errors.FileFormatError` naming the file and what is wrong.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import sys
import zipfile
from pathlib import Path

import torch

from meta_mbrl.errors import DivergenceError, FileFormatError
from meta_mbrl.io import atomic_path
from meta_mbrl.meta.registry import LEARNERS, learner_name, register_learner

__all__ = [
    "save_checkpoint", "load_checkpoint", "learner_from_checkpoint", "register_learner", "LEARNERS",
    "state_dict_checksum", "check_state_dict", "FORMAT",
]

FORMAT = "meta_mbrl.checkpoint/2"
FORMAT_V1 = "meta_mbrl.checkpoint/1"  # no checksum; still loaded
MODELS: dict[str, type] = {}


def _registries():
    """The built-in models, without overriding names registered by the user (learners: meta.registry)."""
    from meta_mbrl.models import DynamicsMLP

    MODELS.setdefault("DynamicsMLP", DynamicsMLP)


def _tensor_bytes(t: torch.Tensor) -> bytes:
    t = t.detach().cpu().contiguous().reshape(-1)
    return t.view(torch.uint8).numpy().tobytes() if t.numel() else b""


def state_dict_checksum(state_dict: dict) -> str:
    """sha256 (hex) over every tensor of ``state_dict``: name, dtype, shape and bytes, in sorted name order.

    Example:
        >>> sd = {"w": torch.ones(2, 2), "b": torch.zeros(2)}
        >>> state_dict_checksum(sd) == state_dict_checksum({"b": torch.zeros(2), "w": torch.ones(2, 2)})
        True
        >>> sd["w"][0, 0] = 1.0000001
        >>> state_dict_checksum(sd) == state_dict_checksum({"b": torch.zeros(2), "w": torch.ones(2, 2)})
        False
    """
    h = hashlib.sha256()
    for name in sorted(state_dict):
        t = state_dict[name]
        data = _tensor_bytes(t)
        h.update(f"{name}\0{t.dtype}\0{tuple(t.shape)}\0{len(data)}\0".encode())
        h.update(data)
    return h.hexdigest()


def _canonical(x):
    """A copy of ``x``'s dicts / lists / tuples with every string interned (tensors are kept as they are).

    Pickle memoizes by object identity, so two equal payloads whose equal strings are distinct objects
    in one and shared in the other (e.g. the optimizer's ``"step"`` keys, fresh or unpickled on resume)
    would be written as different bytes; interning makes the file a function of the values alone.
    """
    if isinstance(x, str):
        return sys.intern(x)
    if isinstance(x, dict):
        return {_canonical(k): _canonical(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_canonical(v) for v in x]
    if isinstance(x, tuple):
        return tuple(_canonical(v) for v in x)
    return x


def _nonfinite(named: dict) -> list[str]:
    """Names of the floating (or complex) tensors in ``named`` with a NaN/Inf entry."""
    return [k for k, v in named.items() if isinstance(v, torch.Tensor) and (v.is_floating_point() or v.is_complex())
            and not bool(torch.isfinite(v).all())]


def _optimizer_tensors(opt_state) -> dict:
    """``{"state[i].name": tensor}`` for an optimizer state dict (every tensor of its per-parameter state)."""
    out = {}
    state = opt_state.get("state", {}) if isinstance(opt_state, dict) else {}
    if isinstance(state, dict):
        for pid, st in state.items():
            if isinstance(st, dict):
                for name, v in st.items():
                    if isinstance(v, torch.Tensor):
                        out[f"state[{pid}].{name}"] = v
    return out


def _names(names: list[str], n: int = 5) -> str:
    return ", ".join(names[:n]) + (f" (and {len(names) - n} more)" if len(names) > n else "")


def save_checkpoint(path: str | os.PathLike, learner, optimizer=None, *, step: int = 0, env_steps: int = 0,
                    config: dict | None = None, sources: list | None = None, extra: dict | None = None) -> Path:
    """Writes learner (model + normalizers + learner params), optimizer and progress atomically.

    Args:
        path: the checkpoint file (replaced atomically; a kill mid-write leaves the old one intact).
        learner: a registered MetaLearner.
        optimizer: its optimizer (None: not saved).
        step / env_steps: progress recorded with it.
        config / sources / extra: JSON-serializable data stored with it.

    Raises:
        DivergenceError: a state-dict or optimizer-state tensor holds NaN/Inf (nothing is written).

    Example:
        >>> import tempfile
        >>> from meta_mbrl import MAML, DynamicsMLP
        >>> path = save_checkpoint(Path(tempfile.mkdtemp()) / "checkpoint.pt", MAML(DynamicsMLP(3, 1, hidden=(8,))), step=7)
        >>> load_checkpoint(path)["step"]
        7
    """
    state = {k: v.detach().cpu() for k, v in learner.state_dict().items()}
    bad = _nonfinite(state)
    if bad:
        raise DivergenceError(
            f"checkpoint: refusing to write {str(path)!r} at step {int(step)}: state_dict tensors {_names(bad)} hold "
            "NaN/Inf values; the checkpoint on disk (if any) is left as it was"
        )
    opt_state = optimizer.state_dict() if optimizer is not None else None
    bad = _nonfinite(_optimizer_tensors(opt_state))
    if bad:
        raise DivergenceError(
            f"checkpoint: refusing to write {str(path)!r} at step {int(step)}: optimizer state tensors {_names(bad)} "
            "hold NaN/Inf values; the checkpoint on disk (if any) is left as it was"
        )
    payload = {
        "format": FORMAT,
        "learner": learner_name(learner),
        "learner_kwargs": json.dumps(learner.init_kwargs()),
        "model": type(learner.model).__name__,
        "model_kwargs": json.dumps(learner.model.init_kwargs()),
        "state_dict": state,
        "checksum": state_dict_checksum(state),
        "optimizer": opt_state,
        "step": int(step),
        "env_steps": int(env_steps),
        "config": json.dumps(config or {}),
        "sources": json.dumps(sources or []),
        "extra": json.dumps(extra or {}),
        "torch_rng": torch.get_rng_state(),
    }
    payload = _canonical(payload)
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        # a file object, not the path: torch names the archive's folder after a path's file name, and the
        # temporary name is random, so saving by path would make identical states differ on disk
        torch.save(payload, f)
    return Path(path)


def _reason(e: BaseException) -> str:
    """A short, safe description of a torch.load failure (never torch's advice about weights_only)."""
    first = (str(e).strip().splitlines() or [""])[0]
    first = first.split(". ")[0].strip().rstrip(".")
    if not first or "weights_only" in first:
        return type(e).__name__
    return f"{type(e).__name__}: {first[:200]}"


_FIELDS: dict[str, tuple[type, ...]] = {
    "learner": (str,), "learner_kwargs": (str,), "model": (str,), "model_kwargs": (str,), "state_dict": (dict,),
    "optimizer": (dict, type(None)), "step": (int,), "env_steps": (int,), "config": (str,), "sources": (str,),
    "extra": (str,), "torch_rng": (torch.Tensor,),
}
_JSON_FIELDS = {"learner_kwargs": dict, "model_kwargs": dict, "config": dict, "sources": list, "extra": dict}


def load_checkpoint(path: str | os.PathLike) -> dict:
    """Loads and validates a checkpoint file (or ``RUN_DIR/checkpoint.pt``) with ``weights_only=True``.

    Checks the format, every field's type, the checksum (format ``/2``) and that every state-dict and
    optimizer-state tensor is finite. JSON fields come back decoded; ``"path"`` is added.

    Raises:
        FileFormatError: naming the file and what is wrong (missing, not a zip archive, truncated,
            holding objects other than tensors and plain data, a missing or mistyped field, a checksum
            mismatch, NaN/Inf values).

    Example:
        >>> import tempfile
        >>> load_checkpoint(Path(tempfile.mkdtemp()) / "nothing.pt")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        meta_mbrl.errors.FileFormatError: checkpoint: no checkpoint file at '...nothing.pt'
    """
    path = Path(path)
    if path.is_dir():
        path = path / "checkpoint.pt"
    name = str(path)

    def bad(what: str) -> FileFormatError:
        return FileFormatError(f"checkpoint: {name!r} {what}")

    if not path.exists():
        raise FileFormatError(f"checkpoint: no checkpoint file at {name!r}")
    if not path.is_file():
        raise bad("is not a file")
    size = path.stat().st_size
    if size == 0:
        raise bad("is empty (0 bytes); its writer was killed or it is not a checkpoint")
    with open(path, "rb") as f:
        head = f.read(4)
    if not zipfile.is_zipfile(path):
        if head == b"PK\x03\x04":
            raise bad(f"is truncated: it starts like a torch.save zip archive but its end is missing ({size} bytes); "
                      "it was cut short while being written or copied")
        raise bad(f"is not a checkpoint: expected a torch.save zip archive (starting with b'PK\\x03\\x04'), got {head!r}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:  # raised by the weights-only unpickler; its advice is never relayed
        if any(s in str(e) for s in ("Unsupported global", "not an allowed global", "Unsupported operand",
                                     "Unsupported class", "GLOBAL")):
            raise bad("holds objects other than tensors and plain data (refused: loading it could run code); "
                      "only files written by meta_mbrl's save_checkpoint are checkpoints") from None
        raise bad("could not be unpickled as tensors and plain data; it is corrupted or not a checkpoint") from None
    except Exception as e:  # torch raises RuntimeError, EOFError, KeyError, ... for damaged archives
        raise bad(f"could not be read ({_reason(e)}); it is corrupted or not a checkpoint") from None
    if not isinstance(ckpt, dict):
        raise bad(f"is not a checkpoint: expected a dict of fields, got {type(ckpt).__name__}")
    fmt = ckpt.get("format")
    if fmt not in (FORMAT, FORMAT_V1):
        raise bad(f"has format {fmt!r}, expected {FORMAT!r} (or the older {FORMAT_V1!r})")
    fields = dict(_FIELDS, **({"checksum": (str,)} if fmt == FORMAT else {}))
    missing = [k for k in fields if k not in ckpt]
    if missing:
        raise bad(f"is missing the fields {missing}")
    for key, types in fields.items():
        v = ckpt[key]
        if not isinstance(v, types) or (int in types and isinstance(v, bool)):
            want = " or ".join("None" if t is type(None) else t.__name__ for t in types)
            raise bad(f"field {key!r}: expected {want}, got {type(v).__name__}")
    for key in ("step", "env_steps"):
        if ckpt[key] < 0:
            raise bad(f"field {key!r}: expected >= 0, got {ckpt[key]}")
    rng = ckpt["torch_rng"]
    if rng.dtype != torch.uint8 or rng.dim() != 1:
        raise bad(f"field 'torch_rng': expected a 1-d uint8 tensor, got {rng.dtype} of shape {tuple(rng.shape)}")
    for k, v in ckpt["state_dict"].items():
        if not isinstance(k, str) or not isinstance(v, torch.Tensor):
            raise bad(f"field 'state_dict': expected str names of tensors, got {k!r}: {type(v).__name__}")
    opt = ckpt["optimizer"]
    if opt is not None and not (isinstance(opt.get("state"), dict) and isinstance(opt.get("param_groups"), list)):
        raise bad(f"field 'optimizer': expected an optimizer state dict with 'state' and 'param_groups', got keys {sorted(map(str, opt))}")
    for key, typ in _JSON_FIELDS.items():
        try:
            value = json.loads(ckpt[key])
        except ValueError as e:
            raise bad(f"field {key!r}: expected JSON, got invalid JSON ({e})") from None
        if not isinstance(value, typ):
            raise bad(f"field {key!r}: expected a JSON {typ.__name__}, got {type(value).__name__}")
        ckpt[key] = value
    if fmt == FORMAT:
        actual = state_dict_checksum(ckpt["state_dict"])
        if actual != ckpt["checksum"]:
            raise bad(f"fails its checksum: its state_dict tensors are not those written (expected sha256 "
                      f"{ckpt['checksum'][:16]}..., got {actual[:16]}...); the file is corrupted")
    nonfinite = _nonfinite(ckpt["state_dict"])
    if nonfinite:
        raise bad(f"holds NaN/Inf values in state_dict tensors {_names(nonfinite)}")
    nonfinite = _nonfinite(_optimizer_tensors(opt))
    if nonfinite:
        raise bad(f"holds NaN/Inf values in optimizer state tensors {_names(nonfinite)}")
    ckpt["path"] = name
    return ckpt


def check_state_dict(module: torch.nn.Module, state_dict: dict, source: str = "checkpoint",
                     what: str = "the network") -> None:
    """Checks that ``state_dict`` has exactly ``module``'s tensor names and shapes.

    Args:
        module: the module it is to be loaded into.
        state_dict: the saved tensors.
        source: the file named in errors.
        what: how errors name ``module``.

    Raises:
        FileFormatError: naming missing / unexpected tensors, or a tensor and both shapes.

    Example:
        >>> check_state_dict(torch.nn.Linear(3, 2), {"weight": torch.zeros(2, 4), "bias": torch.zeros(2)}, "ckpt.pt")
        Traceback (most recent call last):
        ...
        meta_mbrl.errors.FileFormatError: checkpoint: 'ckpt.pt': state_dict['weight'] has shape (2, 4), the network expects (2, 3)
    """
    expected = module.state_dict()
    missing = sorted(set(expected) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(expected))
    if missing or unexpected:
        parts = ([f"missing tensors {_names(missing)}"] if missing else []) + (
            [f"unexpected tensors {_names(unexpected)}"] if unexpected else [])
        raise FileFormatError(f"checkpoint: {source!r} does not fit {what}: " + "; ".join(parts))
    for k, v in expected.items():
        if tuple(state_dict[k].shape) != tuple(v.shape):
            raise FileFormatError(
                f"checkpoint: {source!r}: state_dict[{k!r}] has shape {tuple(state_dict[k].shape)}, "
                f"{what} expects {tuple(v.shape)}"
            )


def learner_from_checkpoint(path_or_ckpt, device: str | torch.device = "cpu"):
    """Rebuilds the learner saved in a checkpoint (a path or a :func:`load_checkpoint` dict), on ``device``.

    Raises:
        FileFormatError: the file is unreadable, names an unregistered learner or model, or its tensors
            do not fit the network rebuilt from its saved arguments (names the tensor and both shapes).

    Example:
        >>> import tempfile
        >>> from meta_mbrl import MAML, DynamicsMLP
        >>> path = save_checkpoint(Path(tempfile.mkdtemp()) / "c.pt", MAML(DynamicsMLP(3, 1, hidden=(8,))))
        >>> type(learner_from_checkpoint(path)).__name__
        'MAML'
    """
    _registries()
    ckpt = path_or_ckpt if isinstance(path_or_ckpt, dict) else load_checkpoint(path_or_ckpt)
    source = str(ckpt.get("path", "checkpoint"))
    for key, registry in (("learner", LEARNERS), ("model", MODELS)):
        if ckpt[key] not in registry:
            hint = "; call register_learner first" if key == "learner" else ""
            raise FileFormatError(
                f"checkpoint: {source!r} holds {key} {ckpt[key]!r}, expected one of {sorted(registry)}{hint}"
            )
    try:
        model = MODELS[ckpt["model"]](**ckpt["model_kwargs"])
        learner = LEARNERS[ckpt["learner"]](model, **ckpt["learner_kwargs"])
    except (TypeError, ValueError) as e:
        raise FileFormatError(
            f"checkpoint: {source!r}: cannot rebuild {ckpt['learner']} / {ckpt['model']} from its saved arguments ({e})"
        ) from e
    check_state_dict(learner, ckpt["state_dict"], source, what="the network rebuilt from its saved arguments")
    learner.load_state_dict(ckpt["state_dict"])
    return learner.to(device)
