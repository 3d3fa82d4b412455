"""Evaluation: the few-shot model benchmark, control scored by Meta-World's own evaluation, plots and videos.

The plotting (:mod:`~meta_mbrl.evaluation.plots`, needs matplotlib) and video
(:mod:`~meta_mbrl.evaluation.video`, renders through MuJoCo) names are imported on first use, so
``import meta_mbrl.evaluation`` needs neither matplotlib nor an OpenGL backend.
"""

from importlib import import_module

from meta_mbrl.evaluation.control import combine_rounds, metaworld_evaluation, protocol_evaluation, random_agent_returns
from meta_mbrl.evaluation.data_stats import data_benchmark, data_stats
from meta_mbrl.evaluation.kshot import (
    KShotData,
    fit_models,
    kshot_benchmark,
    load_kshot_data,
    prepare_kshot,
    save_kshot_data,
    summarize_kshot,
)

_LAZY = {
    "plot_training_curve": "plots", "plot_kshot": "plots", "plot_control": "plots", "plot_run": "plots",
    "bootstrap_ci": "plots", "OptionalDependencyError": "plots", "plot_transfer": "plots", "write_transfer_png": "plots",
    "transfer_metrics": "transfer", "transfer_curves": "transfer", "transfer_table": "transfer",
    "RenderUnavailable": "video", "render_env": "video", "rollout_frames": "video", "save_gif": "video",
    "record_episodes": "video",
}

__all__ = ["kshot_benchmark", "prepare_kshot", "KShotData", "save_kshot_data", "load_kshot_data", "summarize_kshot",
           "fit_models", "data_stats", "data_benchmark", "metaworld_evaluation", "combine_rounds", "protocol_evaluation",
           "random_agent_returns", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(import_module(f"meta_mbrl.evaluation.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
