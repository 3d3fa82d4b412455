"""What the CLI's commands do, one function each: ``train_run``, ``collect_run``, ``kshot_run``, ``control_run``,
``video_run``, ``learners_run``, ``transfer_run``. Each turns a :class:`~meta_mbrl.config.RunConfig` into plain keyword arguments for
the library and reads top to bottom.

A run directory holds ``config.json`` (the config, the environment it ran in, and any changes made
on resume), ``train_buffer.npz``, ``checkpoint.pt``, ``train_log.csv``, ``kshot.csv``, ``control.csv``
and ``stages.json`` (the content keys of finished stages, so an unchanged stage is reused).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd

from meta_mbrl.config import CONFIG_FORMAT, RunConfig, from_dict, learner_kwargs, make_config, model_kwargs, run_environment, to_dict
from meta_mbrl.data import TaskBuffer, collect
from meta_mbrl.errors import DivergenceError, FileFormatError
from meta_mbrl.evaluation import kshot_benchmark
from meta_mbrl.io import atomic_path
from meta_mbrl.stages import StageCache, content_key
from meta_mbrl.training import learner_from_checkpoint, load_checkpoint, meta_train

__all__ = ["build_learner", "build_planner", "build_agent", "build_actor_critic", "build_value_agent", "load_value_agent",
           "agent_stage", "select_tasks", "train_run", "collect_run", "kshot_run",
           "control_run", "video_run", "video_tasks", "learners_run", "transfer_run", "data_run", "evaluate_control",
           "write_csv", "check_run_config",
           "seed_everything"]


# ---------------------------------------------------------------------------------------------- building blocks
def seed_everything(seed: int) -> None:
    """Seeds the global generators (torch, numpy, random) and asks torch for deterministic kernels.

    Every library call also gets the run's seed explicitly; this covers what has no seed argument.
    """
    import random

    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)


def build_learner(cfg: RunConfig, obs_dim: int, act_dim: int):
    """The learner a config asks for, on a fresh network initialised under the run's seed."""
    from meta_mbrl.meta import make_learner

    return make_learner(cfg.learner.name, obs_dim, act_dim, hidden=cfg.model.hidden, ensemble=cfg.learner.ensemble,
                        model_kwargs=model_kwargs(cfg), seed=cfg.seed, **learner_kwargs(cfg))


def build_hierarchical(cfg: RunConfig, suite, horizon: int, population: int, iterations: int, seed: int | None = None):
    """The hierarchical planner of the planner section's subgoal settings (the suite's subgoal dims and scale where the
    config leaves them 0), its low-level CEM of ``horizon`` / ``population`` / ``iterations``."""
    from meta_mbrl.planning import CEM, HierarchicalPlanner

    p = cfg.planner
    seed = cfg.seed if seed is None else seed
    dims = p.subgoal_dims or tuple(getattr(suite, "subgoal_dims", ()))
    if not dims:
        raise ValueError(f"planner.subgoal_dims: suite {suite.name!r} names no default subgoal dims; give them "
                         "(--plan-subgoal-dims, observation indices)")
    if max(dims) >= suite.obs_dim:
        raise ValueError(f"planner.subgoal_dims: expected observation indices < {suite.obs_dim} (the obs dim of "
                         f"{suite.name!r}), got {dims}")
    low = None
    if p.low_level == "cem":
        low = CEM(suite.action_low, suite.action_high, horizon=horizon, population=population, iterations=iterations,
                  seed=seed + 1, device=cfg.device)
    return HierarchicalPlanner(
        suite.action_low, suite.action_high, horizon, subgoal_dims=dims,
        subgoal_scale=p.subgoal_scale or getattr(suite, "subgoal_scale", 1.0), segment=p.segment,
        num_subgoals=p.num_subgoals, population=p.subgoal_population, iterations=p.subgoal_iterations,
        track_samples=p.track_samples, track_lookahead=p.track_lookahead, subgoal_every=p.subgoal_every, low=low,
        seed=seed, device=cfg.device)


def build_planner(cfg: RunConfig, suite):
    """The planner a config asks for, over the suite's action bounds."""
    from meta_mbrl.planning import CEM, MPPI, RandomShooting

    p = cfg.planner
    if p.name == "hierarchical":
        return build_hierarchical(cfg, suite, p.horizon, p.population, p.iterations)
    common = dict(action_low=suite.action_low, action_high=suite.action_high, horizon=p.horizon,
                  population=p.population, seed=cfg.seed, device=cfg.device)
    if p.name == "cem":
        return CEM(**common, iterations=p.iterations)
    if p.name == "mppi":
        return MPPI(**common, iterations=p.iterations)
    return RandomShooting(**common)


def adapt_opts(cfg: RunConfig) -> dict | None:
    """The ``adapt`` options of control (``control.adapt_steps``), checked against the learner before any work."""
    if cfg.control.adapt_steps <= 0:
        return None
    from meta_mbrl.meta import LEARNER_CLASSES

    accepted = getattr(LEARNER_CLASSES[cfg.learner.name], "ADAPT_OPTIONS", ("steps", "lr"))
    if "steps" not in accepted:
        raise ValueError(f"control.adapt_steps: {cfg.learner.name} adapts without gradient steps and takes no "
                         f"steps option (it accepts {list(accepted) or 'no options'}); got {cfg.control.adapt_steps}, "
                         "use 0")
    return {"steps": cfg.control.adapt_steps}


def build_agent(cfg: RunConfig, learner, suite, num_envs: int, bonus_weight: float = 0.0, reward_weight: float = 1.0):
    """A MetaMBRLAgent over ``learner`` with the config's planner and adaptation settings.

    ``bonus_weight`` / ``reward_weight`` weigh the ensemble-disagreement bonus and the predicted return in
    the planner's objective (``train.mb_bonus_weight`` / ``train.mb_reward_weight`` for the agent that
    collects in model-based rounds; evaluation keeps the defaults, reward only).
    """
    from meta_mbrl.agent import MetaMBRLAgent

    c = cfg.control
    return MetaMBRLAgent(
        learner, build_planner(cfg, suite), num_envs=num_envs, online=c.online, context_size=c.context_size,
        explore_noise=c.explore_noise, adapt_opts=adapt_opts(cfg), particles=cfg.planner.particles or None,
        propagation=cfg.planner.propagation, seed=cfg.seed, bonus_weight=bonus_weight, reward_weight=reward_weight,
        reward_fn=known_reward_fn(cfg, suite),
    )


def known_reward_fn(cfg: RunConfig, suite):
    """The suite's ``reward_fn`` if ``planner.known_reward`` is set (else None); a clear error if it has none."""
    if not cfg.planner.known_reward:
        return None
    fn = getattr(suite, "reward_fn", None)
    if fn is None:
        raise ValueError(f"planner.known_reward: expected a suite with a known reward function (suite.reward_fn: the "
                         f"MuJoCo HalfCheetah suites), got {getattr(suite, 'name', suite)!r}, which has none; plan with "
                         f"the learned reward (--no-plan-known-reward)")
    return fn


def build_actor_critic(cfg: RunConfig, suite):
    """The value and policy prior of the value-guided agent (``agent`` section), initialised under the run's seed."""
    import torch

    from meta_mbrl.models.actor_critic import ActorCritic

    a = cfg.agent
    with torch.random.fork_rng():
        torch.manual_seed(cfg.seed + 1)
        return ActorCritic(suite.obs_dim, suite.act_dim, suite.action_low, suite.action_high, hidden=a.hidden,
                           latent_dim=a.latent_dim, encoder_hidden=a.encoder_hidden, discount=a.discount,
                           reward_scale=a.reward_scale).to(cfg.device)


def build_value_agent(cfg: RunConfig, learner, actor_critic, suite, num_envs: int, seed: int | None = None):
    """A MetaMBRLAgent with the value and policy prior: the ``agent`` section's planner (policy proposals, terminal value)."""
    from meta_mbrl.agent import MetaMBRLAgent
    from meta_mbrl.planning import CEM, MPPI

    a, c = cfg.agent, cfg.control
    seed = cfg.seed if seed is None else seed
    if a.planner == "hierarchical":
        planner = build_hierarchical(cfg, suite, a.horizon, a.population, a.iterations, seed=seed)
    else:
        cls = MPPI if a.planner == "mppi" else CEM
        planner = cls(suite.action_low, suite.action_high, horizon=a.horizon, population=a.population,
                      iterations=a.iterations, seed=seed, device=cfg.device)
    return MetaMBRLAgent(learner, planner, num_envs=num_envs, adapt_opts=adapt_opts(cfg), seed=seed,
                         actor_critic=actor_critic, mode=a.mode, plan_share=a.plan_share, policy_samples=a.policy_samples,
                         online=c.online, context_size=c.context_size, reward_fn=known_reward_fn(cfg, suite))


