"""Run configuration: frozen sections (:mod:`.sections`), presets, and conversion to and from plain dicts.

Paths name a field through its sections with dots (``"train.steps"``, ``"learner.maml.inner_lr"``);
:func:`make_config` takes them in a mapping, and also accepts a field's short name where it is unique
(``steps=...``) or its older flag name (``inner_lr=...`` for ``learner.maml.inner_lr``).

Example:
    >>> cfg = make_config("test", {"learner.name": "cadm", "learner.cadm.context_dim": 4}, suite="point-mass")
    >>> cfg.data.suite, cfg.learner.name, cfg.train.steps, learner_kwargs(cfg)["context_dim"]
    ('point-mass', 'cadm', 30, 4)
    >>> make_config("quick", steps=0)
    Traceback (most recent call last):
    ...
    ValueError: train.steps: expected an integer >= 1, got 0
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import typing
from collections.abc import Mapping
from pathlib import Path

from meta_mbrl.config.presets import PRESETS
from meta_mbrl.config.sections import (
    FAMILY_OF,
    SECTIONS,
    AgentSection,
    ALPaCASection,
    CaDMSection,
    ControlSection,
    DataSection,
    FineTuneSection,
    KShotSection,
    LearnerSection,
    MAMLSection,
    ModelSection,
    MultiTaskSection,
    PEARLSection,
    PlannerSection,
    ReptileSection,
    RunConfig,
    TrainSection,
)

__all__ = [
    "RunConfig", "DataSection", "ModelSection", "LearnerSection", "MAMLSection", "ReptileSection", "CaDMSection",
    "PEARLSection", "MultiTaskSection", "FineTuneSection", "ALPaCASection", "TrainSection", "KShotSection", "PlannerSection",
    "ControlSection", "AgentSection", "SECTIONS", "PRESETS", "FAMILY_OF", "make_config", "to_dict", "from_dict", "config_paths",
    "short_names", "section_of", "learner_kwargs", "model_kwargs", "field_docs", "run_environment", "CONFIG_FORMAT",
    "load_preset_file", "write_preset_file", "preset_file_config",
]

CONFIG_FORMAT = "meta_mbrl.config/2"


def _is_section(tp) -> bool:
    return dataclasses.is_dataclass(tp) and isinstance(tp, type)


def config_paths(cls: type = RunConfig, prefix: str = "") -> dict[str, dataclasses.Field]:
    """Every leaf field of a (nested) config class by dotted path, in declaration order.

    Example:
        >>> list(config_paths())[:4]
        ['seed', 'device', 'data.suite', 'data.tasks_per_class']
    """
    out: dict[str, dataclasses.Field] = {}
    for f in dataclasses.fields(cls):
        path = f"{prefix}{f.name}"
        if _is_section(f.type):
            out.update(config_paths(f.type, path + "."))
        else:
            out[path] = f
    return out


def section_of(path: str) -> type:
    """The section class that holds the field at a dotted path (``RunConfig`` for ``seed`` and ``device``)."""
    cls = RunConfig
    for part in path.split(".")[:-1]:
        cls = cls.__dataclass_fields__[part].type
    return cls


def short_names() -> dict[str, str]:
    """Short names that identify one field: each leaf's own name where unique, and the older flag names (aliases)."""
    paths = config_paths()
    count: dict[str, int] = {}
    for p in paths:
        count[p.rsplit(".", 1)[-1]] = count.get(p.rsplit(".", 1)[-1], 0) + 1
    out = {p.rsplit(".", 1)[-1]: p for p in paths if count[p.rsplit(".", 1)[-1]] == 1}
    for p, f in paths.items():
        cls = section_of(p)
        out.setdefault(f"{cls.PREFIX}{f.name}".replace("-", "_"), p)  # the flag name: plan_horizon, control_num_evals
        for a in f.metadata.get("aliases", ()):
            out[a.lstrip("-").replace("-", "_")] = p
    return out


def to_dict(cfg) -> dict:
    """A plain, JSON-ready nested dict of a config (tuples become lists)."""
    return json.loads(json.dumps(dataclasses.asdict(cfg)))


def _coerce(tp, value):
    if typing.get_origin(tp) is tuple and isinstance(value, list):
        return tuple(value)
    return value


def from_dict(d: Mapping, cls: type = RunConfig, where: str = ""):
    """The config a nested dict describes (as written by :func:`to_dict`); every value is validated.

    Raises:
        ValueError: naming the dotted path of an unknown key or an invalid value.
    """
    if not isinstance(d, Mapping):
        raise ValueError(f"{where or 'config'}: expected a mapping of fields, got {type(d).__name__}")
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - set(known))
    if unknown:
        raise ValueError(f"{where or 'config'}: unknown fields {unknown}; expected some of {sorted(known)}")
    kw = {}
    for name, value in d.items():
        f = known[name]
        kw[name] = from_dict(value, f.type, f"{where}{name}.") if _is_section(f.type) else _coerce(f.type, value)
    return cls(**kw)


def _set(d: dict, path: str, value) -> None:
    *parents, leaf = path.split(".")
    for p in parents:
        d = d.setdefault(p, {})
    d[leaf] = value


