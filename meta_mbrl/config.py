"""Run configuration: frozen dataclasses, one docstring per field; the CLI is generated from them."""

from __future__ import annotations

import ast
import dataclasses
import inspect
import textwrap
from dataclasses import dataclass

__all__ = ["TrainConfig", "PRESETS", "make_config", "field_docs", "learner_kwargs", "MAML_FAMILY"]


@dataclass(frozen=True)
class TrainConfig:
    """Everything ``meta-mbrl train`` does: collect, meta-train, then the few-shot benchmark."""

    suite: str = "ml10"
    """Task suite name (``task_suites.make``): ml10, ml45, ml1:<env>, custom:<a,b>|<c>, point-mass."""
    seed: int = 0
    """Seed of the suite's goals, the data collection and training."""
    device: str = "cpu"
    """Torch device, e.g. cpu or cuda."""
    tasks_per_class: int = 10
    """Training tasks (goals) used per training class; 0 means all."""
    episodes_per_task: int = 1
    """Episodes collected on each training task."""
    policy: str = "colored-noise"
    """Exploration policy for training data: uniform, colored-noise or ou."""
    hidden: tuple[int, ...] = (200, 200, 200)
    """Hidden layer widths of the dynamics-and-reward MLP."""
    gaussian: bool = False
    """Gaussian NLL model (predicts a variance) instead of deterministic MSE."""
    reward_weight: float = 1.0
    """Weight of the reward term against the mean over observation dims in the loss."""
    learner: str = "maml"
    """Meta-learner: maml, fomaml, metasgd, anil, reptile, cadm, pearl, multitask or finetune."""
    learner_kwargs: str = "{}"
    """More learner arguments as JSON, e.g. '{"kl_weight": 0.1}' for pearl, '{"context_dim": 16}' for cadm."""
    ensemble: int = 1
    """Members E of an ensemble of the learner (stacked parameters, one adapt call, one forward pass);
    1: a single learner. Control then plans with trajectory sampling across members (plan_particles, plan_propagation)."""
    inner_lr: float = 0.1
    """MAML family (maml, fomaml, metasgd, anil): inner-loop SGD step size. GrBAL used 0.01 on raw targets; on our
    unit-variance targets 0.1 adapted better on ML10-test (benchmarks/bench_maml_variants.py)."""
    inner_steps: int = 1
    """MAML family: inner-loop SGD steps (GrBAL: 1)."""
    first_order: bool = False
    """MAML family: first-order MAML (no second-order terms)."""
    meta_sgd: bool = False
    """MAML family: learn per-parameter inner learning rates (Meta-SGD)."""
    steps: int = 2000
    """Outer (meta) training steps."""
    tasks_per_batch: int = 10
    """Tasks per meta-batch."""
    support: int = 16
    """Support (adaptation) transitions per task window (GrBAL: 16)."""
    query: int = 16
    """Query transitions following the support window (GrBAL: 16)."""
    outer_lr: float = 1e-3
    """Outer Adam learning rate."""
    query_mode: str = "following"
    """Where query windows come from: following (right after the support window, GrBAL) or task (anywhere in the
    same task, which trains adaptation to identify the task, e.g. a hidden goal)."""
    mb_rounds: int = 1
    """Model-based data loop: meta-training rounds; after each but the last the MPC agent collects on training
    tasks (PETS / GrBAL). 1 trains on exploration data only."""
    mb_tasks_per_class: int = 1
    """Training tasks (goals) per class the agent collects on in each model-based round; 0 means all."""
    checkpoint_every: int = 500
    """Steps between checkpoints."""
    log_every: int = 50
    """Steps between log rows."""
    tensorboard: bool = False
    """Also write TensorBoard logs (needs the tensorboard extra)."""
    kshot_ks: tuple[int, ...] = (8, 32, 128)
    """Context sizes K of the few-shot benchmark."""
    kshot_tasks_per_class: int = 1
    """Test tasks (goals) per held-out class in the few-shot benchmark."""
    kshot_windows: int = 8
    """Evaluation points per test task."""
    kshot_eval_episodes: int = 2
    """Episodes collected per test task for contexts and evaluation."""
    kshot_eval_length: int = 32
    """Transitions after each context on which the 1-step metrics are taken (>= 10 for dyn_mse_h10)."""
    oracle_transitions: int = 20_000
    """Transitions of each test task the oracle model is trained on."""
    oracle_steps: int = 3000
    """Adam steps (batch 256) to train each oracle."""
    scratch_steps: int = 300
    """Adam steps (full batch) to train each scratch model on the K context transitions."""
    planner: str = "cem"
    """Planner for control: cem, mppi or rs (random shooting)."""
    plan_horizon: int = 10
    """Planning horizon H (steps imagined ahead)."""
    plan_population: int = 200
    """Candidate action sequences per planning iteration and env."""
    plan_iterations: int = 3
    """Planner iterations per action (CEM / MPPI refinement rounds; ignored by random shooting)."""
    plan_particles: int = 0
    """Particles per candidate in imagined rollouts (PETS); 0: one per ensemble member (1 for a single model). With an
    ensemble, a multiple of ensemble."""
    plan_propagation: str = "ts1"
    """How particles move through an ensemble: ts1 (member re-drawn every step), tsinf (fixed per particle), mean."""
    control_num_evals: int = 1
    """Control evaluation rounds (metalearning_evaluation's num_evals), each with fresh test goals."""
    control_adaptation_episodes: int = 1
    """Exploration episodes per test sub-env before adapting."""
    control_evaluation_episodes: int = 1
    """Scored episodes per test class after adapting (Meta-World counts them per class; other suites per task)."""
    control_max_episode_steps: int = 0
    """Episode length in control evaluation; 0 keeps the suite's (Meta-World: 500). Shorter only for smoke tests."""
    control_meta_batch_size: int = 0
    """Test sub-envs acted in at once, a multiple of the test classes; 0 means one per class (ML1: use e.g. 10)."""
    control_adapt_steps: int = 0
    """Gradient steps of adaptation at test time; 0 uses the learner's inner_steps."""
    control_online: bool = False
    """Also re-adapt online (GrBAL) on the last control_context_size transitions during adaptation episodes."""
    control_context_size: int = 32
    """Transitions of the online adaptation context."""
    control_explore_noise: float = 0.3
    """Std of the correlated exploration noise added to planned actions in adaptation episodes (x half range)."""


