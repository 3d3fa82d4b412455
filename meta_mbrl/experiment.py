"""The runs behind the CLI: build a learner from a config, train a run directory, benchmark it."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd

from meta_mbrl.config import TrainConfig, make_config, to_dict
from meta_mbrl.data import TaskBuffer, collect
from meta_mbrl.evaluation import kshot_benchmark, summarize_kshot
from meta_mbrl.io import atomic_path
from meta_mbrl.training import learner_from_checkpoint, load_checkpoint, meta_train

__all__ = ["build_learner", "build_planner", "build_agent", "select_tasks", "train_run", "kshot_run", "control_run", "write_csv"]


def build_learner(cfg: TrainConfig, obs_dim: int, act_dim: int):
    """The learner a config asks for (``cfg.learner``, any of ``meta_mbrl.meta.LEARNER_NAMES``), on a fresh network."""
    from meta_mbrl.config import learner_kwargs
    from meta_mbrl.meta import make_learner

    return make_learner(cfg.learner, obs_dim, act_dim, hidden=cfg.hidden, ensemble=cfg.ensemble,
                        model_kwargs=dict(gaussian=cfg.gaussian, reward_weight=cfg.reward_weight), **learner_kwargs(cfg))


def build_planner(cfg: TrainConfig, suite):
    """The planner a config asks for, over the suite's action bounds."""
    from meta_mbrl.planning import CEM, MPPI, RandomShooting

    common = dict(action_low=suite.action_low, action_high=suite.action_high, horizon=cfg.plan_horizon,
                  population=cfg.plan_population, seed=cfg.seed, device=cfg.device)
    if cfg.planner == "cem":
        return CEM(**common, iterations=cfg.plan_iterations)
    if cfg.planner == "mppi":
        return MPPI(**common, iterations=cfg.plan_iterations)
    if cfg.planner == "rs":
        return RandomShooting(**common)
    raise ValueError(f"planner: expected one of ['cem', 'mppi', 'rs'], got {cfg.planner!r}")


def build_agent(cfg: TrainConfig, learner, suite, num_envs: int):
    """A MetaMBRLAgent over ``learner`` with the config's planner and adaptation settings."""
    from meta_mbrl.agent import MetaMBRLAgent

    return MetaMBRLAgent(
        learner, build_planner(cfg, suite), num_envs=num_envs, online=cfg.control_online,
        context_size=cfg.control_context_size, explore_noise=cfg.control_explore_noise,
        adapt_opts={"steps": cfg.control_adapt_steps} if cfg.control_adapt_steps > 0 else None,
        particles=cfg.plan_particles or None, propagation=cfg.plan_propagation, seed=cfg.seed,
    )


def check_kshot_fits(cfg: TrainConfig, suite) -> None:
    """Fails before any training if the few-shot windows cannot fit in the suite's episodes."""
    need = max(cfg.kshot_ks) + cfg.kshot_eval_length
    if need > suite.max_episode_steps:
        raise ValueError(
            f"kshot_ks: the largest context ({max(cfg.kshot_ks)}) plus kshot_eval_length ({cfg.kshot_eval_length}) is {need} "
            f"transitions, more than the {suite.max_episode_steps}-step episodes of {suite.name}; e.g. --kshot-ks 8 16 24 "
            "--kshot-eval-length 16 on point-mass"
        )


def select_tasks(tasks, per_class: int) -> list:
    """The first ``per_class`` tasks of each class (all if ``per_class`` is 0), in suite order."""
    if per_class <= 0:
        return list(tasks)
    return [t for t in tasks if t.index < per_class]


def write_csv(df: pd.DataFrame, path: str | os.PathLike) -> Path:
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False)
    return Path(path)


def _print_kshot(df: pd.DataFrame, info: dict, env_steps: int, sources, out=print) -> None:
    table, gap = summarize_kshot(df)
    with pd.option_context("display.width", 200, "display.max_columns", 20, "display.precision", 4):
        out("\nFew-shot model benchmark on held-out test tasks (mean over tasks and evaluation points)")
        out(f"evaluation data: policy={info['eval_policy']}, {info['eval_env_steps']} env steps; "
            f"oracle data: {info['oracle_transitions_per_task']} transitions per task, "
            f"{info['oracle_env_steps']} env steps")
        out(f"meta-training data: {env_steps} env steps from {json.dumps(sources)}")
        out(table.to_string())
        out("\nFraction of the prior-to-oracle dyn_mse gap closed by adaptation, (prior - adapted) / (prior - oracle):")
        out(gap.to_string())
        gap_r = summarize_kshot(df, "reward_mse")[1]
        out("\nSame for reward_mse:")
        out(gap_r.to_string())


