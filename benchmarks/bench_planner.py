"""Planner speed, side by side in one run: model FLOP/s inside CEM against plain matmul, and MPC latency.

Setting (Meta-World shapes, PETS-style CEM): DynamicsMLP(39, 4, hidden=(200, 200, 200)); CEM with
population 500, horizon 15, 5 iterations; MPPI (population 500, 5 iterations) and random shooting
(population 2500) get the same budget of 2,500 imagined sequences per action. FLOPs count
``2 * rows * in * out`` per linear layer. Every case is timed in interleaved rounds (each round calls
every case) and the median over rounds is reported, so machine noise hits all cases alike.

Rows of the FLOP/s table: plain ``torch.matmul`` at the GEMM size of one model call (the reference),
``model.predict`` alone on the same calls (what the planner cannot go below), ``CEM.plan`` (counting
model FLOPs only), and a hand-fused forward of the same MLP (normalizers folded into the first and
last layers, no concat, in-place SiLU; same outputs to 1e-6) as a ceiling for this network.

Second table, planner speed per action at the new (TD-MPC2-style) defaults against today's CEM
500x15x5, each an ``MPCController.act`` for ``--envs`` envs planned at once: (a) CEM population 500,
horizon 15, 5 iterations on the 3x200 model (the reference); (b) MPPI population 64 + 24 proposals
from a policy MLP 39-128-128-4 (tanh, Gaussian pre-tanh noise) rolled through the model, horizon 3,
4 iterations, a terminal value MLP 39-128-128-1, same model; (c) the same on a 2x128 world model;
(d) the policy alone (one forward). FLOPs count the linear layers of the model, value and policy
nets. The target: planning at the new defaults costs at most 1/5 of today's CEM per action.

    python benchmarks/bench_planner.py [--threads N] [--device cpu] [--rounds 3] [--envs 10] [--budget 60]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from _common import report

from meta_mbrl import AdaptedModel, DynamicsMLP
from meta_mbrl.planning import CEM, MPPI, MPCController, RandomShooting, make_objective
from meta_mbrl.planning.objective import CPU_MAX_ROWS

OBS, ACT, HIDDEN = 39, 4, (200, 200, 200)
POP, HORIZON, ITERS = 500, 15, 5
# the new defaults (TD-MPC2-style value-guided planning)
NEW_POP, NEW_PROPOSALS, NEW_HORIZON, NEW_ITERS, NET_HIDDEN, SMALL_HIDDEN = 64, 24, 3, 4, (128, 128), (128, 128)


def interleaved(cases: dict, rounds: int, budget_s: float, sync=lambda: None) -> tuple[dict[str, float], int]:
    """Median seconds per call of each ``name: (fn, repeat)`` case over interleaved rounds.

    Runs ``rounds`` rounds, but starts no new round once ``budget_s`` seconds have passed (at least
    one round): on a loaded machine two-thread BLAS calls can slow down tenfold.
    """
    start = time.perf_counter()
    for fn, _ in cases.values():  # warm-up
        fn()
    times = {k: [] for k in cases}
    done = 0
    while done < rounds and (done == 0 or time.perf_counter() - start < budget_s):
        done += 1
        for k, (fn, repeat) in cases.items():
            sync()
            t = time.perf_counter()
            for _ in range(repeat):
                fn()
            sync()
            times[k].append((time.perf_counter() - t) / repeat)
    return {k: statistics.median(v) for k, v in times.items()}, done


def fused_forward(model: DynamicsMLP):
    """A hand-fused forward of ``model`` (reference ceiling; same outputs as ``model.predict``)."""
    o = model.obs_dim
    with torch.no_grad():
        w = [lay.weight.detach().clone() for lay in model.layers]
        b = [lay.bias.detach().clone() for lay in model.layers]
        w_obs = (w[0][:, :o] / model.obs_norm.std).contiguous()
        w_act = w[0][:, o:].contiguous()
        b0 = b[0] - w_obs @ model.obs_norm.mean
        scale = torch.cat([model.delta_norm.std, model.reward_norm.std])
        shift = torch.cat([model.delta_norm.mean, model.reward_norm.mean])
        w_out, b_out = w[-1] * scale[:, None], b[-1] * scale + shift

    def forward(obs, act):
        h = F.silu(torch.addmm(b0, obs, w_obs.t()).addmm_(act, w_act.t()), inplace=True)
        for i in range(1, len(w) - 1):
            h = F.silu(F.linear(h, w[i], b[i]), inplace=True)
        out = F.linear(h, w_out, b_out)
        return obs + out[:, :o], out[:, o]
    return forward


def mlp(sizes: tuple[int, ...], device: torch.device) -> torch.nn.Sequential:
    """A SiLU MLP ``sizes[0] -> ... -> sizes[-1]`` (linear output), in eval mode."""
    layers: list[torch.nn.Module] = []
    for i in range(len(sizes) - 1):
        layers.append(torch.nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(sizes) - 2:
            layers.append(torch.nn.SiLU())
    return torch.nn.Sequential(*layers).to(device).eval()


def linear_flops(layers, rows: int) -> int:
    """``2 * rows * in * out`` summed over the linear layers."""
    return sum(2 * rows * lay.in_features * lay.out_features for lay in layers if isinstance(lay, torch.nn.Linear))


def defaults_table(model: DynamicsMLP, obs: np.ndarray, args, dev: torch.device, sync) -> None:
    """Planner speed per action at the new defaults (MPPI 64+24 x H3 x 4 with value and policy prior) against CEM 500x15x5."""
    b = obs.shape[0]
    low, high = -np.ones(ACT, np.float32), np.ones(ACT, np.float32)
    small = DynamicsMLP(OBS, ACT, hidden=SMALL_HIDDEN).to(dev).eval()
    policy_net, value_net = mlp((OBS, *NET_HIDDEN, ACT), dev), mlp((OBS, *NET_HIDDEN, 1), dev)
    g = torch.Generator(device=dev).manual_seed(1)

    def policy(o: torch.Tensor) -> torch.Tensor:  # sampled actions: Gaussian noise before the tanh
        mu = policy_net(o)
        return torch.tanh(mu + 0.3 * torch.randn(mu.shape, generator=g, device=mu.device))

    def value(s: torch.Tensor) -> torch.Tensor:
        return value_net(s)[..., 0]

    def new_mpc() -> MPCController:
        return MPCController(MPPI(low, high, NEW_HORIZON, population=NEW_POP, iterations=NEW_ITERS, seed=0, device=dev),
                             num_envs=b, discount=0.99, device=dev, policy_samples=NEW_PROPOSALS)

    cem = MPCController(CEM(low, high, HORIZON, population=POP, iterations=ITERS, seed=0, device=dev), num_envs=b, device=dev)
    big, little = new_mpc(), new_mpc()
    obs_t = torch.as_tensor(obs, device=dev)

    def policy_alone():
        with torch.inference_mode():
            policy(obs_t)

    cases = {
        "cem": (lambda: cem.act(obs, model), 1),
        "new_big": (lambda: big.act(obs, model, value=value, policy=policy), 3),
        "new_small": (lambda: little.act(obs, small, value=value, policy=policy), 3),
        "policy": (policy_alone, 30),
    }
    t, done = interleaved(cases, args.rounds, args.budget, sync)
    n_all = NEW_POP + NEW_PROPOSALS
    cem_flops = linear_flops(model.layers, ITERS * HORIZON * POP * b)

    def new_flops(m: DynamicsMLP) -> int:  # planning rollouts + the policy's rollout through the model, value, policy
        return (linear_flops(m.layers, NEW_ITERS * NEW_HORIZON * n_all * b + (NEW_HORIZON - 1) * NEW_PROPOSALS * b)
                + linear_flops(value_net, NEW_ITERS * n_all * b) + linear_flops(policy_net, NEW_HORIZON * NEW_PROPOSALS * b))

    flops = {"cem": cem_flops, "new_big": new_flops(model), "new_small": new_flops(small), "policy": linear_flops(policy_net, b)}
    names = {
        "cem": f"(a) CEM {POP}x{HORIZON}x{ITERS}, model 3x200 (today)",
        "new_big": f"(b) MPPI {NEW_POP}+{NEW_PROPOSALS} policy x H{NEW_HORIZON} x {NEW_ITERS} it, value, model 3x200",
        "new_small": f"(c) MPPI {NEW_POP}+{NEW_PROPOSALS} policy x H{NEW_HORIZON} x {NEW_ITERS} it, value, model 2x128",
        "policy": "(d) policy alone, one forward",
    }
    out = [{"impl": names[k], "envs": b, "ms_per_action": 1e3 * t[k], "MFLOP_per_action": flops[k] / 1e6,
            "ratio_to_cem": t[k] / t["cem"], "flop_ratio_to_cem": flops[k] / cem_flops} for k in cases]
    report(pd.DataFrame(out), "planner_defaults",
           f"Planner speed per action at the new defaults against today's CEM {POP}x{HORIZON}x{ITERS}: MPCController.act "
           f"for {b} envs at once, median of {done} interleaved rounds, device {dev}")
    ok = max(t["new_big"], t["new_small"]) <= t["cem"] / 5
    print(f"target (new defaults <= 1/5 of CEM per action): {'met' if ok else 'NOT met'} "
          f"(b) {t['new_big'] / t['cem']:.3f}, (c) {t['new_small'] / t['cem']:.3f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--envs", type=int, default=10)
    ap.add_argument("--budget", type=float, default=60.0, help="seconds after which no new round starts")
    ap.add_argument("--tables", default="speed,defaults",
                    help="comma-separated tables to run: speed (FLOP/s and MPC latency), defaults (new defaults vs CEM)")
    args = ap.parse_args()
    tables = set(args.tables.split(","))
    if not tables or not tables <= {"speed", "defaults"}:
        ap.error(f"--tables: expected a comma-separated subset of speed,defaults, got {args.tables!r}")
    if args.threads:
        torch.set_num_threads(args.threads)
    dev = torch.device(args.device)
    sync = (lambda: torch.cuda.synchronize(dev)) if dev.type == "cuda" else (lambda: None)
    torch.manual_seed(0)
    model = DynamicsMLP(OBS, ACT, hidden=HIDDEN).to(dev).eval()
    b = args.envs
    g = torch.Generator(device=dev).manual_seed(0)
    adapted = AdaptedModel(model, {k: v.detach().expand(b, *v.shape) + 0.01 * torch.randn(b, *v.shape, generator=g, device=dev)
                                   for k, v in model.named_parameters()}, num_tasks=b)
    obs = np.random.default_rng(0).normal(size=(b, OBS)).astype(np.float32)
    low, high = -np.ones(ACT, np.float32), np.ones(ACT, np.float32)
    flop_per_row = sum(2 * lay.in_features * lay.out_features for lay in model.layers)
    planners = {
        "CEM": lambda: CEM(low, high, HORIZON, population=POP, iterations=ITERS, seed=0, device=dev),
        "MPPI": lambda: MPPI(low, high, HORIZON, population=POP, iterations=ITERS, seed=0, device=dev),
        "random shooting": lambda: RandomShooting(low, high, HORIZON, population=POP * ITERS, seed=0, device=dev),
    }
    if "speed" not in tables:
        defaults_table(model, obs, args, dev, sync)
        return
    fused = fused_forward(model)

    # ---- 1. model FLOP/s inside CEM planning against plain matmul at the GEMM size of one model call
    cases, flops, rows = {}, {}, {}
    for envs in (1, b):
        repeat = 3 if envs == 1 else 1
        cem = planners["CEM"]()
        objective = make_objective(model, torch.as_tensor(obs[:envs], device=dev))
        init = cem.initial_mean(envs)
        chunk = min(POP, max(1, CPU_MAX_ROWS // envs)) if dev.type == "cpu" else POP  # what imagine() does
        rows[envs] = per_call = chunk * envs
        flops[f"cem{envs}"] = flops[f"pred{envs}"] = flops[f"fused{envs}"] = ITERS * HORIZON * POP * envs * flop_per_row
        cases[f"cem{envs}"] = (lambda cem=cem, o=objective, i=init: cem.plan(o, i), repeat)
        # the same model calls as the planner's rollouts: ITERS * HORIZON calls per chunk of candidates
        inputs = [(torch.randn(envs, min(chunk, POP - i), OBS, device=dev), torch.randn(envs, min(chunk, POP - i), ACT, device=dev))
                  for i in range(0, POP, chunk)]

        def predict_alone(inputs=inputs):
            with torch.inference_mode():
                for _ in range(ITERS * HORIZON):
                    for o_in, a_in in inputs:
                        model.predict(o_in, a_in)

        flat = [(o.reshape(-1, OBS), a.reshape(-1, ACT)) for o, a in inputs]

        def fused_alone(inputs=flat):
            with torch.inference_mode():
                for _ in range(ITERS * HORIZON):
                    for o_in, a_in in inputs:
                        fused(o_in, a_in)
        cases[f"pred{envs}"] = (predict_alone, repeat)
        cases[f"fused{envs}"] = (fused_alone, repeat)
        x, w = torch.randn(per_call, HIDDEN[0], device=dev), torch.randn(HIDDEN[0], HIDDEN[1], device=dev)
        n_mm = max(1, round(flops[f"cem{envs}"] / (2 * per_call * HIDDEN[0] * HIDDEN[1])))
        flops[f"mm{envs}"] = n_mm * 2 * per_call * HIDDEN[0] * HIDDEN[1]

        def matmuls(x=x, w=w, n=n_mm):
            with torch.inference_mode():
                for _ in range(n):
                    torch.matmul(x, w)
        cases[f"mm{envs}"] = (matmuls, repeat)

    # ---- 2. latency of MPCController.act: 1 env, B envs batched, and the naive per-env loop
    for name, make in planners.items():
        one, batched = MPCController(make(), num_envs=1, device=dev), MPCController(make(), num_envs=b, device=dev)
        cases[f"act|{name}|1|batched|shared"] = (lambda c=one: c.act(obs[:1], model), 3)
        cases[f"act|{name}|{b}|batched|shared"] = (lambda c=batched: c.act(obs, model), 1)
    loop = [MPCController(planners["CEM"](), num_envs=1, device=dev) for _ in range(b)]
    batched_a = MPCController(planners["CEM"](), num_envs=b, device=dev)
    loop_a = [MPCController(planners["CEM"](), num_envs=1, device=dev) for _ in range(b)]
    per_env = [adapted[i] for i in range(b)]
    cases[f"act|CEM|{b}|loop|shared"] = (lambda: [c.act(obs[i:i + 1], model) for i, c in enumerate(loop)], 1)
    cases[f"act|CEM|{b}|batched|adapted"] = (lambda: batched_a.act(obs, adapted), 1)
    cases[f"act|CEM|{b}|loop|adapted"] = (lambda: [c.act(obs[i:i + 1], per_env[i]) for i, c in enumerate(loop_a)], 1)

    t, done = interleaved(cases, args.rounds, args.budget, sync)
    out = []
    nan = float("nan")
    for envs in (1, b):
        mm = flops[f"mm{envs}"] / t[f"mm{envs}"]
        for key, impl in ((f"mm{envs}", f"torch.matmul ({rows[envs]}x200)@(200x200)"),
                          (f"pred{envs}", "model.predict alone, same calls"),
                          (f"cem{envs}", "CEM.plan (model FLOPs only)"),
                          (f"fused{envs}", "hand-fused MLP forward (ceiling)")):
            gf = flops[key] / t[key]
            out.append({"benchmark": f"FLOP/s, {envs} env(s), {rows[envs]} rows/call", "impl": impl, "envs": envs,
                        "ms": 1e3 * t[key], "GFLOP/s": gf / 1e9, "vs_matmul": gf / mm, "speedup_vs_loop": nan})
    for key, sec in t.items():
        if not key.startswith("act|"):
            continue
        _, name, envs, mode, which = key.split("|")
        envs = int(envs)
        desc = "one model" if which == "shared" else (f"AdaptedModel num_tasks={b}" if mode == "batched" else "per-env AdaptedModel")
        loop_key = f"act|{name}|{envs}|loop|{which}"
        out.append({"benchmark": f"MPC act latency, {envs} env(s)",
                    "impl": f"{name}, {'batched' if mode == 'batched' else 'per-env loop'}, {desc}", "envs": envs,
                    "ms": 1e3 * sec, "GFLOP/s": POP * ITERS * HORIZON * envs * flop_per_row / sec / 1e9, "vs_matmul": nan,
                    "speedup_vs_loop": t[loop_key] / sec if mode == "batched" and loop_key in t else nan})
    report(pd.DataFrame(out), "planner", f"Planner speed: {OBS}-{ACT} 3x200 SiLU MLP, H={HORIZON}, {POP * ITERS} sequences/action, "
                                          f"median of {done} interleaved rounds, device {dev}")
    if "defaults" in tables:
        defaults_table(model, obs, args, dev, sync)


if __name__ == "__main__":
    main()
