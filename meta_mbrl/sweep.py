"""Hyperparameter sweeps with Optuna (an optional extra): several seeds per point, pruning, resumable storage.

A sweep searches over config fields by their dotted names with a small spec language, one ``path=kind:args`` per
dimension:

- ``train.outer_lr=log:1e-4:1e-2`` (log-uniform), ``learner.alpaca.half_life=float:4:32`` (uniform),
- ``planner.horizon=int:5:20`` (integers, ends included), ``train.support=logint:8:128`` (log-spaced integers),
- ``learner.name=choice:maml,alpaca``; tuples as ``model.hidden=choice:32x32,64x64x64``; booleans ``true,false``.

Each trial trains the toolkit's own run (:func:`~meta_mbrl.runs.train_run`: collect, meta-train, few-shot benchmark,
control) once per seed under ``OUT/trials/NNNN/seed<S>/`` and scores it by the objective (:func:`parse_objective`);
``OUT/trials.csv`` gets the per-trial mean over seeds with a 95% t-interval, ``OUT/best_preset.json`` the best
point as a preset file (``meta-mbrl train --preset-file OUT/best_preset.json``). The study lives in
``OUT/sweep.db`` (SQLite): running the same command again continues it; a trial that was running when a sweep was
killed is marked failed and its point is tried again first, resuming its seeds' run directories from their checkpoints.

While a seed meta-trains, each logged ``query_loss`` is reported to Optuna (negated for objectives that are
maximised; step ``i * train.steps + step`` for the i-th seed) and a MedianPruner may stop the trial there, through
``meta_train``'s callback.

Importing :mod:`meta_mbrl` does not import this module or Optuna.

Example:
    >>> dims = parse_space(["train.outer_lr=log:1e-4:1e-2", "model.hidden=choice:16x16,32x32"], "test")
    >>> [(d.path, d.kind) for d in dims], dims[1].choices
    ([('train.outer_lr', 'log'), ('model.hidden', 'choice')], ((16, 16), (32, 32)))
    >>> parse_space(["train.outr_lr=log:1e-4:1e-2"], "test")
    Traceback (most recent call last):
    ...
    ValueError: space: 'train.outr_lr=log:1e-4:1e-2': unknown config field 'train.outr_lr'; expected a dotted path such as 'planner.horizon'
    >>> parse_objective("kshot:dyn_mse@16")
    Objective(source='kshot', metric='dyn_mse', k=16, direction='minimize')
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from meta_mbrl.config import config_paths, make_config, short_names, write_preset_file

__all__ = ["Dimension", "Objective", "parse_space", "parse_objective", "t_interval", "sweep", "SWEEP_FILES"]

SWEEP_FILES = {"storage": "sweep.db", "results": "trials.csv", "best": "best_preset.json"}
_KINDS = ("log", "float", "int", "logint", "choice")
# two-sided 95% Student-t quantiles for 1..30 degrees of freedom (no scipy dependency); 1.96 beyond
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
         2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042)


def t_interval(values: Sequence[float]) -> tuple[float, float, float]:
    """Mean and 95% Student-t interval of a few values (seeds); the interval is NaN for one value.

    Example:
        >>> [round(v, 3) for v in t_interval([1.0, 2.0, 3.0])]
        [2.0, -0.484, 4.484]
    """
    x = np.asarray(values, dtype=float)
    mean = float(x.mean()) if len(x) else float("nan")
    if len(x) < 2:
        return mean, float("nan"), float("nan")
    t = _T975[len(x) - 2] if len(x) - 1 <= len(_T975) else 1.96
    half = t * float(x.std(ddof=1)) / math.sqrt(len(x))
    return mean, mean - half, mean + half


# ---------------------------------------------------------------------------------------------- the space
@dataclasses.dataclass(frozen=True)
class Dimension:
    """One searched config field: ``kind`` in log / float / int / logint (``low``..``high``) or choice (``choices``)."""

    path: str
    kind: str
    low: float | None = None
    high: float | None = None
    choices: tuple = ()

    def suggest(self, trial):
        """The config value an Optuna trial draws for this dimension."""
        if self.kind in ("log", "float"):
            return trial.suggest_float(self.path, self.low, self.high, log=self.kind == "log")
        if self.kind in ("int", "logint"):
            return trial.suggest_int(self.path, int(self.low), int(self.high), log=self.kind == "logint")
        labels = [_label(c) for c in self.choices]
        return self.value(trial.suggest_categorical(self.path, labels))

    def value(self, param):
        """The config value of an Optuna parameter value (a choice's label back to its value)."""
        if self.kind != "choice":
            return param
        return {_label(c): c for c in self.choices}[param]


def _label(v) -> str | int | float | bool | None:
    """An Optuna-storable label of a choice (tuples as ``32x32``)."""
    return "x".join(map(str, v)) if isinstance(v, tuple) else v


def _base_type(tp):
    if typing.get_origin(tp) in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return args[0] if len(args) == 1 else tp
    return tp


def _parse_choice(item: str, tp, spec: str):
    item = item.strip()
    if typing.get_origin(tp) is typing.Literal:
        if item not in typing.get_args(tp):
            raise ValueError(f"space: {spec!r}: expected choices among {list(typing.get_args(tp))}, got {item!r}")
        return item
    if tp is bool:
        if item.lower() not in ("true", "false"):
            raise ValueError(f"space: {spec!r}: expected true or false, got {item!r}")
        return item.lower() == "true"
    try:
        if typing.get_origin(tp) is tuple:
            return tuple(int(v) for v in item.split("x"))
        if tp in (int, float):
            return tp(item)
    except ValueError:
        raise ValueError(f"space: {spec!r}: expected {'NxN... integers' if typing.get_origin(tp) is tuple else tp.__name__}"
                         f" choices, got {item!r}") from None
    return item


def parse_space(specs: Sequence[str], preset: str = "quick", overrides: Mapping[str, object] | None = None) -> list[Dimension]:
    """The dimensions of ``path=kind:args`` specs (see the module docstring), each checked against the config.

    Args:
        specs: one spec per searched field.
        preset / overrides: the sweep's base config; both ends of every range and every choice must make a valid config
            with it (so a bad bound fails before any training).

    Raises:
        ValueError: starting ``space:`` and naming the spec: unknown field, a kind that does not fit the field's type,
            an empty or reversed range, a non-positive log bound, an invalid value, a field given twice, or ``seed``
            (seeds are the sweep's ``seeds``).
    """
    if isinstance(specs, str):
        specs = [specs]
    paths, short = config_paths(), short_names()
    out: list[Dimension] = []
    for spec in specs:
        if not isinstance(spec, str) or "=" not in spec or ":" not in spec.split("=", 1)[1]:
            raise ValueError(f"space: {spec!r}: expected 'path=kind:args', e.g. 'train.outer_lr=log:1e-4:1e-2' or "
                             "'learner.name=choice:maml,alpaca'")
        name, rest = (s.strip() for s in spec.split("=", 1))
        path = name if name in paths else short.get(name)
        if path is None:
            raise ValueError(f"space: {spec!r}: unknown config field {name!r}; expected a dotted path such as "
                             "'planner.horizon'")
        if path == "seed":
            raise ValueError(f"space: {spec!r}: the seed is not searched; give the seeds to run per point (--seeds)")
        if any(d.path == path for d in out):
            raise ValueError(f"space: {spec!r}: {path} is searched twice")
        kind, _, args = rest.partition(":")
        tp = _base_type(paths[path].type)
        if kind not in _KINDS:
            raise ValueError(f"space: {spec!r}: expected a kind among {list(_KINDS)}, got {kind!r}")
        if kind == "choice":
            items = [a for a in args.split(",") if a.strip()]
            if not items:
                raise ValueError(f"space: {spec!r}: expected at least one choice")
            values = tuple(dict.fromkeys(_parse_choice(a, tp, spec) for a in items))
            dim = Dimension(path, kind, choices=values)
        else:
            numeric = {"log": (float,), "float": (float,), "int": (int,), "logint": (int,)}[kind]
            if tp not in numeric:
                fits = "choice" if tp not in (int, float) else ("log, float or choice" if tp is float else "int, logint or choice")
                raise ValueError(f"space: {spec!r}: {path} is a {getattr(tp, '__name__', tp)} field; expected kind {fits}, "
                                 f"got {kind!r}")
            bounds = args.split(":")
            try:
                if len(bounds) != 2:
                    raise ValueError
                low, high = (numeric[0](b) for b in bounds)
            except ValueError:
                raise ValueError(f"space: {spec!r}: expected {kind}:LOW:HIGH with {numeric[0].__name__} bounds, got "
                                 f"{args!r}") from None
            if not (math.isfinite(low) and math.isfinite(high) and low < high):
                raise ValueError(f"space: {spec!r}: expected finite LOW < HIGH, got {low} and {high}")
            if kind in ("log", "logint") and low <= 0:
                raise ValueError(f"space: {spec!r}: expected LOW > 0 on a log scale, got {low}")
            values = (low, high)
            dim = Dimension(path, kind, low=low, high=high)
        given = overrides or {}
        clash = [k for k in given if k == path or short.get(k) == path]
        if clash:
            raise ValueError(f"space: {spec!r}: {path} is also set by {clash[0]!r}; search it or fix it, not both")
        for v in values:
            try:
                make_config(preset, {**given, path: v})
            except ValueError as e:
                raise ValueError(f"space: {spec!r}: {e}") from None
        out.append(dim)
    if not out:
        raise ValueError("space: expected at least one 'path=kind:args' spec, got none")
    return out


# ---------------------------------------------------------------------------------------------- the objective
@dataclasses.dataclass(frozen=True)
class Objective:
    """What a run is scored by: ``kshot:<metric>[@K]`` (the adapted learner's error at K, default the largest K;
    minimised), ``control:return`` / ``control:success`` (maximised) or ``train:query_loss`` (the last logged
    meta-training query loss; minimised)."""

    source: str
    metric: str
    k: int | None
    direction: str

    def __str__(self) -> str:
        return f"{self.source}:{self.metric}" + (f"@{self.k}" if self.k is not None else "")

    def value(self, run: Path, cfg) -> float:
        """This objective's value for a finished run directory."""
        if self.source == "kshot":
            df = pd.read_csv(run / "kshot.csv")
            k = self.k if self.k is not None else max(cfg.kshot.ks)
            rows = df[(df["method"] == "adapted") & (df["k"] == k)]
            return float(rows[self.metric].mean())
        if self.source == "control":
            df = pd.read_csv(run / "control.csv")
            column = {"return": "eval_return", "success": "success_rate"}[self.metric]
            if column not in df or df[column].isna().all():
                raise ValueError(f"objective: control:{self.metric}: the control table of {run} has no {column!r} values "
                                 f"(suite {cfg.data.suite!r}); use control:return")
            return float(df[column].mean())
        return float(pd.read_csv(run / "train_log.csv")[self.metric].iloc[-1])


_OBJECTIVES = {("kshot", "dyn_mse"): "minimize", ("kshot", "reward_mse"): "minimize", ("kshot", "dyn_mse_h10"): "minimize",
               ("control", "return"): "maximize", ("control", "success"): "maximize",
               ("train", "query_loss"): "minimize"}


def parse_objective(spec: str, ks: Sequence[int] | None = None) -> Objective:
    """The :class:`Objective` of ``source:metric[@K]``; ``ks``: the few-shot Ks the runs score (K must be one).

    Raises:
        ValueError: naming ``objective`` and the choices.
    """
    names = [f"{s}:{m}" for s, m in _OBJECTIVES]
    head, _, k = str(spec).partition("@")
    source, _, metric = head.partition(":")
    if (source, metric) not in _OBJECTIVES:
        raise ValueError(f"objective: expected one of {names} (kshot ones optionally @K), got {spec!r}")
    if k and source != "kshot":
        raise ValueError(f"objective: @K applies to kshot objectives only, got {spec!r}")
    try:
        k_val = int(k) if k else None
    except ValueError:
        raise ValueError(f"objective: expected an integer K after '@', got {spec!r}") from None
    if k_val is not None and ks is not None and k_val not in ks:
        raise ValueError(f"objective: K={k_val} is not among the benchmark's kshot.ks {list(ks)}")
    return Objective(source, metric, k_val, _OBJECTIVES[(source, metric)])


# ---------------------------------------------------------------------------------------------- the sweep
def _optuna():
    try:
        import optuna
    except ImportError:
        from meta_mbrl.evaluation.plots import OptionalDependencyError

        raise OptionalDependencyError("sweep: needs optuna; install it with pip install 'optuna>=4,<5' "
                                      "(or the dev extra)") from None
    return optuna


def _results(study, dims: list[Dimension]) -> pd.DataFrame:
    rows = []
    for t in study.get_trials(deepcopy=False):
        u = t.user_attrs
        row = {"trial": t.number, "state": t.state.name.lower()}
        row.update({d.path: _label(d.value(t.params[d.path])) if d.path in t.params else None for d in dims})
        row.update({"mean": u.get("mean"), "ci_lo": u.get("ci_lo"), "ci_hi": u.get("ci_hi"), "seeds": u.get("seeds_done"),
                    "values": " ".join(f"{v:.6g}" for v in u.get("values", [])), "pruned_at": u.get("pruned_at"),
                    "seconds": u.get("seconds"), "note": u.get("note", ""), "run_dir": u.get("run_dir")})
        rows.append(row)
    return pd.DataFrame(rows)


def _ended(study) -> int:
    """Trials that count towards the requested number: complete, pruned, or failed by divergence (not killed ones)."""
    st = _optuna().trial.TrialState
    return sum(1 for t in study.get_trials(deepcopy=False)
               if t.state in (st.COMPLETE, st.PRUNED) or (t.state == st.FAIL and "diverged" in t.user_attrs))


def sweep(base_preset: str, space: Sequence[str], *, trials: int, seeds: Sequence[int] = (0, 1),
          objective: str = "kshot:dyn_mse", out: str | Path, overrides: Mapping[str, object] | None = None,
          study_name: str | None = None, storage: str | None = None, sweep_seed: int = 0, prune: bool = True,
          progress: bool = False, log=print) -> pd.DataFrame:
    """Runs (or continues) a sweep until ``trials`` trials have ended; returns the trials table.

    Args:
        base_preset: the preset the points change (``"test"``, ``"quick"``).
        space: ``path=kind:args`` specs (:func:`parse_space`).
        trials: trials in total, counting those of earlier runs of the same sweep (complete, pruned, or diverged).
        seeds: run seeds per point; a trial's value is their mean, with a 95% t-interval in the table.
        objective: :func:`parse_objective` spec.
        out: the sweep's folder: ``sweep.db``, ``trials.csv``, ``best_preset.json``, ``trials/NNNN/seed<S>/``.
        overrides: fixed settings on top of the preset (dotted paths), e.g. ``{"data.suite": "point-mass"}``.
        study_name: the study's name in the storage (default: the folder's name).
        storage: an Optuna RDB URL (default: ``sqlite:///OUT/sweep.db``).
        sweep_seed: seeds the sampler (offset by the number of trials already in the study, so a resumed sweep does
            not redraw the points of the first run).
        prune: report meta-training's query loss to a MedianPruner that may stop unpromising trials.
        progress / log: progress bars of the runs; where the sweep's one-line notes go (each run's own output goes to
            its run directory's ``sweep.log``).

    Raises:
        ValueError: a bad space, objective, seeds or trials (naming the argument), or a storage that holds this
            study with other settings.
        OptionalDependencyError: optuna is not installed.
    """
    from meta_mbrl.errors import DivergenceError
    from meta_mbrl.runs import train_run, write_csv
    from meta_mbrl.training.rundir import RunDirLock

    overrides = dict(overrides or {})
    base_cfg = make_config(base_preset, overrides)
    dims = parse_space(space, base_preset, overrides)
    obj = parse_objective(objective, base_cfg.kshot.ks)
    if isinstance(trials, bool) or not isinstance(trials, int) or trials < 1:
        raise ValueError(f"trials: expected an integer >= 1, got {trials!r}")
    seeds = [int(s) for s in seeds]
    if not seeds or len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds: expected one or more distinct seeds, got {seeds}")
    optuna = _optuna()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    settings = {"base": base_preset, "overrides": {k: list(v) if isinstance(v, tuple) else v for k, v in overrides.items()},
                "space": list(space), "seeds": seeds, "objective": str(obj)}
    with RunDirLock(out):
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        storage = storage or f"sqlite:///{(out / SWEEP_FILES['storage']).resolve()}"
        name = study_name or out.resolve().name
        existing = {s.study_name: s for s in optuna.get_all_study_summaries(storage)}
        if name in existing and existing[name].user_attrs.get("sweep") != json.loads(json.dumps(settings)):
            raise ValueError(f"out: {out} holds sweep {name!r} with other settings ({existing[name].user_attrs.get('sweep')});"
                             " use the same settings to continue it, or a new --out / --study-name")
        n_before = existing[name].n_trials if name in existing else 0
        sampler = optuna.samplers.TPESampler(seed=sweep_seed + n_before, n_startup_trials=min(10, max(2, trials // 2)))
        pruner = (optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=base_cfg.train.log_every)
                  if prune else optuna.pruners.NopPruner())
        study = optuna.create_study(study_name=name, storage=storage, load_if_exists=True, direction=obj.direction,
                                    sampler=sampler, pruner=pruner)
        study.set_user_attr("sweep", settings)
        # a trial left running by a killed sweep: failed, and its point tried again first in its own run directories
        for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
            study.tell(t.number, state=optuna.trial.TrialState.FAIL)
            study.enqueue_trial(t.params, user_attrs={"retry_of": t.number, "run_dir": t.user_attrs.get("run_dir")})
            log(f"trial {t.number} was running when the sweep stopped: its point is tried again")
        if n_before:
            log(f"continuing sweep {name!r}: {_ended(study)} of {trials} trials ended")

        started: list[int] = []

        def run_trial(trial) -> float:
            started.append(trial.number)
            t0 = time.perf_counter()
            point = {d.path: d.suggest(trial) for d in dims}
            run_dir = Path(trial.user_attrs.get("run_dir") or out / "trials" / f"{trial.number:04d}")
            trial.set_user_attr("run_dir", str(run_dir))
            sign = 1.0 if obj.direction == "minimize" else -1.0
            values: list[float] = []
            for i, seed in enumerate(seeds):
                cfg = make_config(base_preset, {**overrides, **point, "seed": seed})
                run = run_dir / f"seed{seed}"
                run.mkdir(parents=True, exist_ok=True)

                def report(step: int, row: dict, i=i, steps=cfg.train.steps) -> None:
                    if not prune or "query_loss" not in row or not math.isfinite(row["query_loss"]):
                        return
                    at = i * steps + step
                    trial.report(sign * row["query_loss"], at)
                    if trial.should_prune():
                        trial.set_user_attr("pruned_at", f"seed {seed} step {step}")
                        raise optuna.TrialPruned(f"pruned at seed {seed}, step {step}")

                with open(run / "sweep.log", "a") as fh:
                    try:
                        train_run(cfg, run, progress=progress, out=lambda *a: print(*a, file=fh), callback=report)
                    except DivergenceError as e:
                        trial.set_user_attr("diverged", True)
                        trial.set_user_attr("note", f"seed {seed} diverged: {str(e).split(';')[0]}")
                        trial.set_user_attr("seconds", round(time.perf_counter() - t0, 1))
                        raise
                    except optuna.TrialPruned:
                        trial.set_user_attr("seconds", round(time.perf_counter() - t0, 1))
                        raise
                values.append(obj.value(run, cfg))
                mean, lo, hi = t_interval(values)
                trial.set_user_attr("values", values)
                trial.set_user_attr("seeds_done", len(values))
                trial.set_user_attr("mean", mean), trial.set_user_attr("ci_lo", lo), trial.set_user_attr("ci_hi", hi)
            trial.set_user_attr("seconds", round(time.perf_counter() - t0, 1))
            return float(np.mean(values))

        while _ended(study) < trials:
            study.optimize(run_trial, n_trials=1, catch=(DivergenceError,))
            t = study.trials[started[-1]]
            shown = f"{obj}={t.value:.6g}" if t.state == optuna.trial.TrialState.COMPLETE else t.user_attrs.get(
                "pruned_at", t.user_attrs.get("note", ""))
            log(f"trial {t.number}: {t.state.name.lower()} {shown} {t.params}")
            write_csv(_results(study, dims), out / SWEEP_FILES["results"])
            _write_best(study, dims, base_preset, overrides, obj, out)
        table = _results(study, dims)
        write_csv(table, out / SWEEP_FILES["results"])
        _write_best(study, dims, base_preset, overrides, obj, out)
    return table


def _write_best(study, dims, base_preset, overrides, obj, out: Path) -> None:
    try:
        best = study.best_trial
    except ValueError:  # no complete trial yet
        return
    point = {d.path: d.value(best.params[d.path]) for d in dims}
    u = best.user_attrs
    about = {"sweep": study.study_name, "trial": best.number, "objective": str(obj), "direction": obj.direction,
             "mean": u.get("mean"), "ci95": [u.get("ci_lo"), u.get("ci_hi")], "values": u.get("values")}
    write_preset_file(out / SWEEP_FILES["best"], base_preset, {**overrides, **point}, about=about)