def train_run(cfg: TrainConfig, run_dir: str | os.PathLike, progress: bool = True, out=print) -> pd.DataFrame:
    """Collect on training tasks, meta-train, then benchmark on test tasks; resumes a killed run."""
    import task_suites

    run = Path(run_dir)
    run.mkdir(parents=True, exist_ok=True)
    _check_same_run(cfg, run / "config.json")
    with atomic_path(run / "config.json") as tmp:
        tmp.write_text(json.dumps(to_dict(cfg), indent=2))
    suite = task_suites.make(cfg.suite, seed=cfg.seed)
    check_kshot_fits(cfg, suite)
    out(f"suite {suite}")
    buf_path = run / "train_buffer.npz"
    if buf_path.exists():
        buffer = TaskBuffer.load(buf_path)
        out(f"resuming with the saved training data: {buffer}")
    else:
        tasks = select_tasks(suite.train_tasks, cfg.tasks_per_class)
        buffer = collect(suite, tasks, cfg.policy, episodes_per_task=cfg.episodes_per_task, seed=cfg.seed,
                         progress=progress)
        buffer.save(buf_path)
        out(f"collected {buffer}")
    learner = build_learner(cfg, suite.obs_dim, suite.act_dim)
    train_kwargs = dict(tasks_per_batch=cfg.tasks_per_batch, support=cfg.support, query=cfg.query, lr=cfg.outer_lr,
                        checkpoint_every=cfg.checkpoint_every, log_every=cfg.log_every, device=cfg.device,
                        tensorboard=cfg.tensorboard, config=to_dict(cfg), query_mode=cfg.query_mode)
    if cfg.mb_rounds > 1:
        from meta_mbrl.training import model_based_meta_train

        model_based_meta_train(
            learner, suite, select_tasks(suite.train_tasks, cfg.mb_tasks_per_class), buffer,
            lambda lr, n: build_agent(cfg, lr, suite, n), rounds=cfg.mb_rounds,
            steps_per_round=-(-cfg.steps // cfg.mb_rounds), run_dir=run, seed=cfg.seed, progress=progress, **train_kwargs,
        )
        out(f"model-based data loop: {cfg.mb_rounds} rounds, now {buffer}")
    else:
        meta_train(learner, buffer, steps=cfg.steps, run_dir=run, seed=cfg.seed, progress=progress, **train_kwargs)
    kshot = kshot_run(run, run / "kshot.csv", progress=progress, out=out, suite=suite, cfg=cfg)
    control_run(run, run / "control.csv", out=out, suite=suite, cfg=cfg)
    return kshot


# Fields that may change when a run directory is resumed: more steps, other benchmark settings.
_RESUMABLE = {"steps", "checkpoint_every", "log_every", "tensorboard", "device", "planner"}
_EVAL_PREFIXES = ("kshot_", "oracle_", "scratch_", "plan_", "control_")


def _check_same_run(cfg: TrainConfig, path: Path) -> None:
    if not path.exists():
        return
    old = json.loads(path.read_text())
    new = to_dict(cfg)
    diff = sorted(k for k in new if not k.startswith(_EVAL_PREFIXES) and k not in _RESUMABLE
                  and json.dumps(old.get(k)) != json.dumps(new[k]))
    if diff:
        changes = ", ".join(f"{k}: {old.get(k)!r} -> {new[k]!r}" for k in diff)
        raise ValueError(f"run_dir: {path.parent} holds a run with other settings ({changes}); "
                         "use a new --run-dir or the same settings to resume")


def _checkpoint_config(ckpt: dict, cfg: TrainConfig | None, overrides: dict) -> TrainConfig:
    """``cfg``, or else the config saved in the checkpoint, with the non-None ``overrides`` applied."""
    if cfg is None:
        known = set(TrainConfig.__dataclass_fields__)
        cfg = TrainConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in ckpt["config"].items() if k in known})
    return make_config("quick", **{**to_dict(cfg), **{k: v for k, v in overrides.items() if v is not None}})


