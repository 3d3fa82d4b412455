"""MAML speed, side by side in one run: meta-train step against `higher`, and adapt latency.

Setting (issue #2): a 3x200 SiLU MLP on Meta-World shapes (obs 39, act 4), T=10 tasks, K=32
support and 32 query transitions, 2 inner SGD steps, second order.

    python benchmarks/bench_maml_speed.py [--threads N] [--device cpu]
"""

from __future__ import annotations

import argparse
import copy

import pandas as pd
import torch
from _common import report, timeit

from meta_mbrl import MAML, DynamicsMLP, TaskBatch, Transitions


def make_batch(t, k, obs_dim, act_dim, device):
    g = torch.Generator().manual_seed(0)
    tr = lambda: Transitions(torch.randn(t, k, obs_dim, generator=g), torch.randn(t, k, act_dim, generator=g),
                             torch.randn(t, k, generator=g), torch.randn(t, k, obs_dim, generator=g)).to(device)
    return TaskBatch(tr(), tr())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--tasks", type=int, default=10)
    ap.add_argument("--k", type=int, default=32)
    ap.add_argument("--inner-steps", type=int, default=2)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    import higher

    dev = torch.device(args.device)
    torch.manual_seed(0)
    model = DynamicsMLP(39, 4, hidden=(200, 200, 200)).to(dev)
    batch = make_batch(args.tasks, args.k, 39, 4, dev)
    rows = []

    higher_opt = torch.optim.Adam(model.parameters(), 1e-3)

    def higher_step(m=model, opt=higher_opt):
        opt.zero_grad()
        inner = torch.optim.SGD(m.parameters(), lr=0.01)
        for i in range(args.tasks):
            s, q = batch.support.index(i), batch.query.index(i)
            with higher.innerloop_ctx(m, inner, copy_initial_weights=False) as (f, d):
                for _ in range(args.inner_steps):
                    d.step(m.loss_from_output(f(s.obs, s.act), m.targets(s)))
                (m.loss_from_output(f(q.obs, q.act), m.targets(q)) / args.tasks).backward()
        opt.step()

    def ours(backend, first_order=False):
        learner = MAML(copy.deepcopy(model), inner_lr=0.01, inner_steps=args.inner_steps, backend=backend,
                       first_order=first_order)
        opt = torch.optim.Adam(learner.parameters(), 1e-3)

        def step():
            opt.zero_grad()
            learner.meta_loss(batch)[0].backward()
            opt.step()
        return step

    t_higher = timeit(higher_step, repeat=10)
    cases = [("higher (reference)", higher_step), ("meta_mbrl func (vmap+grad)", ours("func")),
             ("meta_mbrl batched (default)", ours("batched")), ("meta_mbrl batched, first-order", ours("batched", True))]
    for name, fn in cases:
        t = t_higher if fn is higher_step else timeit(fn, repeat=10)
        rows.append({"benchmark": "meta-train step", "impl": name, "ms": 1e3 * t, "speedup_vs_higher": t_higher / t})

    # adapt latency, one task, K context transitions, inner_steps SGD steps
    learner = MAML(copy.deepcopy(model), inner_lr=0.01, inner_steps=args.inner_steps)
    ctx = Transitions(*(x[0] for x in batch.support))
    names = list(learner.model.param_dict())

    def autograd_adapt():
        p = {k: v.detach().requires_grad_() for k, v in learner.model.param_dict().items()}
        for _ in range(args.inner_steps):
            g = torch.autograd.grad(learner.model.task_loss(p, ctx), list(p.values()))
            p = {k: (v - 0.01 * gi).detach().requires_grad_() for (k, v), gi in zip(p.items(), g)}
        return p

    def func_adapt():
        p = {k: v.detach() for k, v in learner.model.param_dict().items()}
        for _ in range(args.inner_steps):
            g = torch.func.grad(lambda q: learner.model.task_loss(q, ctx))(p)
            p = {k: p[k] - 0.01 * g[k] for k in names}
        return p

    batched_ctx = Transitions(*(torch.cat([x] * 7)[:64] for x in batch.support))
    t_auto = timeit(autograd_adapt, repeat=100)
    for name, fn in [("torch.autograd loop", autograd_adapt), ("torch.func.grad loop", func_adapt),
                     ("learner.adapt (analytic backward)", lambda: learner.adapt(ctx))]:
        t = t_auto if fn is autograd_adapt else timeit(fn, repeat=100)
        rows.append({"benchmark": f"adapt 1 task (K={args.k}, {args.inner_steps} steps)", "impl": name, "ms": 1e3 * t,
                     "speedup_vs_higher": float("nan")})
    t64 = timeit(lambda: learner.adapt(batched_ctx), repeat=20)
    rows.append({"benchmark": f"adapt 64 tasks batched (K={args.k}, {args.inner_steps} steps)",
                 "impl": "learner.adapt (analytic backward)", "ms": 1e3 * t64, "speedup_vs_higher": float("nan")})
    df = pd.DataFrame(rows)
    report(df, "maml_speed", f"MAML speed: 3x200 MLP, T={args.tasks}, K={args.k}, {args.inner_steps} inner steps")


if __name__ == "__main__":
    main()