def load_value_agent(run: Path, learner, device: str = "cpu"):
    """The actor-critic trained in ``run`` (``agent.pt``), with ``learner`` set to the prior it trained with; or None."""
    import torch

    from meta_mbrl.models.actor_critic import ActorCritic
    from meta_mbrl.training.agent_loop import AGENT_CHECKPOINT

    path = Path(run) / AGENT_CHECKPOINT
    if not path.exists():
        return None
    try:
        state = torch.load(path, map_location=device, weights_only=False)
        ac = ActorCritic(**state["actor_critic_kwargs"]).to(device)
        ac.load_state_dict(state["actor_critic"])
        learner.load_state_dict(state["learner"])
    except (KeyError, RuntimeError, ValueError, TypeError, EOFError, OSError) as e:
        raise FileFormatError(f"agent checkpoint: {str(path)!r} cannot be read as a value agent "
                              f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})") from None
    ac.eval()
    return ac


def agent_stage(cfg: RunConfig, suite, run: Path, learner, buffer: TaskBuffer, progress: bool = True, out=print):
    """Trains the value-guided agent in ``run`` (``agent.pt``, ``agent_buffer.npz``, ``agent_log.csv``); resumes."""
    from meta_mbrl.training.agent_loop import train_value_agent

    a, t = cfg.agent, cfg.train
    ac = build_actor_critic(cfg, suite)
    tasks = select_tasks(suite.train_tasks, a.tasks_per_class or cfg.data.tasks_per_class)
    evaluate = None
    if a.eval_every:
        def evaluate(steps: int) -> dict:
            return curve_point(cfg, learner, ac, suite)
    log = train_value_agent(
        learner, ac, suite, tasks, buffer,
        lambda lr, model, n, seed: build_value_agent(cfg, lr, model, suite, n, seed),
        env_steps=a.env_steps, tasks_per_round=a.tasks_per_round, episodes_per_round=a.episodes_per_round,
        updates_per_step=a.updates_per_step, batch_tasks=a.batch_tasks, batch_per_task=a.batch_per_task,
        context=a.context, nstep=a.nstep, lr=a.lr, tau=a.tau, model_steps=a.model_steps,
        model_kwargs=dict(tasks_per_batch=t.tasks_per_batch, support=t.support, query=t.query, lr=t.outer_lr,
                          grad_clip=t.grad_clip, query_mode=t.query_mode),
        run_dir=run, checkpoint_minutes=a.checkpoint_minutes, evaluate=evaluate, eval_every=a.eval_every,
        seed=cfg.seed, progress=progress, out=out)
    return ac, log


def curve_point(cfg: RunConfig, learner, ac, suite) -> dict:
    """One learning-curve point: the policy on every test class (one goal each), 1 adaptation + 1 scored episode."""
    import dataclasses

    quick = dataclasses.replace(cfg, agent=dataclasses.replace(cfg.agent, mode="policy"),
                                control=dataclasses.replace(cfg.control, num_evals=1, adaptation_episodes=1,
                                                            evaluation_episodes=1))
    was = ac.training
    ac.eval()
    try:
        df, info, _ = evaluate_control(quick, learner, suite, actor_critic=ac)
    finally:
        ac.train(was)
    return {"success": info.get("mean_success_rate", float(df["success_rate"].mean()) if "success_rate" in df else float("nan")),
            "return": info.get("mean_return", float(df["eval_return"].mean()) if "eval_return" in df else float("nan"))}


def check_kshot_fits(cfg: RunConfig, suite) -> None:
    """Fails before any training if the few-shot windows cannot fit in the evaluation episodes.

    A context may span earlier episodes of the task (K up to the evaluation episodes' length), an evaluation
    segment lies within one episode.
    """
    k = cfg.kshot
    if k.eval_length > suite.max_episode_steps:
        raise ValueError(f"kshot.eval_length: expected at most the {suite.max_episode_steps}-step episodes of {suite.name}, "
                         f"got {k.eval_length}")
    need, have = max(k.ks) + k.eval_length, k.eval_episodes * suite.max_episode_steps
    if need > have:
        raise ValueError(
            f"kshot.ks: the largest context ({max(k.ks)}) plus kshot.eval_length ({k.eval_length}) is {need} "
            f"transitions, more than the {k.eval_episodes} evaluation episode(s) of {suite.max_episode_steps} steps of "
            f"{suite.name} hold ({have}); collect more (--kshot-eval-episodes {-(-need // suite.max_episode_steps) + 1}) "
            "or use smaller K"
        )


def check_before_work(cfg: RunConfig):
    """Everything that can be checked before collecting or training: the device, the suite, windows, options.

    Returns:
        The suite.
    """
    import task_suites
    from meta_mbrl.checks import check_device

    check_device("device", cfg.device)
    suite = task_suites.make(cfg.data.suite, seed=cfg.seed)
    if cfg.data.demo_episodes_per_task > 0:
        from meta_mbrl.data.demos import check_demo_tasks

        try:  # the demo track's own refusal (no scripted policies, a test task, a class without one), before any work
            check_demo_tasks(suite, select_tasks(suite.train_tasks, cfg.data.tasks_per_class))
        except ValueError as e:
            raise ValueError(f"data.demo_episodes_per_task: expected 0 on suite {suite.name!r} ({e}), got "
                             f"{cfg.data.demo_episodes_per_task}") from None
    check_kshot_fits(cfg, suite)
    adapt_opts(cfg)
    known_reward_fn(cfg, suite)  # a suite without a known reward refuses planner.known_reward before any work
    return suite


def select_tasks(tasks, per_class: int) -> list:
    """The first ``per_class`` tasks of each class (all if ``per_class`` is 0), in suite order."""
    if per_class <= 0:
        return list(tasks)
    return [t for t in tasks if t.index < per_class]


def write_csv(df: pd.DataFrame, path: str | os.PathLike) -> Path:
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False)
    return Path(path)


# ---------------------------------------------------------------------------------------------- config.json
# Settings that may change when a run directory is resumed: more steps, logging, and the evaluation stages.
_RESUMABLE = ("device", "train.steps", "train.checkpoint_every", "train.log_every", "train.tensorboard",
              "kshot.", "planner.", "control.", "agent.env_steps", "agent.checkpoint_minutes", "agent.eval_every",
              "agent.mode", "agent.planner", "agent.horizon", "agent.population", "agent.iterations", "agent.policy_samples")
