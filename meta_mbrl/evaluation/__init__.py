"""Evaluation: the few-shot model benchmark, and control scored by Meta-World's own evaluation."""

from meta_mbrl.evaluation.control import metaworld_evaluation, protocol_evaluation, random_agent_returns
from meta_mbrl.evaluation.kshot import (
    KShotData,
    fit_models,
    kshot_benchmark,
    load_kshot_data,
    prepare_kshot,
    save_kshot_data,
    summarize_kshot,
)

__all__ = ["kshot_benchmark", "prepare_kshot", "KShotData", "save_kshot_data", "load_kshot_data", "summarize_kshot",
           "fit_models", "metaworld_evaluation", "protocol_evaluation", "random_agent_returns"]