def kshot_run(checkpoint: str | os.PathLike, out_csv: str | os.PathLike, progress: bool = True, out=print,
              suite=None, cfg: TrainConfig | None = None, **overrides) -> pd.DataFrame:
    """The few-shot benchmark of a checkpoint, with ``cfg`` or else the settings saved in it."""
    import task_suites

    ckpt = load_checkpoint(checkpoint)
    cfg = _checkpoint_config(ckpt, cfg, overrides)
    learner = learner_from_checkpoint(ckpt, device=cfg.device)
    suite = suite or task_suites.make(cfg.suite, seed=cfg.seed)
    tasks = select_tasks(suite.test_tasks, cfg.kshot_tasks_per_class)
    df, info = kshot_benchmark(
        learner, suite, tasks, ks=cfg.kshot_ks, policy=cfg.policy, eval_episodes=cfg.kshot_eval_episodes,
        windows=cfg.kshot_windows, eval_length=cfg.kshot_eval_length, oracle_transitions=cfg.oracle_transitions,
        oracle_steps=cfg.oracle_steps, scratch_steps=cfg.scratch_steps, seed=cfg.seed, progress=progress,
    )
    df["meta_train_env_steps"] = ckpt["env_steps"]
    write_csv(df, out_csv)
    _print_kshot(df, info, ckpt["env_steps"], ckpt["sources"], out=out)
    out(f"\nwrote {out_csv}")
    return df


def control_run(checkpoint: str | os.PathLike, out_csv: str | os.PathLike, out=print, suite=None,
                cfg: TrainConfig | None = None, **overrides) -> tuple[pd.DataFrame, dict]:
    """Control evaluation of a checkpoint on the suite's held-out tasks; prints and writes a table.

    Meta-World suites are scored by ``metaworld.evaluation.metalearning_evaluation``; other suites
    by the same protocol over their vector envs (mean evaluation return).
    """
    import task_suites

    ckpt = load_checkpoint(checkpoint)
    cfg = _checkpoint_config(ckpt, cfg, overrides)
    learner = learner_from_checkpoint(ckpt, device=cfg.device)
    suite = suite or task_suites.make(cfg.suite, seed=cfg.seed)
    df, info, judge = evaluate_control(cfg, learner, suite)
    df["planner"] = cfg.planner
    df["meta_train_env_steps"] = ckpt["env_steps"]
    write_csv(df, out_csv)
    with pd.option_context("display.width", 200, "display.precision", 3):
        out(f"\nControl on held-out test tasks, judged by {judge}")
        out(f"planner={cfg.planner} (horizon {cfg.plan_horizon}, population {cfg.plan_population}, "
            f"{cfg.plan_iterations} iterations); {info['adaptation_episodes']} adaptation episodes per sub-env, "
            f"{info['evaluation_episodes']} evaluation episodes per "
            + (f"test class (Meta-World's count) x {info['num_evals']} rounds of fresh goals, "
               f"{info['meta_batch_size']} sub-envs" if "num_evals" in info else "task"))
        out(df.drop(columns=["planner", "meta_train_env_steps"]).to_string(index=False))
        if "mean_success_rate" in info:
            out(f"mean success rate: {info['mean_success_rate']:.3f}   mean return: {info['mean_return']:.1f}")
        out(f"meta-training data: {ckpt['env_steps']} env steps from {json.dumps(ckpt['sources'])}")
        out(f"test-time env steps: {info['adapt_env_steps']} adaptation + {info['eval_env_steps']} evaluation "
            f"({info['seconds']:.0f} s)")
    out(f"wrote {out_csv}")
    return df, info