# ... and, with resume_with_changes, the optimisation settings (not the data, the network or its shapes).
_OPTIMISATION = ("train.", "learner.maml.inner_lr", "learner.maml.inner_steps", "learner.maml.first_order",
                 "learner.reptile.inner_lr", "learner.reptile.inner_steps", "learner.reptile.inner_data",
                 "learner.multitask.inner_lr", "learner.multitask.inner_steps", "learner.multitask.first_order",
                 "learner.finetune.", "learner.pearl.kl_weight", "learner.cadm.prior_weight", "agent.lr", "agent.tau",
                 "agent.updates_per_step", "agent.batch_", "agent.context", "agent.model_steps", "agent.plan_share")


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def read_config_file(path: str | os.PathLike) -> dict:
    """Reads a run's ``config.json``; any failure is a FileFormatError naming the file."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise FileFormatError(f"config: cannot read {str(path)!r}: {e}") from None
    if not isinstance(doc, dict) or doc.get("format") != CONFIG_FORMAT or not isinstance(doc.get("config"), dict):
        raise FileFormatError(f"config: {str(path)!r} is not a meta_mbrl config file (expected format {CONFIG_FORMAT!r})")
    try:
        from_dict(doc["config"])
    except (ValueError, TypeError) as e:
        raise FileFormatError(f"config: {str(path)!r} holds an invalid config: {e}") from None
    return doc


def check_run_config(cfg: RunConfig, run: Path, resume_with_changes: bool = False, step: int | None = None) -> dict:
    """Compares ``cfg`` with the run directory's ``config.json`` and returns the document to write.

    A run directory resumes only with the settings it was started with, except the evaluation stages and
    the step budget; ``resume_with_changes`` also allows the optimisation settings (learning rates, inner
    steps, batch sizes: e.g. to continue a diverged run from its last good checkpoint), and records the
    change, with the step it was made at, in ``config.json``.

    Raises:
        ValueError: naming the settings that differ, and the flag that allows them where it would.
    """
    path = run / "config.json"
    doc = {"format": CONFIG_FORMAT, "config": to_dict(cfg), "environment": run_environment(), "changes": []}
    if not path.exists():
        return doc
    old = read_config_file(path)
    # through from_dict: a setting added since the run started (e.g. train.mb_bonus_weight) reads as its default
    before, after = _flatten(to_dict(from_dict(old["config"]))), _flatten(to_dict(cfg))
    diff = {k: (before.get(k), after[k]) for k in after if json.dumps(before.get(k)) != json.dumps(after[k])}
    fixed = {k: v for k, v in diff.items() if not k.startswith(_RESUMABLE)}
    optimisation = {k: v for k, v in fixed.items() if k.startswith(_OPTIMISATION)}
    blocked = {k: v for k, v in fixed.items() if k not in optimisation}
    show = lambda d: ", ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in d.items())  # noqa: E731
    if blocked:
        raise ValueError(f"run_dir: {run} holds a run with other settings ({show(blocked)}); use a new --run-dir or the "
                         "same settings to resume")
    if optimisation and not resume_with_changes:
        raise ValueError(f"run_dir: {run} holds a run with other optimisation settings ({show(optimisation)}); pass "
                         "--resume-with-changes to continue it from its last checkpoint with these settings (the change is "
                         "recorded in config.json), or use a new --run-dir")
    doc["changes"] = list(old.get("changes", []))
    if optimisation:
        doc["changes"].append({"at_step": step, "changes": {k: list(v) for k, v in optimisation.items()}})
    return doc


def _write_config(run: Path, doc: dict) -> None:
    with atomic_path(run / "config.json") as tmp:
        tmp.write_text(json.dumps(doc, indent=2) + "\n")


def _checkpoint_step(run: Path) -> int | None:
    return load_checkpoint(run)["step"] if (run / "checkpoint.pt").exists() else None


# ---------------------------------------------------------------------------------------------- train
def train_run(cfg: RunConfig, run_dir: str | os.PathLike, progress: bool = True, out=print,
              resume_with_changes: bool = False, workers: int | None = None, ray_address: str | None = None,
              dist=None, callback=None) -> pd.DataFrame | None:
    """Collect on training tasks, meta-train, then the few-shot benchmark and control; resumes a killed run.

    Every stage is reproducible from ``cfg.seed``: the same command on the same machine and thread
    count writes bit-identical files. A finished stage whose inputs are unchanged is reused. ``callback`` goes to
    :func:`~meta_mbrl.training.meta_train` (called at each log step; a truthy return ends meta-training there, and
    the run goes on to its evaluations; an exception it raises, such as a sweep's pruning, ends the run).

    ``workers`` / ``ray_address``: collect the training data and run control's task groups (Meta-World: its rounds) on Ray workers
    (:mod:`meta_mbrl.distributed`); the files are the same as without.

    With ``dist`` (a :class:`~meta_mbrl.distributed.ddp.DistContext`; ``meta-mbrl train --distributed``
    under ``torchrun``), rank 0 locks the run directory, checks and writes its config, collects (or
    loads) the training data and saves it; the other ranks wait for it, load that data, and meta-train
    data-parallel with it (:func:`~meta_mbrl.training.loop.meta_train` ``dist=``). The few-shot benchmark
    and control then run on rank 0 alone; the other ranks return None.
    """
    from meta_mbrl.training.rundir import RunDirLock

    suite = check_before_work(cfg)
    t = cfg.train
    if dist is not None:
        from meta_mbrl.distributed.ddp import agree, check_divisible

        check_divisible(t.tasks_per_batch, dist.world_size)
        if t.mb_rounds > 1:
            raise ValueError(f"mb_rounds: the model-based data loop (--mb-rounds {t.mb_rounds}) does not run data-parallel "
                             "yet; use --mb-rounds 1 with --distributed")
    run = Path(run_dir)
    buf_path = run / "train_buffer.npz"
    train_kwargs = dict(tasks_per_batch=t.tasks_per_batch, support=t.support, query=t.query, lr=t.outer_lr,
                        grad_clip=t.grad_clip, checkpoint_every=t.checkpoint_every, log_every=t.log_every,
                        device=cfg.device, tensorboard=t.tensorboard, config=to_dict(cfg), query_mode=t.query_mode,
                        support_max=t.support_max or None, callback=callback)
    if dist is not None and not dist.is_main:
        agree(dist, None)  # waits until rank 0 has locked the run dir and saved the training data
        buffer = TaskBuffer.load(buf_path)
        seed_everything(cfg.seed)
        learner = build_learner(cfg, suite.obs_dim, suite.act_dim)
        meta_train(learner, buffer, steps=t.steps, run_dir=run, seed=cfg.seed, progress=False, dist=dist, **train_kwargs)
        return None
    lock = RunDirLock(run)
    try:
        try:
            run.mkdir(parents=True, exist_ok=True)
            lock.acquire()
            doc = check_run_config(cfg, run, resume_with_changes, step=_checkpoint_step(run))
            _write_config(run, doc)
            seed_everything(cfg.seed)
            out(f"suite {suite}")
            if buf_path.exists():
                buffer = TaskBuffer.load(buf_path)
                out(f"resuming with the saved training data: {buffer}")
            else:
                buffer = _collect_train(cfg, suite, progress, workers, ray_address)
                buffer.save(buf_path)
                out(f"collected {buffer}")
        except BaseException as e:
            if dist is not None:
                agree(dist, e)  # the other ranks stop with this message
            raise
        if dist is not None:
            agree(dist, None)
            out(f"meta-training data-parallel on {dist.world_size} processes ({dist.backend}), "
                f"{t.tasks_per_batch // dist.world_size} of {t.tasks_per_batch} tasks per process")
        learner = build_learner(cfg, suite.obs_dim, suite.act_dim)
        try:
            if t.mb_rounds > 1:
                from meta_mbrl.training import model_based_meta_train

                model_based_meta_train(
                    learner, suite, select_tasks(suite.train_tasks, t.mb_tasks_per_class), buffer,
                    lambda lr, n: build_agent(cfg, lr, suite, n, t.mb_bonus_weight, t.mb_reward_weight),
                    rounds=t.mb_rounds, episodes_per_task=t.mb_episodes_per_task,
                    steps_per_round=-(-t.steps // t.mb_rounds), run_dir=run, seed=cfg.seed, progress=progress,
                    **train_kwargs,
                )
                out(f"model-based data loop: {t.mb_rounds} rounds, now {buffer}")
            else:
                meta_train(learner, buffer, steps=t.steps, run_dir=run, seed=cfg.seed, progress=progress, dist=dist,
                           **train_kwargs)
        except DivergenceError as e:
            raise DivergenceError(f"{e}. From the command line: re-run the same command with the changed settings (e.g. "
                                  f"--outer-lr {t.outer_lr / 3:.2g}) and --resume-with-changes") from None
        kshot = kshot_run(run, run / "kshot.csv", progress=progress, out=out, suite=suite, cfg=cfg)
        if cfg.agent.env_steps:
            agent_stage(cfg, suite, run, learner, buffer, progress=progress, out=out)
            out("\ntoday's agent (flat planner, no value), same prior and test protocol:")
            control_run(run, run / "control_flat.csv", out=out, suite=suite, cfg=cfg, progress=progress, flat=True,
                        workers=workers, ray_address=ray_address)
        control_run(run, run / "control.csv", out=out, suite=suite, cfg=cfg, progress=progress, workers=workers,
                    ray_address=ray_address)
    finally:
        lock.release()
    return kshot


def collect_tasks(cfg: RunConfig, suite, tasks, progress: bool = True, workers: int | None = None,
                  ray_address: str | None = None) -> TaskBuffer:
    """The config's exploration episodes on ``tasks`` (chunks of ``data.num_envs``): in this process, or with
    ``workers`` / ``ray_address`` on Ray workers (the same buffer)."""
    d = cfg.data
    num_envs = d.num_envs or None
    if workers is None and ray_address is None:
        return collect(suite, tasks, d.policy, episodes_per_task=d.episodes_per_task, seed=cfg.seed, num_envs=num_envs,
                       progress=progress)
    from meta_mbrl import distributed

    return distributed.collect(suite, tasks, d.policy, episodes_per_task=d.episodes_per_task, seed=cfg.seed,
                               num_envs=num_envs, workers=workers or 1, address=ray_address, progress=progress)


def _collect_train(cfg: RunConfig, suite, progress: bool, workers: int | None = None,
                   ray_address: str | None = None) -> TaskBuffer:
    """The training data: the exploration policy's episodes, then (``data.demo_episodes_per_task > 0``) the labelled
    demo track's on the same training tasks, each its own ``buffer.sources`` entry."""
    d = cfg.data
    tasks = select_tasks(suite.train_tasks, d.tasks_per_class)
    buffer = collect_tasks(cfg, suite, tasks, progress, workers, ray_address)
    if d.demo_episodes_per_task > 0:
        from meta_mbrl.data.demos import collect_demos

        collect_demos(suite, tasks, episodes_per_task=d.demo_episodes_per_task, noise=d.demo_noise, seed=cfg.seed,
                      buffer=buffer, progress=progress)
    return buffer


def collect_run(cfg: RunConfig, split: str, out_path: str | os.PathLike, progress: bool = True, out=print,
                workers: int | None = None, ray_address: str | None = None) -> TaskBuffer:
    """``meta-mbrl collect``: episodes of the config's exploration policy on a split's tasks, into one buffer file."""
    import task_suites

    if split not in ("train", "test"):
        raise ValueError(f"split: expected 'train' or 'test', got {split!r}")
    suite = task_suites.make(cfg.data.suite, seed=cfg.seed)
    seed_everything(cfg.seed)
    tasks = select_tasks(suite.train_tasks if split == "train" else suite.test_tasks, cfg.data.tasks_per_class)
    buf = collect_tasks(cfg, suite, tasks, progress, workers, ray_address)
    buf.save(out_path)
    out(f"wrote {buf} to {out_path}")
    return buf


def data_run(cfg: RunConfig, sources, out_csv: str | os.PathLike, progress: bool = True, out=print) -> pd.DataFrame:
    """``meta-mbrl bench data``: contact and coverage statistics of each data source on the suite's training tasks.

    Collects ``cfg.data.episodes_per_task`` episodes of every source in ``sources`` on the first
    ``cfg.data.tasks_per_class`` training tasks of each class (seed ``cfg.seed``, demo noise
    ``cfg.data.demo_noise``), prints the table of :func:`~meta_mbrl.evaluation.data_stats.data_benchmark`
    and writes it to ``out_csv``.

    Args:
        cfg: the run config (its data section and seed).
        sources: names from :data:`~meta_mbrl.evaluation.data_stats.DATA_SOURCES`.
        out_csv: CSV file to write.
        progress: show progress bars.
        out: where the table is printed.

    Returns:
        The table: one row per (class, source), then an ``"all classes"`` row per source.

    Raises:
        ValueError: an unknown source, or ``"demo"`` on a suite without scripted policies (point-mass).
    """
    import task_suites
    from meta_mbrl.evaluation.data_stats import data_benchmark

    suite = task_suites.make(cfg.data.suite, seed=cfg.seed)
    seed_everything(cfg.seed)
    tasks = select_tasks(suite.train_tasks, cfg.data.tasks_per_class)
    table = data_benchmark(suite, tasks, sources, episodes_per_task=cfg.data.episodes_per_task, seed=cfg.seed,
                           demo_noise=cfg.data.demo_noise, progress=progress)
    table.insert(0, "suite", suite.name)
    table["seed"] = cfg.seed
    write_csv(table, out_csv)
    with pd.option_context("display.width", 250, "display.max_columns", 40, "display.precision", 4):
        out(f"\nData sources on {suite.name} training tasks ({len(tasks)} tasks, {cfg.data.episodes_per_task} episode(s) "
            f"each, seed {cfg.seed}, demo noise {cfg.data.demo_noise}); object 1 = {suite.object_slices[:1]} of the "
            "observation, voxels of 1 cm")
        out(table.drop(columns=["suite", "seed"]).to_string(index=False))
    out(f"wrote {out_csv}")
    return table


def minari_export_run(buffer_path: str | os.PathLike, suite_name: str, dataset_id: str, *, seed: int = 0,
                      per_task: bool = False, root: str | os.PathLike | None = None, overwrite: bool = False,
                      out=print) -> list[str]:
    """``meta-mbrl data export``: a buffer file as Minari dataset(s) (:func:`~meta_mbrl.data.minari_io.export_minari`).

    ``suite_name`` and ``seed`` must be those the buffer was collected with (``meta-mbrl collect``'s
    ``--suite`` and ``--seed``): the seed sets the tasks' goals, which per-task datasets' env specs hold.
    """
    import task_suites
    from meta_mbrl.data.minari_io import export_minari

    buf = TaskBuffer.load(buffer_path)
    suite = task_suites.make(suite_name, seed=seed)
    ids = export_minari(buf, suite, dataset_id, per_task=per_task, root=root, overwrite=overwrite)
    out(f"wrote {buf} as {len(ids)} Minari dataset(s): {' '.join(ids)}")
    return ids


def minari_import_run(dataset_ids, out_path: str | os.PathLike, *, root: str | os.PathLike | None = None,
                      out=print) -> TaskBuffer:
    """``meta-mbrl data import``: Minari dataset(s) into one buffer file (:func:`~meta_mbrl.data.minari_io.import_minari`)."""
    from meta_mbrl.data.minari_io import import_minari

    buf = import_minari(dataset_ids, root=root)
    buf.save(out_path)
    out(f"wrote {buf} to {out_path}")
    return buf


# ---------------------------------------------------------------------------------------------- a checkpoint's config
def checkpoint_config(ckpt: dict, cfg: RunConfig | None = None, overrides: dict | None = None) -> RunConfig:
    """``cfg``, or else the config saved in the checkpoint, with the dotted ``overrides`` applied."""
    if cfg is None:
        saved = ckpt.get("config") or {}
        try:
            base = from_dict(saved) if saved else RunConfig()
        except (ValueError, TypeError) as e:
            raise FileFormatError(f"checkpoint: the config saved in it is not valid for this version: {e}") from None
    else:
        base = cfg
    d = _flatten(to_dict(base))
    d.update({k: v for k, v in (overrides or {}).items() if v is not None})
    return make_config("quick", d)


def _run_dir_of(checkpoint) -> Path:
    p = Path(checkpoint)
    return p if p.is_dir() else p.parent


def _kshot_key(cfg: RunConfig, ckpt: dict) -> str:
    """What the few-shot evaluation data and oracles depend on: the suite, its tasks, the policy, their budget, the
    seed, and the network's architecture and normalizers (the oracles take them)."""
    norms = {k: v for k, v in ckpt["state_dict"].items() if "." in k and "norm" in k.split(".")[-2]}
    return content_key(suite=cfg.data.suite, seed=cfg.seed, policy=cfg.data.policy, model=ckpt["model_kwargs"],
                       kshot={k: v for k, v in to_dict(cfg.kshot).items() if k in ("tasks_per_class", "eval_episodes",
                                                                                    "oracle_transitions", "oracle_steps")},
                       normalizers=norms)


# ---------------------------------------------------------------------------------------------- few-shot benchmark
def _kshot_data_dir(run: Path, ckpt: dict, cfg: RunConfig) -> tuple[Path, str]:
    """Where a checkpoint's few-shot data and oracles live: ``kshot_data/`` for the suite it was trained on,
    ``kshot_data-<suite>/`` for another suite's held-out tasks (``bench kshot --suite``); and their stage name."""
    import re

    trained_on = ((ckpt.get("config") or {}).get("data") or {}).get("suite")
    if trained_on in (None, cfg.data.suite):
        return run / "kshot_data", "kshot_data"
    slug = re.sub(r"[^A-Za-z0-9]+", "-", cfg.data.suite).strip("-")[:40]
    return run / f"kshot_data-{slug}-{content_key(suite=cfg.data.suite)[:8]}", f"kshot_data:{cfg.data.suite}"


def kshot_summary(df: pd.DataFrame, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The few-shot table with intervals (per K and method), and the guarded gap closed for dynamics and reward.

    Returns:
        ``(table, gaps)``: :func:`~meta_mbrl.evaluation.kshot_stats.kshot_table` rows, and one row per
        (metric, K) of :func:`~meta_mbrl.evaluation.kshot_stats.guarded_gap`.
    """
    from meta_mbrl.evaluation.kshot_stats import guarded_gap, kshot_table

    table = kshot_table(df, seed=seed)
    gaps = pd.concat({m: guarded_gap(df, m, seed=seed) for m in ("dyn_mse", "reward_mse")}, names=["metric"])
    return table, gaps


def _print_kshot(df: pd.DataFrame, info: dict, env_steps: int, sources, out=print, seed: int = 0) -> pd.DataFrame:
    from meta_mbrl.evaluation.kshot_stats import format_ci

    table, gaps = kshot_summary(df, seed)
    with pd.option_context("display.width", 250, "display.max_columns", 20, "display.max_colwidth", 200):
        out("\nFew-shot model benchmark on held-out test tasks: mean [95% interval, bootstrap over tasks and windows]")
        out(f"tasks: {df['task'].nunique()}, windows per task: {int(df['windows'].max())}, "
            f"evaluation steps per window: {int(df['eval_length'].max())}; evaluation data: policy={info['eval_policy']}, "
            f"{info['eval_env_steps']} env steps; oracle data: {info['oracle_transitions_per_task']} transitions per task, "
            f"{info['oracle_env_steps']} env steps")
        out(f"meta-training data: {env_steps} env steps from {json.dumps(sources)}")
        out(format_ci(table, ["dyn_mse", "reward_mse", "dyn_mse_moved", "reward_mse_moved"]).to_string())
        if "moved_frac" in table.columns:
            out(f"share of evaluation transitions that move an object: {table['moved_frac'].iloc[0]:.3f} "
                "(*_moved columns: errors on those transitions only)")
        out("\nFraction of the prior-to-oracle gap closed by adaptation, on tasks where the oracle beats the prior by 5% "
            "or more (others listed apart):")
        out(gaps.to_string(float_format=lambda v: f"{v:.3f}"))
    return table


def kshot_run(checkpoint: str | os.PathLike, out_csv: str | os.PathLike, progress: bool = True, out=print,
              suite=None, cfg: RunConfig | None = None, overrides: dict | None = None) -> pd.DataFrame:
    """The few-shot benchmark of a checkpoint, with ``cfg`` or else the settings saved in it.

    Its evaluation data and oracles are kept in the run directory (``kshot_data/``) keyed by their inputs, and
    the table itself is reused when the checkpoint and the benchmark settings are unchanged. Holds the run
    directory's lock while it runs.
    """
    from meta_mbrl.training.rundir import RunDirLock

    with RunDirLock(_run_dir_of(checkpoint)):
        return _kshot_run(checkpoint, out_csv, progress, out, suite, cfg, overrides)


def _kshot_run(checkpoint, out_csv, progress, out, suite, cfg, overrides) -> pd.DataFrame:
    import task_suites
    from meta_mbrl.checks import check_device
    from meta_mbrl.evaluation.kshot import load_kshot_data, prepare_kshot, save_kshot_data

    ckpt = load_checkpoint(checkpoint)
    cfg = checkpoint_config(ckpt, cfg, overrides)
    check_device("device", cfg.device)
    run = _run_dir_of(checkpoint)
    cache = StageCache(run)
    key = content_key(checkpoint=ckpt["state_dict"], kshot=to_dict(cfg.kshot),
                      suite=cfg.data.suite, seed=cfg.seed, policy=cfg.data.policy)
    out_csv = Path(out_csv)
    stage = _stage_name("kshot", out_csv, run)
    if cache.fresh(stage, key, out_csv):
        df = pd.read_csv(out_csv)
        out(f"\nfew-shot benchmark: inputs unchanged, reusing {out_csv}")
        return df
    learner = learner_from_checkpoint(ckpt, device=cfg.device)
    suite = suite or task_suites.make(cfg.data.suite, seed=cfg.seed)
    tasks = select_tasks(suite.test_tasks, cfg.kshot.tasks_per_class)
    k = cfg.kshot
    data_key = _kshot_key(cfg, ckpt)
    data_dir, data_stage = _kshot_data_dir(run, ckpt, cfg)
    if (suite.obs_dim, suite.act_dim) != (learner.model.obs_dim, learner.model.act_dim):
        raise ValueError(f"data.suite: {suite.name} has obs/act dims {(suite.obs_dim, suite.act_dim)}, the checkpoint's "
                         f"network {(learner.model.obs_dim, learner.model.act_dim)}")
    data = load_kshot_data(data_dir, suite, learner.model) if cache.fresh(data_stage, data_key, data_dir / "oracles.pt") else None
    if data is None:
        seed_everything(cfg.seed)
        data = prepare_kshot(learner.model, suite, tasks, policy=cfg.data.policy, eval_episodes=k.eval_episodes,
                             oracle_transitions=k.oracle_transitions, oracle_steps=k.oracle_steps, seed=cfg.seed,
                             progress=progress)
        save_kshot_data(data, data_dir)
        cache.record(data_stage, data_key)
    else:
        out("few-shot evaluation data and oracles: inputs unchanged, reusing " + str(data_dir))
    seed_everything(cfg.seed)
    df, info = kshot_benchmark(learner, ks=k.ks, windows=k.windows, eval_length=k.eval_length,
                               scratch_steps=k.scratch_steps, seed=cfg.seed, progress=progress, data=data)
    df["meta_train_env_steps"] = ckpt["env_steps"]
    write_csv(df, out_csv)
    table = _print_kshot(df, info, ckpt["env_steps"], ckpt["sources"], out=out, seed=cfg.seed)
    write_csv(table.reset_index(), summary_path(out_csv))
    cache.record(stage, key)
    out(f"\nwrote {out_csv} and {summary_path(out_csv)}")
    return df


def summary_path(out_csv: str | os.PathLike) -> Path:
    """Where the summary of a few-shot table goes: ``kshot.csv`` -> ``kshot.summary.csv``."""
    return Path(out_csv).with_suffix(".summary.csv")


# ---------------------------------------------------------------------------------------------- control
def _stage_name(kind: str, out_csv: Path, run: Path) -> str:
    """A stage is keyed by its output file: relative to the run directory inside it (so two run directories'
    records compare equal), absolute outside it."""
    try:
        where = out_csv.resolve().relative_to(run.resolve()).as_posix()
    except ValueError:
        where = str(out_csv.resolve())
    return f"{kind}:{where}"


def _next_free(run: Path, stem: str = "control") -> Path:
    """``RUN/evaluations/control-001.csv``, the first number not taken."""
    folder = run / "evaluations"
    i = 1
    while (folder / f"{stem}-{i:03d}.csv").exists():
        i += 1
    return folder / f"{stem}-{i:03d}.csv"


def control_run(checkpoint: str | os.PathLike, out_csv: str | os.PathLike | None = None, out=print, suite=None,
                cfg: RunConfig | None = None, overrides: dict | None = None, progress: bool = True,
                flat: bool = False, workers: int | None = None, ray_address: str | None = None) -> tuple[pd.DataFrame, dict]:
    """Control evaluation of a checkpoint on the suite's held-out tasks; prints and writes a table.

    Meta-World suites are scored by ``metaworld.evaluation.metalearning_evaluation``; other suites by
    the same protocol over their vector envs (mean evaluation return). The CSV records the budget, the
    planner, the env steps spent, the mean return and the meta-training data sources in every row.

    When the run trained a value-guided agent (``agent.pt``, ``agent.env_steps > 0``) that agent is scored (its
    ``agent`` section's planner with the policy's proposals and the terminal value), unless ``flat``: today's agent,
    the flat planner on imagined rewards alone, over the same prior.

    Args:
        out_csv: where to write; None: a new numbered file ``RUN/evaluations/control-NNN.csv`` (never overwrites).
        flat: score the flat planner even if a value-guided agent exists.
        workers / ray_address: run the task groups (``control.task_group``), or Meta-World's evaluation rounds
            (``control.num_evals``), on Ray workers; the same rows.
    """
    from meta_mbrl.training.rundir import RunDirLock

    with RunDirLock(_run_dir_of(checkpoint)):
        return _control_run(checkpoint, out_csv, out, suite, cfg, overrides, progress, flat, workers, ray_address)


def _control_run(checkpoint, out_csv, out, suite, cfg, overrides, progress, flat=False, workers=None,
                 ray_address=None) -> tuple[pd.DataFrame, dict]:
    import task_suites
    from meta_mbrl.checks import check_device

    ckpt = load_checkpoint(checkpoint)
    cfg = checkpoint_config(ckpt, cfg, overrides)
    check_device("device", cfg.device)
    adapt_opts(cfg)
    run = _run_dir_of(checkpoint)
    out_csv = Path(out_csv) if out_csv is not None else _next_free(run)
    cache = StageCache(run)
    from meta_mbrl.training.agent_loop import AGENT_CHECKPOINT

    value = not flat and cfg.agent.env_steps > 0 and (run / AGENT_CHECKPOINT).exists()
    agent_key = None
    if cfg.agent.env_steps > 0 and (run / AGENT_CHECKPOINT).exists():
        import hashlib

        agent_key = {"agent": to_dict(cfg.agent), "sha": hashlib.sha256((run / AGENT_CHECKPOINT).read_bytes()).hexdigest()}
    control_key = to_dict(cfg.control)
    if not control_key["task_group"]:
        del control_key["task_group"]  # keys of runs made before the setting existed stay valid
    if control_key["num_evals"] > 1:
        control_key["rounds"] = 1  # Meta-World's rounds on fresh agents (issue #14): older multi-round tables are stale
    key = content_key(checkpoint=ckpt["state_dict"], planner=to_dict(cfg.planner),
                      control=control_key, suite=cfg.data.suite, seed=cfg.seed, **({"flat": True} if flat else {}),
                      **({"value_agent": agent_key} if agent_key else {}))
    stage = _stage_name("control", out_csv, run)
    if cache.fresh(stage, key, out_csv):
        df = pd.read_csv(out_csv)
        out(f"\ncontrol: inputs unchanged, reusing {out_csv}")
        return df, {}
    learner = learner_from_checkpoint(ckpt, device=cfg.device)
    # the value agent's run trained the prior further on its replay: the flat planner gets that prior too (same data)
    trained = cfg.agent.env_steps > 0 and (run / AGENT_CHECKPOINT).exists()
    ac = load_value_agent(run, learner, cfg.device) if trained else None
    ac = ac if value else None
    suite = suite or task_suites.make(cfg.data.suite, seed=cfg.seed)
    seed_everything(cfg.seed)
    ray_opts = None
    if workers is not None or ray_address is not None:
        ray_opts = {"checkpoint": checkpoint, "value": ac is not None, "workers": workers or 1, "address": ray_address}
    df, info, judge = evaluate_control(cfg, learner, suite, progress=progress, actor_critic=ac, ray=ray_opts)
    p, c, a = cfg.planner, cfg.control, cfg.agent
    if value:
        planner = {"agent": f"value-guided ({a.mode})", "planner": a.planner, "plan_horizon": a.horizon,
                   "plan_population": a.population, "plan_iterations": a.iterations, "policy_samples": a.policy_samples,
                   "plan_particles": p.particles, "plan_propagation": p.propagation}
    else:
        planner = {"agent": "flat planner", "planner": p.name, "plan_horizon": p.horizon, "plan_population": p.population,
                   "plan_iterations": p.iterations, "policy_samples": 0, "plan_particles": p.particles,
                   "plan_propagation": p.propagation}
    agent_env_steps = _agent_env_steps(run) if trained else 0
    budget = {**planner, "num_evals": info.get("num_evals", 1),
              "adaptation_episodes": info["adaptation_episodes"], "evaluation_episodes": info["evaluation_episodes"],
              "max_episode_steps": info.get("max_episode_steps", suite.max_episode_steps), "adapt_steps": c.adapt_steps,
              "online": c.online, "known_reward": cfg.planner.known_reward, "adapt_env_steps": info["adapt_env_steps"],
              "eval_env_steps": info["eval_env_steps"],
              "mean_return": info.get("mean_return", float(df["eval_return"].mean()) if "eval_return" in df else float("nan")),
              "judge": judge, "seed": cfg.seed, "checkpoint_step": ckpt["step"], "meta_train_env_steps": ckpt["env_steps"],
              "meta_train_sources": json.dumps(ckpt["sources"]), "agent_env_steps": agent_env_steps,
              "train_env_steps": max(int(ckpt["env_steps"]), agent_env_steps), "track": _track(ckpt["sources"])}
    for k, v in budget.items():
        df[k] = v
    write_csv(df, out_csv)
    cache.record(stage, key)
    with pd.option_context("display.width", 200, "display.precision", 3):
        out(f"\nControl on held-out test tasks, judged by {judge}")
        out(f"{planner['agent']}: planner={planner['planner']} (horizon {planner['plan_horizon']}, population "
            f"{planner['plan_population']} + {planner['policy_samples']} policy samples, "
            f"{planner['plan_iterations']} iterations); {info['adaptation_episodes']} adaptation episodes per sub-env, "
            f"{info['evaluation_episodes']} evaluation episodes per "
            + (f"test class (Meta-World's count) x {info['num_evals']} rounds of fresh goals, "
               f"{info['meta_batch_size']} sub-envs" if "num_evals" in info else "task"))
        out(df[[col for col in df.columns if col not in budget]].to_string(index=False))
        if "mean_success_rate" in info:
            out(f"mean success rate: {info['mean_success_rate']:.3f}   mean return: {info['mean_return']:.1f}")
        out(f"meta-training data: {ckpt['env_steps']} env steps from {json.dumps(ckpt['sources'])}")
        if trained:
            out(f"the value agent's run: {agent_env_steps} env steps in all (track {budget['track']}); its prior, trained "
                "on them, is the one used here")
        out(f"test-time env steps: {info['adapt_env_steps']} adaptation + {info['eval_env_steps']} evaluation "
            f"({info['seconds']:.0f} s)")
    out(f"wrote {out_csv}")
    return df, info


def _agent_env_steps(run: Path) -> int:
    """Env steps of the value agent's training in ``run`` (its replay's count), 0 if none."""
    import torch

    from meta_mbrl.training.agent_loop import AGENT_CHECKPOINT

    path = run / AGENT_CHECKPOINT
    if not path.exists():
        return 0
    return int(torch.load(path, map_location="cpu", weights_only=False)["buffer"]["env_steps"])


def _track(sources) -> str:
    """``"demo"`` if any training data came from the labelled scripted policies, else ``"rl"`` (DESIGN.md's tracks)."""
    return "demo" if any(str(s.get("policy", "")).startswith("demo") for s in sources or []) else "rl"


def task_groups(cfg: RunConfig, tasks) -> list[tuple[int, int, list]]:
    """The protocol evaluation's task groups ``[(g, offset, tasks), ...]`` of ``control.task_group`` tasks (0: one)."""
    size = cfg.control.task_group or len(tasks)
    return [(g, start, list(tasks[start:start + size])) for g, start in enumerate(range(0, len(tasks), size))]


def evaluate_group(cfg: RunConfig, learner, suite, tasks, group: int, offset: int, actor_critic=None,
                   progress: bool = False) -> tuple[pd.DataFrame, dict]:
    """The protocol evaluation of one task group: a fresh agent seeded ``policy_seed(cfg.seed, group)`` (the run's
    seed for group 0) after ``seed_everything`` of it, envs seeded ``cfg.seed + offset`` (sub-env ``i``: ``+ i``, as
    in one group of all tasks). The same in this process and on a Ray worker."""
    import dataclasses

    from meta_mbrl.data.rollout import policy_seed
    from meta_mbrl.evaluation import protocol_evaluation

    gcfg = dataclasses.replace(cfg, seed=policy_seed(cfg.seed, group))
    seed_everything(gcfg.seed)
    if actor_critic is not None:
        agent = build_value_agent(gcfg, learner, actor_critic, suite, len(tasks))
    else:
        agent = build_agent(gcfg, learner, suite, num_envs=len(tasks))
    c = cfg.control
    return protocol_evaluation(agent, suite, tasks, adaptation_episodes=c.adaptation_episodes,
                               evaluation_episodes=c.evaluation_episodes, seed=cfg.seed + offset, progress=progress)


def evaluate_round(cfg: RunConfig, learner, suite, round_: int, actor_critic=None, progress: bool = False,
                   reseed: bool = True) -> tuple[pd.DataFrame, dict]:
    """Round ``round_`` of the Meta-World control evaluation: ``metalearning_evaluation`` with ``num_evals=1`` on a
    fresh agent seeded ``policy_seed(cfg.seed, round_)`` (after ``seed_everything`` of it when ``reseed``), in envs
    seeded ``cfg.seed`` whose goal samplers first skip ``round_`` rounds (so the goals are those of round ``round_``
    of one call from round 0, and depend only on ``(cfg.seed, round_)``). The same in this process and on a Ray
    worker; :func:`meta_mbrl.evaluation.combine_rounds` merges the rounds."""
    import dataclasses

    from meta_mbrl.data.rollout import policy_seed
    from meta_mbrl.evaluation import metaworld_evaluation

    c = cfg.control
    rcfg = dataclasses.replace(cfg, seed=policy_seed(cfg.seed, round_))
    if reseed:
        seed_everything(rcfg.seed)
    mbs = c.meta_batch_size or len(suite.test_classes)
    if actor_critic is not None:
        agent = build_value_agent(rcfg, learner, actor_critic, suite, mbs)
    else:
        agent = build_agent(rcfg, learner, suite, num_envs=mbs)
    return metaworld_evaluation(agent, suite, num_evals=1, adaptation_episodes=c.adaptation_episodes,
                                evaluation_episodes=c.evaluation_episodes, meta_batch_size=mbs,
                                max_episode_steps=c.max_episode_steps or None, seed=cfg.seed, progress=progress,
                                first_round=round_)


def evaluate_control(cfg: RunConfig, learner, suite, progress: bool = False,
                     actor_critic=None, ray: dict | None = None) -> tuple[pd.DataFrame, dict, str]:
    """Control of ``learner`` on the suite's held-out tasks with the config's planner and budget.

    With ``actor_critic`` the value-guided agent acts (:func:`build_value_agent`), else the flat planner.
    Returns ``(df, info, judge)``; Meta-World suites are judged by ``metalearning_evaluation``. Other suites run
    in task groups of ``control.task_group`` (:func:`evaluate_group`); with ``ray`` (``checkpoint``, ``value``,
    ``workers``, ``address``) the groups run on Ray workers, each building the agent from the checkpoint: the
    same rows. Meta-World suites run ``control.num_evals`` rounds (:func:`evaluate_round`), on Ray workers with
    ``ray``, combined as ``metalearning_evaluation`` combines its rounds: the same table either way.
    """
    from meta_mbrl.evaluation import combine_rounds

    if hasattr(suite, "make_benchmark_envs"):
        rounds = list(range(cfg.control.num_evals))
        if ray is not None:
            from meta_mbrl import distributed

            parts = distributed.evaluate_rounds(ray["checkpoint"], cfg, rounds, value=ray["value"],
                                                workers=ray["workers"], address=ray["address"], progress=progress)
        else:
            # round 0 uses the caller's RNG state as before rounds existed (control_run seeds it to cfg.seed first)
            parts = [evaluate_round(cfg, learner, suite, r, actor_critic, progress, reseed=r > 0) for r in rounds]
        df, info = combine_rounds(parts)
        return df, info, "metaworld.evaluation.metalearning_evaluation"
    groups = task_groups(cfg, list(suite.test_tasks))
    if ray is not None:
        from meta_mbrl import distributed

        parts = distributed.evaluate_groups(ray["checkpoint"], cfg, [(g, o, [t.id for t in ts]) for g, o, ts in groups],
                                            value=ray["value"], workers=ray["workers"], address=ray["address"],
                                            progress=progress)
    else:
        parts = [(g, *evaluate_group(cfg, learner, suite, ts, g, o, actor_critic, progress)) for g, o, ts in groups]
    df, info = _merge_groups(parts)
    if "success_rate" in df and df.success_rate.notna().any():
        return df, info, "meta_mbrl.evaluation.protocol_evaluation (success: the env's info['success'] ever 1)"
    return df, info, "meta_mbrl.evaluation.protocol_evaluation (mean return; no success criterion)"


def _merge_groups(parts) -> tuple[pd.DataFrame, dict]:
    """One table and info of the task groups' ``[(g, df, info), ...]`` (env steps and seconds add up)."""
    if len(parts) == 1:
        return parts[0][1], parts[0][2]
    df = pd.concat([d for _, d, _ in parts], ignore_index=True)
    info = dict(parts[0][2])
    for k in ("adapt_env_steps", "eval_env_steps", "seconds"):
        info[k] = sum(i[k] for _, _, i in parts)
    return df, info


# ---------------------------------------------------------------------------------------------- videos
def video_tasks(tasks, n: int | None = None) -> list:
    """The tasks a video shows: the first task of each class, then the second of each, ..., ``n`` in all.

    ``n`` None: one per class.

    Example:
        >>> import task_suites
        >>> [t.id for t in video_tasks(task_suites.make("point-mass").test_tasks, 2)]
        ['point-mass/test/00', 'point-mass/test/01']
    """
    tasks = list(tasks)
    classes = list(dict.fromkeys(t.name for t in tasks))
    if n is None:
        n = len(classes)
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"video_tasks: expected an int >= 1, got {n!r}")
    rank = {c: i for i, c in enumerate(classes)}
    order = sorted(range(len(tasks)), key=lambda i: (tasks[i].index, rank[tasks[i].name], i))
    return [tasks[i] for i in order[:n]]


def video_run(checkpoint: str | os.PathLike, out_dir: str | os.PathLike, tasks: int | None = None, out=print,
              suite=None, cfg: RunConfig | None = None, overrides: dict | None = None) -> list[Path]:
    """GIFs of a checkpoint's adapted agent on held-out tasks, with the control settings (``meta-mbrl evaluate --video``).

    On each of :func:`video_tasks` ``(suite.test_tasks, tasks)`` a fresh one-env agent (the config's
    planner and adaptation settings, :func:`build_agent`) explores for ``control.adaptation_episodes``
    episodes, adapts, and its evaluation episode is written as ``out_dir/<task id, / -> _>.gif``;
    episodes are ``control.max_episode_steps`` long where that is set.

    If nothing can be rendered (no OpenGL backend for MuJoCo), prints one line
    ``video: <reason>; the evaluation above is unaffected`` and returns the GIFs written before that.

    Args:
        checkpoint: run directory or ``checkpoint.pt``.
        out_dir: folder of the GIFs.
        tasks: how many held-out tasks (default: one per test class).
        cfg / overrides: as in :func:`control_run` (default: the checkpoint's config).

    Returns:
        The GIF paths written.
    """
    import task_suites
    from meta_mbrl.checks import check_device
    from meta_mbrl.evaluation.video import RenderUnavailable, record_episodes

    if tasks is not None and (isinstance(tasks, bool) or not isinstance(tasks, int) or tasks < 1):
        raise ValueError(f"video_tasks: expected an int >= 1, got {tasks!r}")
    ckpt = load_checkpoint(checkpoint)
    cfg = checkpoint_config(ckpt, cfg, overrides)
    check_device("device", cfg.device)
    adapt_opts(cfg)
    learner = learner_from_checkpoint(ckpt, device=cfg.device)
    suite = suite or task_suites.make(cfg.data.suite, seed=cfg.seed)
    chosen = video_tasks(suite.test_tasks, tasks)
    seed_everything(cfg.seed)
    written: list[Path] = []
    out_dir = Path(out_dir)

    def fresh_agent():
        return build_agent(cfg, learner, suite, num_envs=1)

    try:
        for task in chosen:
            written += record_episodes(fresh_agent, suite, [task], out_dir, adaptation_episodes=cfg.control.adaptation_episodes,
                                       max_episode_steps=cfg.control.max_episode_steps or None, seed=cfg.seed)
            out(f"wrote {written[-1]}")
    except RenderUnavailable as e:
        out(f"video: {' '.join(str(e).split())}; the evaluation above is unaffected")
    return written


# ---------------------------------------------------------------------------------------------- learner comparison
def learners_run(cfg: RunConfig, names, out_csv: str | os.PathLike, control: bool = True, progress: bool = True,
                 out=print, data: str | os.PathLike | None = None) -> pd.DataFrame:
    """``meta-mbrl bench learners``: every learner on the same data, seed, benchmark windows, oracles and planner.

    Each learner takes its settings from its family's section of ``cfg``. ``data``: a TaskBuffer file to train on
    (its tasks must be the suite's training tasks) instead of collecting the data section's exploration data. Writes
    ``out_csv`` (one row per learner), ``<out_csv stem>.kshot.csv`` (the tidy few-shot rows) and, with control,
    ``<out_csv stem>.control.csv`` (every learner's per-task control rows).
    """
    import dataclasses

    from meta_mbrl.evaluation.learners import compare_learners
    from meta_mbrl.meta import LEARNER_NAMES

    unknown = [n for n in names if n not in LEARNER_NAMES]
    if unknown or not names:
        raise ValueError(f"learners: expected names from {'|'.join(LEARNER_NAMES)}, got {list(names)}")
    suite = check_before_work(cfg)
    seed_everything(cfg.seed)
    if data is not None:
        buffer = TaskBuffer.load(data)
        train_ids = {t.id for t in suite.train_tasks}
        foreign = sorted(set(buffer.task_ids) - train_ids)
        if foreign:
            raise ValueError(f"data: expected a TaskBuffer of {suite.name}'s training tasks, got {str(data)!r} holding "
                             f"tasks {foreign[:3]}")
    else:
        buffer = _collect_train(cfg, suite, progress)
    out(f"suite {suite}; training data {buffer}")

    def named(name: str) -> RunConfig:
        return dataclasses.replace(cfg, learner=dataclasses.replace(cfg.learner, name=name))

    def make(name):
        return build_learner(named(name), suite.obs_dim, suite.act_dim)

    t = cfg.train

    def train(learner):
        return meta_train(learner, buffer, steps=t.steps, tasks_per_batch=t.tasks_per_batch, support=t.support,
                          query=t.query, lr=t.outer_lr, grad_clip=t.grad_clip, seed=cfg.seed, device=cfg.device,
                          progress=progress, log_every=min(t.log_every, t.steps), query_mode=t.query_mode,
                          support_max=t.support_max or None)

    k = cfg.kshot
    heldout = None
    if k.heldout_suite:
        import task_suites

        held = task_suites.make(k.heldout_suite, seed=cfg.seed)
        if (held.obs_dim, held.act_dim) != (suite.obs_dim, suite.act_dim):
            raise ValueError(f"kshot.heldout_suite: {held.name} has obs/act dims {(held.obs_dim, held.act_dim)}, the "
                             f"training suite {(suite.obs_dim, suite.act_dim)}")
        heldout = (held.name, held, select_tasks(held.test_tasks, k.tasks_per_class))
    controls = []

    def control_of(lr):
        df, info = evaluate_control(named(_name_of(lr)), lr, suite)[:2]
        controls.append(df.assign(learner=_name_of(lr)))
        return df, info

    table, kshot = compare_learners(
        names, make, train, suite, select_tasks(suite.test_tasks, k.tasks_per_class), buffer, heldout=heldout,
        control=control_of if control else None, ks=k.ks,
        kshot_kwargs=dict(policy=cfg.data.policy, eval_episodes=k.eval_episodes, oracle_transitions=k.oracle_transitions,
                          oracle_steps=k.oracle_steps, windows=k.windows, eval_length=k.eval_length,
                          scratch_steps=k.scratch_steps),
        seed=cfg.seed, progress=progress, out=out,
    )
    table.insert(1, "suite", suite.name)
    table.insert(2, "ensemble", cfg.learner.ensemble)
    table["meta_train_env_steps"] = buffer.env_steps
    table["steps"] = t.steps
    write_csv(table, out_csv)
    write_csv(kshot, Path(out_csv).with_suffix(".kshot.csv"))
    if controls:  # per-task control rows of every learner
        write_csv(pd.concat(controls, ignore_index=True).assign(meta_train_env_steps=buffer.env_steps),
                  Path(out_csv).with_suffix(".control.csv"))
    if len(kshot):
        from meta_mbrl.evaluation.kshot_stats import kshot_table

        summary = pd.concat({key: kshot_table(part, seed=cfg.seed)
                             for key, part in kshot.groupby(["learner", "split"], sort=False)}, names=["learner", "split"])
        write_csv(summary.reset_index(), Path(out_csv).with_suffix(".kshot.summary.csv"))
    with pd.option_context("display.width", 250, "display.max_columns", 40, "display.precision", 4):
        out(f"\nLearners on {suite.name}: {t.steps} meta-train steps on {buffer.env_steps} env steps of {cfg.data.policy} data, "
            f"seed {cfg.seed}; few-shot columns are the adapted model on held-out tasks; latency with K=32")
        out(table.drop(columns=["suite", "meta_train_env_steps", "steps"]).to_string(index=False))
        if cfg.learner.ensemble > 1:
            out(f"every learner is an ensemble of {cfg.learner.ensemble} members; control plans with "
                f"{cfg.planner.propagation} trajectory sampling, {cfg.planner.particles or cfg.learner.ensemble} particles")
    out(f"wrote {out_csv}")
    return table


def _name_of(learner) -> str:
    from meta_mbrl.meta import LEARNER_CLASSES, Ensemble

    if isinstance(learner, Ensemble):
        return learner.member
    for name, cls in LEARNER_CLASSES.items():
        if type(learner) is cls:
            return name
    raise ValueError(f"learner: {type(learner).__name__} is not a built-in learner")


# ---------------------------------------------------------------------------------------------- transfer
def transfer_run(checkpoint: str | os.PathLike, suite: str, out_csv: str | os.PathLike,
                 amounts=(0, 30, 100, 300, 1000), tasks: int = 2, steps: int = 300, lr: float = 1e-3,
                 control: bool = True, units: str = "prior", overrides: dict | None = None, progress: bool = True,
                 out=print, plot: bool = True) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``meta-mbrl bench transfer``: a checkpoint's prior fine-tuned on a target suite's tasks vs scratch.

    Runs :func:`~meta_mbrl.evaluation.transfer.transfer_curves` on the first ``tasks`` test tasks of each class of
    ``suite`` (target data and evaluation windows from the config's exploration policy, ``data.policy``; windows
    and episodes from the ``kshot`` section: ``kshot.windows``, ``kshot.eval_length``, ``kshot.eval_episodes``),
    with control by the config's planner (``planner`` section) for ``control.evaluation_episodes`` episodes of
    ``control.max_episode_steps`` steps (0: the suite's) per task and point. Nothing is written into the
    checkpoint's run directory.

    Writes ``out_csv`` (the curves: one row per amount x arm x metric, with the target env steps, data source,
    seed and settings), ``<stem>.metrics.csv`` (Taylor & Stone's metrics per metric, transfer vs scratch) and,
    with matplotlib installed and ``plot``, ``<stem>.png``; prints both tables.

    Args:
        checkpoint: run directory or ``checkpoint.pt`` of the prior.
        suite: the target suite's name (``task_suites.make``), e.g. ``"point-maze"`` or ``"custom:...|..."``.
        out_csv: the curves' CSV.
        amounts: target transitions per task, strictly increasing, ``>= 0``.
        tasks: target tasks per test class (``>= 1``).
        steps / lr: the Adam fit of both arms.
        control: also score control (success, return).
        units: the model error's units, ``"prior"`` (the few-shot benchmark's) or ``"target"`` (see
            :func:`~meta_mbrl.evaluation.transfer.transfer_curves`).
        overrides: dotted config overrides (seed, device, kshot, planner, control sections).

    Returns:
        ``(curves, metrics)``.

    Raises:
        ValueError: naming the argument: an unknown suite, bad amounts, tasks or steps, a target suite whose obs/act
            dims differ from the prior's.
    """
    import task_suites
    from meta_mbrl.checks import check_device
    from meta_mbrl.evaluation.transfer import check_amounts, control_scores, transfer_curves, transfer_table

    amounts = [int(a) for a in check_amounts(amounts)]
    if units not in ("prior", "target"):
        raise ValueError(f"units: expected 'prior' or 'target', got {units!r}")
    if isinstance(tasks, bool) or not isinstance(tasks, int) or tasks < 1:
        raise ValueError(f"tasks: expected an int >= 1 (target tasks per test class), got {tasks!r}")
    ckpt = load_checkpoint(checkpoint)
    cfg = checkpoint_config(ckpt, None, overrides)
    check_device("device", cfg.device)
    try:
        target = task_suites.make(suite, seed=cfg.seed)
    except (ValueError, KeyError) as e:
        raise ValueError(f"suite: cannot make target suite {suite!r}: {' '.join(str(e).split())}") from None
    learner = learner_from_checkpoint(ckpt, device=cfg.device)
    net = learner.model
    if (target.obs_dim, target.act_dim) != (net.obs_dim, net.act_dim):
        raise ValueError(f"suite: {target.name} has obs/act dims {(target.obs_dim, target.act_dim)}, the prior "
                         f"{(net.obs_dim, net.act_dim)}; transfer needs the same dims")
    chosen = select_tasks(target.test_tasks, tasks)
    seed_everything(cfg.seed)
    k, c, p = cfg.kshot, cfg.control, cfg.planner

    def score(model):
        return control_scores(model, target, chosen, build_planner(cfg, target), episodes=c.evaluation_episodes,
                              max_episode_steps=c.max_episode_steps or None, seed=cfg.seed,
                              particles=p.particles or None, propagation=p.propagation)

    source = ((ckpt.get("config") or {}).get("data") or {}).get("suite", "")
    out(f"transfer: prior {_name_of(learner)} from {checkpoint} (trained on {source}, {ckpt['env_steps']} env steps) "
        f"-> {target.name}, {len(chosen)} target tasks, amounts {amounts}, {steps} Adam steps (lr {lr:g}), seed {cfg.seed}")
    curves, info = transfer_curves(
        learner, target, chosen, amounts, steps=steps, lr=lr, policy=cfg.data.policy, eval_episodes=k.eval_episodes,
        windows=k.windows, eval_length=min(k.eval_length, target.max_episode_steps),
        horizon=min(10, k.eval_length), control=score if control else None, units=units, seed=cfg.seed,
        progress=progress, out=out)
    track = "demo" if str(cfg.data.policy).startswith("demo") else "rl"
    settings = {"source_suite": source, "target_suite": target.name, "learner": _name_of(learner),
                "checkpoint_step": ckpt["step"], "source_env_steps": ckpt["env_steps"], "tasks": len(chosen),
                "data_source": track, "policy": cfg.data.policy, "finetune_steps": steps, "finetune_lr": lr, "units": units,
                "planner": p.name, "plan_horizon": p.horizon, "plan_population": p.population,
                "plan_iterations": p.iterations, "control_episodes": c.evaluation_episodes if control else 0,
                "control_max_episode_steps": c.max_episode_steps or target.max_episode_steps, "seed": cfg.seed}
    curves = curves.assign(**settings)
    metrics = transfer_table(curves).assign(**{k_: settings[k_] for k_ in ("source_suite", "target_suite", "learner",
                                                                            "tasks", "data_source", "seed")})
    out_csv = Path(out_csv)
    write_csv(curves, out_csv)
    metrics_csv = out_csv.with_suffix(".metrics.csv")
    write_csv(metrics, metrics_csv)
    with pd.option_context("display.width", 250, "display.max_columns", 30, "display.precision", 4):
        out(f"\nTransfer learning curves: {source} prior -> {target.name}; target data: {cfg.data.policy} ({track} "
            f"track), {info['target_env_steps']} env steps collected, evaluation {info['eval_env_steps']} env steps, "
            f"control {info['control_env_steps']} env steps; seed {cfg.seed}; {info['seconds']:.0f} s")
        out(curves.pivot_table(index="amount", columns=["metric", "arm"], values="value", sort=False).to_string())
        out("\nTaylor & Stone (2009) transfer metrics, transfer vs scratch; gains signed better-is-positive "
            "(negative = negative transfer); AUC over log(1 + amount), as the curve's mean height")
        cols = ["metric", "jump_start", "time_to_threshold_transfer", "time_to_threshold_scratch", "auc_transfer",
                "auc_scratch", "transfer_ratio", "asymptote_transfer", "asymptote_scratch", "negative_at",
                "negative_transfer"]
        out(metrics[cols].to_string(index=False))
    out(f"wrote {out_csv} and {metrics_csv}")
    if plot:
        from meta_mbrl.evaluation.plots import OptionalDependencyError, write_transfer_png

        try:
            png = write_transfer_png(curves, out_csv.with_suffix(".png"),
                                     title=f"{_name_of(learner)} prior from {source} -> {target.name} (seed {cfg.seed})")
            out(f"wrote {png}")
        except OptionalDependencyError as e:
            out(f"plot: {e}")
    return curves, metrics
