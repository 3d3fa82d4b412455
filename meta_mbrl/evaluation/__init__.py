"""Evaluation: the few-shot model benchmark (and, later, control through metaworld.evaluation)."""

from meta_mbrl.evaluation.kshot import fit_models, kshot_benchmark, summarize_kshot

__all__ = ["kshot_benchmark", "summarize_kshot", "fit_models"]