PRESETS: dict[str, dict] = {
    "quick": {},
    "full": dict(tasks_per_class=0, episodes_per_task=2, hidden=(512, 512, 512), steps=20_000,
                 kshot_tasks_per_class=5, kshot_windows=16, oracle_steps=10_000, checkpoint_every=1000,
                 plan_horizon=15, plan_population=500, plan_iterations=5, control_num_evals=10,
                 control_adaptation_episodes=10, control_evaluation_episodes=3, control_online=True),
    "test": dict(tasks_per_class=1, episodes_per_task=1, hidden=(32, 32), steps=30, checkpoint_every=10,
                 log_every=10, kshot_ks=(8, 16), kshot_eval_length=16, kshot_windows=2, kshot_eval_episodes=1, oracle_transitions=500,
                 oracle_steps=30, scratch_steps=10, plan_horizon=4, plan_population=16, plan_iterations=2,
                 control_max_episode_steps=20),
}
"""Named presets; a preset's values override the defaults, explicit arguments override the preset.

``quick`` is the README's main job (under 20 minutes on 2 CPU cores). ``full`` is meant for a GPU
machine. ``test`` is a seconds-long smoke run for CI."""


def make_config(preset: str = "quick", **overrides) -> TrainConfig:
    """A TrainConfig from a preset plus overrides, with every field checked."""
    if preset not in PRESETS:
        raise ValueError(f"preset: expected one of {sorted(PRESETS)}, got {preset!r}")
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(overrides) - names)
    if unknown:
        raise ValueError(f"overrides: unknown config fields {unknown}")
    cfg = TrainConfig(**{**PRESETS[preset], **overrides})
    for name in ("steps", "tasks_per_batch", "support", "query", "episodes_per_task", "kshot_windows",
                 "kshot_eval_episodes", "kshot_eval_length", "oracle_transitions", "checkpoint_every", "log_every"):
        if getattr(cfg, name) < 1:
            raise ValueError(f"{name}: expected >= 1, got {getattr(cfg, name)}")
    for name in ("mb_rounds", "plan_horizon", "plan_population", "plan_iterations", "control_num_evals", "control_adaptation_episodes",
                 "control_evaluation_episodes", "control_context_size"):
        if getattr(cfg, name) < 1:
            raise ValueError(f"{name}: expected >= 1, got {getattr(cfg, name)}")
    for name in ("tasks_per_class", "mb_tasks_per_class", "control_max_episode_steps", "control_adapt_steps",
                 "control_meta_batch_size", "plan_particles"):
        if getattr(cfg, name) < 0:
            raise ValueError(f"{name}: expected >= 0 (0: the default), got {getattr(cfg, name)}")
    from meta_mbrl.meta import LEARNER_NAMES

    if cfg.learner not in LEARNER_NAMES:
        raise ValueError(f"learner: expected one of {'|'.join(LEARNER_NAMES)}, got {cfg.learner!r}")
    learner_kwargs(cfg)
    if cfg.query_mode not in ("following", "task"):
        raise ValueError(f"query_mode: expected 'following' or 'task', got {cfg.query_mode!r}")
    if cfg.ensemble < 1:
        raise ValueError(f"ensemble: expected >= 1 (the number of members; 1: no ensemble), got {cfg.ensemble}")
    if cfg.plan_propagation not in ("ts1", "tsinf", "mean"):
        raise ValueError(f"plan_propagation: expected one of ['ts1', 'tsinf', 'mean'], got {cfg.plan_propagation!r}")
    if cfg.plan_particles and cfg.ensemble > 1 and cfg.plan_propagation != "mean" and cfg.plan_particles % cfg.ensemble:
        raise ValueError(f"plan_particles: expected a multiple of ensemble ({cfg.ensemble}) for {cfg.plan_propagation}, "
                         f"got {cfg.plan_particles}")
    if cfg.planner not in ("cem", "mppi", "rs"):
        raise ValueError(f"planner: expected one of ['cem', 'mppi', 'rs'], got {cfg.planner!r}")
    if cfg.inner_lr <= 0 or cfg.outer_lr <= 0:
        raise ValueError(f"inner_lr/outer_lr: expected > 0, got {cfg.inner_lr}/{cfg.outer_lr}")
    return cfg


