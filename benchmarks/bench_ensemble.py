"""Ensemble speed, side by side in one run: stacked + vmapped members against a Python loop over them.

Setting (Meta-World shapes): DynamicsMLP(39, 4, hidden=(200, 200, 200)), ensembles of E members.
Every case is timed in interleaved rounds (each round calls every case once per repeat) and the
median over rounds is reported, so machine noise hits all cases alike. Rows:

- ``adapt``: ``Ensemble.adapt`` with ``adapt_mode="vmap"`` (one ``torch.func.vmap`` over stacked
  state, column ``vmap``) against ``"loop"`` (each member's ``adapt``, stacked), for one task and
  for 64 tasks (context K=32); and the single learner for reference.
- ``forward``: ``EnsembleAdaptedModel.predict_members`` (all members in one pass on stacked
  parameters, column ``vmap``) against a loop over ``member(e).predict``, at 64 rows per member,
  2,048 rows in all (what one planner call gets on CPU, ``CPU_MAX_ROWS``), and 2,048 per member.
- ``plan``: one CEM action (population 500, horizon 15, 5 iterations) with the single model, and
  with the ensemble under TS-1 / TS-inf (``P = E`` particles, so ``E`` times the model rows) and
  ``mean``; ``x single`` is the cost relative to the single model.

    python benchmarks/bench_ensemble.py [--threads 1] [--members 5] [--rounds 5]
"""

from __future__ import annotations

import argparse
import statistics
import time

import pandas as pd
import torch
from _common import report

from meta_mbrl.meta import make_learner
from meta_mbrl.planning import CEM, make_objective
from meta_mbrl.types import Transitions

OBS, ACT, HIDDEN, K = 39, 4, (200, 200, 200), 32


def interleaved(cases: dict, rounds: int) -> dict[str, float]:
    """Median seconds per call of each ``name: (fn, repeat)`` over ``rounds`` interleaved rounds."""
    for fn, _ in cases.values():
        fn()
    times: dict[str, list[float]] = {k: [] for k in cases}
    for _ in range(rounds):
        for k, (fn, repeat) in cases.items():
            t = time.perf_counter()
            for _ in range(repeat):
                fn()
            times[k].append((time.perf_counter() - t) / repeat)
    return {k: statistics.median(v) for k, v in times.items()}


def looped_forward(adapted, obs, act):
    """What the stacked forward replaces: each member's own forward, predictions stacked."""
    preds = [adapted.member(i).predict_unchecked(obs, act) for i in range(adapted.ensemble_size)]
    return torch.stack([p.next_obs for p in preds]), torch.stack([p.reward for p in preds])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--members", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--learners", nargs="+", default=["maml", "cadm"])
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    e = args.members
    g = torch.Generator().manual_seed(0)
    data = Transitions(torch.randn(64, K, OBS, generator=g), torch.rand(64, K, ACT, generator=g) * 2 - 1,
                       torch.randn(64, K, generator=g), torch.randn(64, K, OBS, generator=g))
    rows = []
    with torch.no_grad():
        for name in args.learners:
            single = make_learner(name, OBS, ACT, hidden=HIDDEN, seed=0)
            ens = make_learner(name, OBS, ACT, hidden=HIDDEN, seed=0, ensemble=e)

            def adapt(mode, ctx):
                ens.adapt_mode = mode
                return ens.adapt(ctx)

            for t, ctx, rep in ((1, data.index(0), 20), (64, data, 2)):
                res = interleaved({"single": (lambda: single.adapt(ctx), rep), "vmap": (lambda: adapt("vmap", ctx), rep),
                                   "loop": (lambda: adapt("loop", ctx), rep)}, args.rounds)
                rows.append({"case": f"adapt {name}, {t} task{'s' if t > 1 else ''}", "E": e,
                             "single_ms": res["single"] * 1e3, "ensemble_vmap_ms": res["vmap"] * 1e3,
                             "ensemble_loop_ms": res["loop"] * 1e3, "loop / vmap": res["loop"] / res["vmap"],
                             "vmap / single": res["vmap"] / res["single"]})
            adapted = ens.adapt(data.index(0))
            one = adapted.member(0)
            for total in (64 * e, 2048, 2048 * e):  # rows of one stacked call; 2048: a planner call on CPU
                n = total // e
                obs, act = torch.randn(n, OBS, generator=g), torch.rand(n, ACT, generator=g) * 2 - 1
                res = interleaved({"single": (lambda: one.predict_unchecked(obs, act), 20),
                                   "vmap": (lambda: adapted.predict_members_unchecked(obs, act), 20),
                                   "loop": (lambda: looped_forward(adapted, obs, act), 20)}, args.rounds)
                rows.append({"case": f"forward {name}, {n} rows x {e} members", "E": e, "single_ms": res["single"] * 1e3,
                             "ensemble_vmap_ms": res["vmap"] * 1e3, "ensemble_loop_ms": res["loop"] * 1e3,
                             "loop / vmap": res["loop"] / res["vmap"], "vmap / single": res["vmap"] / res["single"]})
        # planning: one CEM action per propagation mode
        ens = make_learner("maml", OBS, ACT, hidden=HIDDEN, seed=0, ensemble=e)
        adapted, single_model = ens.adapt(data.index(0)), ens.members[0].adapt(data.index(0))
        cem = CEM(-torch.ones(ACT), torch.ones(ACT), horizon=15, population=500, iterations=5, seed=0)
        obs0 = torch.randn(OBS, generator=g)
        cases = {"single": (lambda: cem.plan(make_objective(single_model, obs0)), 1)}
        for prop in ("ts1", "tsinf", "mean"):
            cases[prop] = (lambda p=prop: cem.plan(make_objective(adapted, obs0, propagation=p,
                                                                  generator=torch.Generator().manual_seed(0))), 1)
        res = interleaved(cases, args.rounds)
        for prop in ("ts1", "tsinf", "mean"):
            parts = e if prop != "mean" else 1
            rows.append({"case": f"plan CEM 500x15x5, {prop} ({parts} particle{'s' if parts > 1 else ''})", "E": e,
                         "single_ms": res["single"] * 1e3, "ensemble_vmap_ms": res[prop] * 1e3,
                         "ensemble_loop_ms": float("nan"), "loop / vmap": float("nan"),
                         "vmap / single": res[prop] / res["single"]})
    report(pd.DataFrame(rows), f"ensemble_{args.threads}thread",
           f"Ensemble (E={e}) vs single learner and vs a loop over members, median of {args.rounds} interleaved rounds")


if __name__ == "__main__":
    main()