def evaluate_control(cfg: TrainConfig, learner, suite) -> tuple[pd.DataFrame, dict, str]:
    """Control of ``learner`` on the suite's held-out tasks with the config's planner and budget.

    Returns ``(df, info, judge)``; Meta-World suites are judged by ``metalearning_evaluation``.
    """
    from meta_mbrl.evaluation import metaworld_evaluation, protocol_evaluation

    max_steps = cfg.control_max_episode_steps or None
    if hasattr(suite, "make_benchmark_envs"):
        mbs = cfg.control_meta_batch_size or len(suite.test_classes)
        agent = build_agent(cfg, learner, suite, num_envs=mbs)
        df, info = metaworld_evaluation(
            agent, suite, num_evals=cfg.control_num_evals, adaptation_episodes=cfg.control_adaptation_episodes,
            evaluation_episodes=cfg.control_evaluation_episodes, meta_batch_size=mbs, max_episode_steps=max_steps,
            seed=cfg.seed,
        )
        return df, info, "metaworld.evaluation.metalearning_evaluation"
    tasks = list(suite.test_tasks)
    agent = build_agent(cfg, learner, suite, num_envs=len(tasks))
    df, info = protocol_evaluation(agent, suite, tasks, adaptation_episodes=cfg.control_adaptation_episodes,
                                   evaluation_episodes=cfg.control_evaluation_episodes, seed=cfg.seed)
    return df, info, "meta_mbrl.evaluation.protocol_evaluation (mean return; no success criterion)"


def learners_run(cfg: TrainConfig, names, out_csv: str | os.PathLike, control: bool = True, progress: bool = True,
                 out=print) -> pd.DataFrame:
    """``meta-mbrl bench learners``: every learner on the same data, seed, benchmark windows, oracles and planner.

    Writes ``out_csv`` (one row per learner) and ``<out_csv stem>.kshot.csv`` (the tidy few-shot rows).
    """
    import dataclasses

    import torch

    import task_suites
    from meta_mbrl.evaluation.learners import compare_learners
    from meta_mbrl.meta import LEARNER_NAMES

    unknown = [n for n in names if n not in LEARNER_NAMES]
    if unknown or not names:
        raise ValueError(f"learners: expected names from {'|'.join(LEARNER_NAMES)}, got {list(names)}")
    suite = task_suites.make(cfg.suite, seed=cfg.seed)
    check_kshot_fits(cfg, suite)
    buffer = collect(suite, select_tasks(suite.train_tasks, cfg.tasks_per_class), cfg.policy,
                     episodes_per_task=cfg.episodes_per_task, seed=cfg.seed, progress=progress)
    out(f"suite {suite}; training data {buffer}")

    def make(name):
        torch.manual_seed(cfg.seed)
        return build_learner(dataclasses.replace(cfg, learner=name, learner_kwargs="{}"), suite.obs_dim, suite.act_dim)

    def train(learner):
        return meta_train(learner, buffer, steps=cfg.steps, tasks_per_batch=cfg.tasks_per_batch, support=cfg.support,
                          query=cfg.query, lr=cfg.outer_lr, seed=cfg.seed, device=cfg.device, progress=progress,
                          log_every=min(cfg.log_every, cfg.steps), query_mode=cfg.query_mode)

    table, kshot = compare_learners(
        names, make, train, suite, select_tasks(suite.test_tasks, cfg.kshot_tasks_per_class), buffer,
        control=(lambda lr: evaluate_control(cfg, lr, suite)[:2]) if control else None, ks=cfg.kshot_ks,
        kshot_kwargs=dict(policy=cfg.policy, eval_episodes=cfg.kshot_eval_episodes, oracle_transitions=cfg.oracle_transitions,
                          oracle_steps=cfg.oracle_steps, windows=cfg.kshot_windows, eval_length=cfg.kshot_eval_length,
                          scratch_steps=cfg.scratch_steps),
        seed=cfg.seed, progress=progress, out=out,
    )
    table.insert(1, "suite", suite.name)
    table.insert(2, "ensemble", cfg.ensemble)
    table["meta_train_env_steps"] = buffer.env_steps
    table["steps"] = cfg.steps
    write_csv(table, out_csv)
    write_csv(kshot, Path(out_csv).with_suffix(".kshot.csv"))
    with pd.option_context("display.width", 250, "display.max_columns", 40, "display.precision", 4):
        out(f"\nLearners on {suite.name}: {cfg.steps} meta-train steps on {buffer.env_steps} env steps of {cfg.policy} data, "
            f"seed {cfg.seed}; few-shot columns are the adapted model on held-out tasks; latency with K=32")
        out(table.drop(columns=["suite", "meta_train_env_steps", "steps"]).to_string(index=False))
        if cfg.ensemble > 1:
            out(f"every learner is an ensemble of {cfg.ensemble} members; control plans with {cfg.plan_propagation} "
                f"trajectory sampling, {cfg.plan_particles or cfg.ensemble} particles")
    out(f"wrote {out_csv}")
    return table
