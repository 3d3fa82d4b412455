"""Command-line flags generated from the config sections: one argument group per section, the field's
docstring as help, choices for enumerated fields, and the defaults of the chosen preset (or of the
checkpoint, for commands that read one).

Flags are ``--<section PREFIX><field>`` (``--plan-horizon``, ``--control-num-evals``, ``--cadm-context-dim``)
plus a field's older names (``--inner-lr`` for ``--maml-inner-lr``, ``--learner`` for the learner's name).

Example:
    >>> import argparse
    >>> p = argparse.ArgumentParser()
    >>> add_config_flags(p, make_config("test"), sections=["planner"])
    >>> overrides_from_args(p.parse_args(["--plan-horizon", "7", "--planner", "mppi"]))
    {'planner.name': 'mppi', 'planner.horizon': 7}
"""

from __future__ import annotations

import argparse
import typing
from collections.abc import Sequence

from meta_mbrl.config import RunConfig, config_paths, field_docs, make_config, section_of

__all__ = ["add_config_flags", "overrides_from_args", "flag_of"]


def _leaf_value(cfg, path: str):
    for part in path.split("."):
        cfg = getattr(cfg, part)
    return cfg


def flag_of(path: str) -> str:
    """The main flag of a config path, e.g. ``"planner.horizon"`` -> ``"--plan-horizon"``."""
    cls, name = section_of(path), path.rsplit(".", 1)[-1]
    aliases = cls.__dataclass_fields__[name].metadata.get("aliases", ())
    if name == "name" and aliases:  # learner.name is --learner, planner.name is --planner
        return aliases[0]
    return "--" + (cls.PREFIX + name).replace("_", "-")


def _show(v) -> str:
    if isinstance(v, tuple):
        return " ".join(map(str, v))
    return str(v)


def add_config_flags(parser: argparse.ArgumentParser, defaults: RunConfig | None = None,
                     sections: Sequence[str] | None = None, default_note: str | None = None) -> None:
    """Adds a flag for every field of ``sections`` (dotted section names; None: all), grouped by section.

    Args:
        parser: where the flags go; their ``dest`` is the field's dotted path.
        defaults: the config whose values the help shows as defaults (e.g. the chosen preset's).
        sections: which sections (``"data"``, ``"learner"`` with its family sections, ``"run"`` for seed and device).
        default_note: shown instead of the default values (e.g. "the checkpoint's").
    """
    defaults = defaults or make_config("quick")
    groups: dict[str, argparse._ArgumentGroup] = {}
    seen: set[str] = set()
    for path, f in config_paths().items():
        sec = path.rsplit(".", 1)[0] if "." in path else "run"
        if sections is not None and not any(sec == s or sec.startswith(s + ".") for s in sections):
            continue
        if sec not in groups:
            cls = section_of(path)
            doc = (cls.__doc__ or "").strip().splitlines()[0] if cls is not RunConfig else "Run-wide settings."
            groups[sec] = parser.add_argument_group(f"{sec}", doc)
        cls, tp = section_of(path), f.type
        flags = list(dict.fromkeys([flag_of(path), *f.metadata.get("aliases", ())]))
        clash = seen.intersection(flags)
        if clash:  # pragma: no cover - a programming error in the sections
            raise RuntimeError(f"config flags {sorted(clash)} are generated twice")
        seen.update(flags)
        note = default_note or _show(_leaf_value(defaults, path))
        help_ = f"{field_docs(cls).get(f.name, '')} (default: {note})"
        kw: dict = dict(dest=path, default=None, help=help_)
        if tp is bool:
            kw["action"] = argparse.BooleanOptionalAction
        elif typing.get_origin(tp) is tuple:
            kw.update(type=int, nargs="+", metavar="N")
        elif typing.get_origin(tp) is typing.Literal:
            kw.update(choices=list(typing.get_args(tp)))
        else:
            kw.update(type=tp, metavar=f.name.upper())
        groups[sec].add_argument(*flags, **kw)


def overrides_from_args(args: argparse.Namespace) -> dict:
    """The config paths a parsed command line set (flags left out are absent), with lists as tuples."""
    out = {}
    for path in config_paths():
        v = getattr(args, path, None)
        if v is not None:
            out[path] = tuple(v) if isinstance(v, list) else v
    return out