MAML_FAMILY = ("maml", "fomaml", "metasgd", "anil")


def learner_kwargs(cfg: TrainConfig) -> dict:
    """The learner's constructor arguments: the MAML-family fields where they apply, plus ``learner_kwargs`` JSON."""
    import json

    try:
        extra = json.loads(cfg.learner_kwargs)
    except json.JSONDecodeError as e:
        raise ValueError(f"learner_kwargs: expected a JSON object, got {cfg.learner_kwargs!r} ({e})") from None
    if not isinstance(extra, dict):
        raise ValueError(f"learner_kwargs: expected a JSON object, got {cfg.learner_kwargs!r}")
    base = {}
    if cfg.learner in MAML_FAMILY:
        base = dict(inner_lr=cfg.inner_lr, inner_steps=cfg.inner_steps)
        if cfg.learner == "maml":
            base.update(first_order=cfg.first_order, meta_sgd=cfg.meta_sgd)
    return {**base, **extra}


def field_docs(cls) -> dict[str, str]:
    """The attribute docstrings of a dataclass (the string literal after each field)."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    body = tree.body[0].body
    docs = {}
    for node, nxt in zip(body, body[1:]):
        if isinstance(node, ast.AnnAssign) and isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant):
            docs[node.target.id] = " ".join(str(nxt.value.value).split())
    return docs


def to_dict(cfg) -> dict:
    return dataclasses.asdict(cfg)