def make_config(preset: str = "quick", overrides: Mapping[str, object] | None = None, **kwargs) -> RunConfig:
    """A RunConfig from a preset plus overrides, every field validated.

    Args:
        preset: a name in :data:`PRESETS`.
        overrides: dotted paths (``"planner.horizon"``) or short names to values.
        **kwargs: more overrides by short name (``steps=100``, ``suite="point-mass"``), or whole sections
            (``train=TrainSection(...)`` or a dict of its fields).

    Raises:
        ValueError: naming the preset, an unknown field, or the first invalid value.
    """
    if preset not in PRESETS:
        raise ValueError(f"preset: expected one of {sorted(PRESETS)}, got {preset!r}")
    paths, short = config_paths(), short_names()
    d = to_dict(RunConfig())
    for path, value in PRESETS[preset].items():
        _set(d, path, value)
    items = {**(overrides or {}), **kwargs}
    for key, value in items.items():
        if key in SECTIONS and (isinstance(value, Mapping) or dataclasses.is_dataclass(value)):
            sec = to_dict(value) if dataclasses.is_dataclass(value) else dict(value)
            for k, v in sec.items():
                _set(d, f"{key}.{k}", v)
            continue
        path = key if key in paths else short.get(key)
        if path is None:
            raise ValueError(f"overrides: unknown config fields [{key!r}]; expected a dotted path such as 'train.steps' "
                             "or a field name")
        _set(d, path, list(value) if isinstance(value, tuple) else value)
    return from_dict(d)


_PRESET_FILE_KEYS = {"base", "overrides", "about"}


def _plain(value):
    return list(value) if isinstance(value, tuple) else value


def write_preset_file(path: str | os.PathLike, base: str, overrides: Mapping[str, object], about: dict | None = None) -> Path:
    """Writes a preset file: JSON ``{"base": <preset>, "overrides": {<dotted path>: value}, "about": {...}}``.

    The overrides are checked first (:func:`make_config`); ``about`` is free-form provenance (e.g. the sweep it came
    from) that loading ignores. The file is replaced atomically.

    Example:
        >>> import tempfile, os
        >>> f = write_preset_file(os.path.join(tempfile.mkdtemp(), "best.json"), "test", {"planner.horizon": 6})
        >>> preset_file_config(f).planner.horizon
        6
    """
    from meta_mbrl.io import atomic_path

    make_config(base, overrides)
    doc = {"base": base, "overrides": {k: _plain(v) for k, v in overrides.items()}}
    if about:
        doc["about"] = about
    with atomic_path(path) as tmp:
        Path(tmp).write_text(json.dumps(doc, indent=2) + "\n")
    return Path(path)


def load_preset_file(path: str | os.PathLike) -> tuple[str, dict]:
    """The ``(base preset, overrides)`` of a preset file written by :func:`write_preset_file` (or by hand).

    Raises:
        FileFormatError: naming the file, if it cannot be read, is not such a document, or its values are invalid.
    """
    from meta_mbrl.errors import FileFormatError

    path = Path(path)
    try:
        doc = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise FileFormatError(f"preset_file: cannot read {str(path)!r}: {e}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("base"), str) or not isinstance(doc.get("overrides", {}), dict) \
            or set(doc) - _PRESET_FILE_KEYS:
        raise FileFormatError(f"preset_file: {str(path)!r}: expected a JSON object {{\"base\": <preset name>, "
                              f"\"overrides\": {{<dotted path>: value}}}} (optional \"about\"), got "
                              f"{sorted(doc) if isinstance(doc, dict) else type(doc).__name__}")
    overrides = dict(doc.get("overrides", {}))
    try:
        make_config(doc["base"], overrides)
    except (ValueError, TypeError) as e:
        raise FileFormatError(f"preset_file: {str(path)!r} holds invalid settings: {e}") from None
    return doc["base"], overrides


def preset_file_config(path: str | os.PathLike, overrides: Mapping[str, object] | None = None) -> RunConfig:
    """The config of a preset file, with ``overrides`` (dotted paths) on top of the file's values."""
    base, file_overrides = load_preset_file(path)
    return make_config(base, {**file_overrides, **(overrides or {})})


def learner_kwargs(cfg: RunConfig) -> dict:
    """The chosen learner's constructor arguments from its family's section (plain keyword arguments)."""
    fam = FAMILY_OF[cfg.learner.name]
    kw = to_dict(getattr(cfg.learner, fam))
    if fam == "maml" and cfg.learner.name != "maml":  # fomaml / metasgd fix their own flag
        kw.pop("first_order"), kw.pop("meta_sgd")
    return kw


def model_kwargs(cfg: RunConfig) -> dict:
    """DynamicsMLP arguments besides the dims and ``hidden``."""
    return dict(activation=cfg.model.activation, gaussian=cfg.model.gaussian, reward_weight=cfg.model.reward_weight)


@functools.cache
def field_docs(cls) -> dict[str, str]:
    """The attribute docstrings of a dataclass (the string literal after each field); parsed once per class."""
    import ast
    import inspect
    import textwrap

    tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    body = tree.body[0].body
    docs = {}
    for node, nxt in zip(body, body[1:]):
        if isinstance(node, ast.AnnAssign) and isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant):
            docs[node.target.id] = " ".join(str(nxt.value.value).split())
    return docs


def run_environment() -> dict:
    """What a run's numbers depend on besides its config: package versions, torch's threads, the git commit.

    Stable across runs on one machine (no timestamps), so two runs' ``config.json`` files compare equal.
    """
    import platform
    import subprocess
    from importlib import metadata

    import torch

    versions = {}
    for pkg in ("meta-mbrl", "torch", "numpy", "pandas", "gymnasium", "metaworld", "mujoco"):
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = None
    repo = Path(__file__).resolve().parents[2]
    commit = None
    try:
        out = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
        if out.returncode == 0:
            commit = out.stdout.strip()
            dirty = subprocess.run(["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
                                   capture_output=True, text=True, timeout=10).stdout.strip()
            commit += "-dirty" if dirty else ""
    except (OSError, subprocess.SubprocessError):
        commit = None
    return {"versions": versions, "python": platform.python_version(), "torch_threads": torch.get_num_threads(),
            "platform": platform.platform(), "git_commit": commit,
            "cublas_workspace_config": os.environ.get("CUBLAS_WORKSPACE_CONFIG")}
