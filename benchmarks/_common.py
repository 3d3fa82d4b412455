"""Shared helpers for the benchmarks: timing by repeated runs, table printing, CSV output."""

from __future__ import annotations

import platform
import time
from pathlib import Path

import pandas as pd
import torch

RESULTS = Path(__file__).resolve().parent / "results"


def timeit(fn, repeat: int = 30, warmup: int = 5, rounds: int = 3) -> float:
    """Median over ``rounds`` of the mean seconds per call over ``repeat`` calls."""
    for _ in range(warmup):
        fn()
    means = []
    for _ in range(rounds):
        t = time.perf_counter()
        for _ in range(repeat):
            fn()
        means.append((time.perf_counter() - t) / repeat)
    return sorted(means)[len(means) // 2]


def machine() -> str:
    return f"{platform.processor() or platform.machine()}, torch {torch.__version__}, {torch.get_num_threads()} threads"


def report(df: pd.DataFrame, name: str, title: str) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.csv"
    df.to_csv(path, index=False)
    with pd.option_context("display.width", 200, "display.max_columns", 30, "display.precision", 3):
        print(f"\n{title}  [{machine()}]")
        print(df.to_string(index=False))
    print(f"wrote {path}")
    return path
