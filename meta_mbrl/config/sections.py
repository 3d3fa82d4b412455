"""The run configuration in frozen sections, one docstring per field; every section validates itself.

A :class:`RunConfig` holds the run-wide ``seed`` and ``device`` and one section per stage of a run
(data, model, learner with one typed section per learner family, meta-training, few-shot benchmark,
planner, control). The CLI flags are generated from these classes (:mod:`meta_mbrl.config.cli_args`):
each section has a flag ``PREFIX`` and fields may carry older flag names as ``aliases``.

Example:
    >>> cfg = RunConfig(train=TrainSection(steps=10))
    >>> cfg.train.steps, cfg.learner.name, cfg.learner.maml.inner_lr
    (10, 'maml', 0.1)
    >>> TrainSection(steps=0)
    Traceback (most recent call last):
    ...
    ValueError: train.steps: expected an integer >= 1, got 0
"""

from dataclasses import dataclass, field, fields
from typing import ClassVar, Literal, get_args

from meta_mbrl.checks import MAX_LR, check_bool, check_float, check_int, check_sizes

__all__ = [
    "DataSection", "ModelSection", "MAMLSection", "ReptileSection", "CaDMSection", "PEARLSection", "MultiTaskSection",
    "FineTuneSection", "ALPaCASection", "LearnerSection", "TrainSection", "KShotSection", "PlannerSection", "ControlSection",
    "AgentSection", "RunConfig",
    "SECTIONS", "FAMILY_OF",
]

LearnerName = Literal["maml", "fomaml", "metasgd", "anil", "reptile", "cadm", "pearl", "multitask", "finetune", "alpaca"]
Policy = Literal["uniform", "colored-noise", "ou"]
Activation = Literal["relu", "silu", "tanh"]

#: the typed section (an attribute of LearnerSection) that holds each learner's settings
FAMILY_OF: dict[str, str] = {"maml": "maml", "fomaml": "maml", "metasgd": "maml", "anil": "maml", "reptile": "reptile",
                             "cadm": "cadm", "pearl": "pearl", "multitask": "multitask", "finetune": "finetune",
                             "alpaca": "alpaca"}


def alias(*names: str, default=None, **kw):
    """A dataclass field that also answers to the older CLI flag ``names`` (e.g. ``"--inner-lr"``)."""
    return field(default=default, metadata={"aliases": names}, **kw)


def _where(sec, name: str) -> str:
    return f"{sec.SECTION}.{name}" if sec.SECTION else name


def _int(sec, name: str, lo: int = 1) -> None:
    check_int(_where(sec, name), getattr(sec, name), minimum=lo)


def _float(sec, name: str, lo: float = 0.0, strict: bool = True, hi: float = 1e6) -> None:
    check_float(_where(sec, name), getattr(sec, name), low=lo, high=hi, low_open=strict)


def _ints(sec, name: str) -> None:
    v = getattr(sec, name)
    if not isinstance(v, tuple):
        raise ValueError(f"{_where(sec, name)}: expected a tuple of integers, got {type(v).__name__} {v!r}")
    check_sizes(_where(sec, name), v)


def _choice(sec, name: str) -> None:
    v = getattr(sec, name)
    allowed = get_args(type(sec).__dataclass_fields__[name].type)
    if v not in allowed:
        raise ValueError(f"{_where(sec, name)}: expected one of {list(allowed)}, got {v!r}")


def _bool(sec, name: str) -> None:
    check_bool(_where(sec, name), getattr(sec, name))


@dataclass(frozen=True)
class DataSection:
    """Suite and data collection: which tasks the prior is meta-trained on, and how the data is explored."""

    SECTION: ClassVar[str] = "data"
    PREFIX: ClassVar[str] = ""

    suite: str = "ml10"
    """Task suite name (task_suites.make): ml10, ml45, ml1:<env>, custom:<a,b>|<c>, point-mass, point-maze."""
    tasks_per_class: int = 10
    """Training tasks (goals) used per training class; 0 means all."""
    episodes_per_task: int = 1
    """Episodes collected on each training task."""
    num_envs: int = 0
    """Sub-envs per vector env in collection, the unit of work of ``--workers``; 0: the suite's default (all tasks
    at once for the batched suites, 10 for Meta-World). The data depend on it, never on the worker count."""
    policy: Policy = "colored-noise"
    """Exploration policy for training, few-shot and oracle data."""
    demo_episodes_per_task: int = 0
    """Labelled demo track, training classes only: episodes of Meta-World's scripted policy (with Gaussian action
    noise) added to the training data per training task; 0: none (the agent-collected rl track)."""
    demo_noise: float = 0.3
    """Std of the Gaussian noise added to the scripted demo actions (then clipped to the action bounds)."""

    def __post_init__(self):
        if not isinstance(self.suite, str) or not self.suite.strip():
            raise ValueError(f"data.suite: expected a suite name, got {self.suite!r}")
        _int(self, "tasks_per_class", 0)
        _int(self, "episodes_per_task")
        _int(self, "num_envs", 0)
        _choice(self, "policy")
        _int(self, "demo_episodes_per_task", 0)
        _float(self, "demo_noise", 0.0, strict=False)


@dataclass(frozen=True)
class ModelSection:
    """The dynamics-and-reward network every learner adapts (DynamicsMLP)."""

    SECTION: ClassVar[str] = "model"
    PREFIX: ClassVar[str] = ""

    hidden: tuple[int, ...] = (200, 200, 200)
    """Hidden layer widths of the dynamics-and-reward MLP."""
    activation: Activation = "silu"
    """Hidden activation."""
    gaussian: bool = False
    """Gaussian NLL model (predicts a variance) instead of deterministic MSE."""
    reward_weight: float = 1.0
    """Weight of the reward term against the mean over observation dims in the loss."""

    def __post_init__(self):
        _ints(self, "hidden")
        _choice(self, "activation")
        _bool(self, "gaussian")
        _float(self, "reward_weight", 0.0, strict=False)


@dataclass(frozen=True)
class MAMLSection:
    """MAML family (maml, fomaml, metasgd, anil): a few SGD steps on the prior's weights."""

    SECTION: ClassVar[str] = "learner.maml"
    PREFIX: ClassVar[str] = "maml-"

    inner_lr: float = alias("--inner-lr", default=0.1)
    """Inner-loop SGD step size. GrBAL used 0.01 on raw targets; on our unit-variance targets 0.1 adapted better on
    ML10-test (benchmarks/bench_maml_variants.py)."""
    inner_steps: int = alias("--inner-steps", default=1)
    """Inner-loop SGD steps (GrBAL: 1)."""
    first_order: bool = alias("--first-order", default=False)
    """maml only: first-order MAML (fomaml always is)."""
    meta_sgd: bool = alias("--meta-sgd", default=False)
    """maml only: learn per-parameter inner learning rates (metasgd always does)."""

    def __post_init__(self):
        _float(self, "inner_lr", hi=MAX_LR)
        _int(self, "inner_steps", 0)
        _bool(self, "first_order")
        _bool(self, "meta_sgd")


@dataclass(frozen=True)
class ReptileSection:
    """Reptile: SGD steps, the prior moved toward the adapted weights (Nichol et al. 2018)."""

    SECTION: ClassVar[str] = "learner.reptile"
    PREFIX: ClassVar[str] = "reptile-"

    inner_lr: float = 0.02
    """Inner-loop SGD step size."""
    inner_steps: int = 5
    """Inner-loop SGD steps."""
    inner_data: Literal["both", "support"] = "both"
    """What the inner loop of meta-training trains on: both (support then query) or support."""

    def __post_init__(self):
        _float(self, "inner_lr", hi=MAX_LR)
        _int(self, "inner_steps", 0)
        _choice(self, "inner_data")


@dataclass(frozen=True)
class CaDMSection:
    """CaDM: a permutation-invariant context encoder, forward + backward prediction losses (Lee et al. 2020)."""

    SECTION: ClassVar[str] = "learner.cadm"
    PREFIX: ClassVar[str] = "cadm-"

    context_dim: int = 10
    """Size of the context vector z."""
    encoder_hidden: tuple[int, ...] = (128, 128)
    """Hidden widths of the per-transition encoder."""
    encoder_activation: Activation = "relu"
    """Encoder activation."""
    backward_weight: float = 1.0
    """Weight of the backward prediction loss (0: forward only)."""
    prior_weight: float = 0.0
    """Weight of the loss of the network with z = 0 (keeps the unadapted prior usable)."""

    def __post_init__(self):
        _int(self, "context_dim")
        _ints(self, "encoder_hidden")
        _choice(self, "encoder_activation")
        _float(self, "backward_weight", 0.0, strict=False)
        _float(self, "prior_weight", 0.0, strict=False)


@dataclass(frozen=True)
class PEARLSection:
    """PEARL: a product of per-transition Gaussian factors, KL to a unit prior."""

    SECTION: ClassVar[str] = "learner.pearl"
    PREFIX: ClassVar[str] = "pearl-"

    context_dim: int = 10
    """Size of the latent task vector z."""
    encoder_hidden: tuple[int, ...] = (128, 128)
    """Hidden widths of the per-transition encoder."""
    encoder_activation: Activation = "relu"
    """Encoder activation."""
    kl_weight: float = 0.01
    """Weight of KL(posterior || N(0, I)) in the meta-loss."""
    min_var: float = 1e-6
    """Floor of each factor's variance."""

    def __post_init__(self):
        _int(self, "context_dim")
        _ints(self, "encoder_hidden")
        _choice(self, "encoder_activation")
        _float(self, "kl_weight", 0.0, strict=False)
        _float(self, "min_var")


@dataclass(frozen=True)
class MultiTaskSection:
    """Multi-task: a shared network with a task embedding fitted by a few gradient steps (CAVIA-style)."""

    SECTION: ClassVar[str] = "learner.multitask"
    PREFIX: ClassVar[str] = "multitask-"

    embed_dim: int = 8
    """Size of the task embedding."""
    inner_lr: float = 1.0
    """Step size of the embedding's gradient steps."""
    inner_steps: int = 2
    """Gradient steps on the embedding."""
    first_order: bool = True
    """First-order meta-gradient through the embedding's steps."""

    def __post_init__(self):
        _int(self, "embed_dim")
        _float(self, "inner_lr", hi=MAX_LR)
        _int(self, "inner_steps", 0)
        _bool(self, "first_order")


@dataclass(frozen=True)
class FineTuneSection:
    """Fine-tuning (transfer baseline): a model trained on pooled tasks, fine-tuned with Adam on the context."""

    SECTION: ClassVar[str] = "learner.finetune"
    PREFIX: ClassVar[str] = "finetune-"

    adapt_steps: int = 50
    """Adam steps on the context."""
    adapt_lr: float = 1e-3
    """Adam learning rate on the context."""

    def __post_init__(self):
        _int(self, "adapt_steps", 0)
        _float(self, "adapt_lr", hi=MAX_LR)


@dataclass(frozen=True)
class ALPaCASection:
    """ALPaCA: meta-learned features with a closed-form Bayesian output layer (Harrison et al. 2018)."""

    SECTION: ClassVar[str] = "learner.alpaca"
    PREFIX: ClassVar[str] = "alpaca-"

    prior_precision: float = 1.0
    """Initial precision of the output layer's prior (learned in meta-training); higher trusts the prior longer."""
    half_life: float = 0.0
    """Recency weighting of the (time-ordered) context: a transition a steps older than the newest weighs
    0.5**(a/half_life) (learned in meta-training from this value); 0: all weigh the same, order ignored."""

    def __post_init__(self):
        _float(self, "prior_precision", hi=1e6)
        _float(self, "half_life", strict=False, hi=1e6)


@dataclass(frozen=True)
class LearnerSection:
    """The meta-learner: which one, an optional ensemble, and each family's own settings."""

    SECTION: ClassVar[str] = "learner"
    PREFIX: ClassVar[str] = ""

    name: LearnerName = alias("--learner", default="maml")
    """Meta-learner; its settings are in the section of its family (maml, fomaml, metasgd and anil share maml's)."""
    ensemble: int = 1
    """Members E of an ensemble of the learner (stacked parameters, one adapt call, one forward pass); 1: a single
    learner. Control then plans with trajectory sampling across members (plan-particles, plan-propagation)."""
    maml: MAMLSection = field(default_factory=MAMLSection)
    reptile: ReptileSection = field(default_factory=ReptileSection)
    cadm: CaDMSection = field(default_factory=CaDMSection)
    pearl: PEARLSection = field(default_factory=PEARLSection)
    multitask: MultiTaskSection = field(default_factory=MultiTaskSection)
    finetune: FineTuneSection = field(default_factory=FineTuneSection)
    alpaca: ALPaCASection = field(default_factory=ALPaCASection)

    def __post_init__(self):
        _choice(self, "name")
        _int(self, "ensemble")

    @property
    def family(self):
        """The section of the chosen learner's family."""
        return getattr(self, FAMILY_OF[self.name])


@dataclass(frozen=True)
class TrainSection:
    """Meta-training: the Adam outer loop over sampled task windows, and the model-based data loop."""

    SECTION: ClassVar[str] = "train"
    PREFIX: ClassVar[str] = ""

    steps: int = 2000
    """Outer (meta) training steps."""
    tasks_per_batch: int = 10
    """Tasks per meta-batch."""
    support: int = 16
    """Support (adaptation) transitions per task window (GrBAL: 16)."""
    query: int = 16
    """Query transitions following the support window (GrBAL: 16)."""
    query_mode: Literal["following", "task"] = "following"
    """Where query windows come from: following (right after the support window, GrBAL) or task (anywhere in the
    same task, which trains adaptation to identify the task, e.g. a hidden goal)."""
    support_max: int = 0
    """If larger than support: each meta-batch draws its support length log-uniformly from [support, support_max],
    so adaptation is trained on the short and long contexts it will meet; 0: always support."""
    outer_lr: float = 1e-3
    """Outer Adam learning rate."""
    grad_clip: float = 10.0
    """Max global gradient norm of the outer step."""
    mb_rounds: int = 1
    """Model-based data loop: meta-training rounds; after each but the last the MPC agent collects on training
    tasks (PETS / GrBAL). 1 trains on exploration data only."""
    mb_tasks_per_class: int = 1
    """Training tasks (goals) per class the agent collects on in each model-based round; 0 means all."""
    mb_episodes_per_task: int = 1
    """Agent episodes per task in each model-based round (CaDM: 10 rollouts over its training range per
    iteration, i.e. 2 per task on a 5-task suite)."""
    mb_bonus_weight: float = 0.0
    """Weight of the ensemble-disagreement bonus when the agent collects on training tasks in model-based rounds
    (Plan2Explore / MAX: the members' variance about the next observation, in normalized Δobs units, summed over the
    horizon); needs learner.ensemble > 1. 0 plans on the predicted reward alone."""
    mb_reward_weight: float = 1.0
    """Weight of the predicted return when the agent collects in model-based rounds (0 with a bonus: pure
    exploration)."""
    checkpoint_every: int = 500
    """Steps between checkpoints."""
    log_every: int = 50
    """Steps between log rows."""
    tensorboard: bool = False
    """Also write TensorBoard logs (needs the tensorboard extra)."""

    def __post_init__(self):
        for n in ("steps", "tasks_per_batch", "support", "query", "mb_rounds", "mb_episodes_per_task", "checkpoint_every",
                  "log_every"):
            _int(self, n)
        _int(self, "mb_tasks_per_class", 0)
        _int(self, "support_max", 0)
        _float(self, "mb_bonus_weight", 0.0, strict=False)
        _float(self, "mb_reward_weight", 0.0, strict=False)
        if self.mb_bonus_weight == 0 and self.mb_reward_weight == 0:
            raise ValueError("train.mb_reward_weight/train.mb_bonus_weight: expected at least one of them > 0 (the "
                             "collecting agent's objective would be constant), got 0.0 and 0.0")
        _choice(self, "query_mode")
        _float(self, "outer_lr", hi=10.0)
        _float(self, "grad_clip")
        _bool(self, "tensorboard")


@dataclass(frozen=True)
class KShotSection:
    """The few-shot model benchmark on held-out tasks: prior, adapted, scratch and oracle models, naive baselines."""

    SECTION: ClassVar[str] = "kshot"
    PREFIX: ClassVar[str] = "kshot-"

    ks: tuple[int, ...] = (8, 32, 128)
    """Context sizes K."""
    tasks_per_class: int = 1
    """Test tasks (goals) per held-out class."""
    windows: int = 8
    """Evaluation points per test task."""
    eval_episodes: int = 2
    """Episodes collected per test task for contexts and evaluation."""
    eval_length: int = 32
    """Transitions after each context on which the 1-step metrics are taken (>= 10 for dyn_mse_h10)."""
    oracle_transitions: int = alias("--oracle-transitions", default=20_000)
    """Transitions of each test task the oracle model is trained on."""
    oracle_steps: int = alias("--oracle-steps", default=3000)
    """Adam steps (batch 256) to train each oracle."""
    scratch_steps: int = alias("--scratch-steps", default=300)
    """Adam steps (full batch, minibatches of 128 beyond) to train each scratch model on the K context transitions."""
    heldout_suite: str = ""
    """bench learners: also score every learner on this suite's held-out tasks (e.g. a custom split of Meta-World
    classes outside the training suite, same obs/act dims); empty: the training suite's only."""

    def __post_init__(self):
        if not isinstance(self.heldout_suite, str):
            raise ValueError(f"kshot.heldout_suite: expected a suite name or '', got {self.heldout_suite!r}")
        _ints(self, "ks")
        for n in ("tasks_per_class", "windows", "eval_episodes", "eval_length", "oracle_transitions", "oracle_steps"):
            _int(self, n)
        _int(self, "scratch_steps", 0)


@dataclass(frozen=True)
class PlannerSection:
    """The planner control uses over the adapted model."""

    SECTION: ClassVar[str] = "planner"
    PREFIX: ClassVar[str] = "plan-"

    name: Literal["cem", "mppi", "rs", "hierarchical"] = alias("--planner", default="cem")
    """Planner: cem, mppi, rs (random shooting) or hierarchical (subgoals every plan-segment steps, scored through the
    model, reached by a CEM with the horizon, population and iterations above)."""
    horizon: int = 10
    """Planning horizon H (steps imagined ahead)."""
    population: int = 200
    """Candidate action sequences per planning iteration and env."""
    iterations: int = 3
    """Planner iterations per action (CEM / MPPI refinement rounds; ignored by random shooting)."""
    particles: int = 0
    """Particles per candidate in imagined rollouts (PETS); 0: one per ensemble member (1 for a single model). With an
    ensemble, a multiple of the ensemble size."""
    propagation: Literal["ts1", "tsinf", "mean"] = "ts1"
    """How particles move through an ensemble: ts1 (member re-drawn every step), tsinf (fixed per particle), mean."""
    subgoal_dims: tuple[int, ...] = ()
    """Hierarchical: observation indices the subgoals live in; empty: the suite's (point mass and maze: position;
    Meta-World: the gripper's position)."""
    subgoal_scale: float = 0.0
    """Hierarchical: std of a subgoal around the current state at the first iteration, in observation units; 0: the
    suite's (maze 1.2, point mass 1.0, Meta-World 0.15 m)."""
    segment: int = 16
    """Hierarchical: imagined steps k between subgoals."""
    num_subgoals: int = 5
    """Hierarchical: subgoals M per sequence (the high level looks M * k steps ahead)."""
    subgoal_population: int = 64
    """Hierarchical: subgoal sequences per high-level iteration."""
    subgoal_iterations: int = 3
    """Hierarchical: high-level CEM iterations."""
    track_samples: int = 9
    """Hierarchical: actions the tracking controller tries at every imagined step of the high level."""
    track_lookahead: float = 3.0
    """Hierarchical: the tracker aims the predicted move this many steps ahead (momentum); 0 is greedy."""
    subgoal_every: int = 4
    """Hierarchical: plans between high-level searches (1: every plan; n: the subgoals kept for n plans, the high
    level's compute divided by n)."""
    low_level: Literal["cem", "none"] = "cem"
    """Hierarchical: refine the best path's actions with a CEM towards the first subgoal (cem) or play them (none)."""
    known_reward: bool = False
    """Plan with the suite's known reward function of the predicted transition (suite.reward_fn: the MuJoCo
    HalfCheetah suites) instead of the model's learned reward, as CaDM and PETS do; every agent of the run
    (model-based rounds, control, the value-guided agent) plans with it. The model still learns the reward."""

    def __post_init__(self):
        _choice(self, "name")
        _bool(self, "known_reward")
        for n in ("horizon", "population", "iterations", "segment", "num_subgoals", "subgoal_iterations",
                  "track_samples", "subgoal_every"):
            _int(self, n)
        _int(self, "subgoal_population", 2)
        _int(self, "particles", 0)
        _choice(self, "propagation")
        _choice(self, "low_level")
        dims = self.subgoal_dims
        if not isinstance(dims, tuple) or len(set(dims)) != len(dims):
            raise ValueError(f"planner.subgoal_dims: expected a tuple of distinct observation indices, got {dims!r}")
        for d in dims:
            check_int("planner.subgoal_dims", d, minimum=0)
        _float(self, "subgoal_scale", strict=False)
        _float(self, "track_lookahead", strict=False)


@dataclass(frozen=True)
class ControlSection:
    """Control on held-out tasks: adapt, then plan; judged by metaworld.evaluation on Meta-World suites."""

    SECTION: ClassVar[str] = "control"
    PREFIX: ClassVar[str] = "control-"

    num_evals: int = 1
    """Evaluation rounds (metalearning_evaluation's num_evals), each with fresh test goals."""
    adaptation_episodes: int = 1
    """Exploration episodes per test sub-env before adapting."""
    evaluation_episodes: int = 1
    """Scored episodes per test class after adapting (Meta-World counts them per class; other suites per task)."""
    max_episode_steps: int = 0
    """Episode length of Meta-World's evaluation; 0 keeps the suite's (500). Shorter only for smoke tests (other suites
    keep their own episode length; control.csv records the length used)."""
    meta_batch_size: int = 0
    """Test sub-envs acted in at once, a multiple of the test classes; 0 means one per class (ML1: use e.g. 10)."""
    adapt_steps: int = 0
    """Gradient steps of adaptation at test time; 0 uses the learner's own (gradient-based learners only)."""
    online: bool = False
    """Also re-adapt online (GrBAL) on the last context-size transitions during adaptation episodes."""
    context_size: int = 32
    """Transitions of the online adaptation context."""
    explore_noise: float = 0.3
    """Std of the correlated exploration noise added to planned actions in adaptation episodes (x half range)."""
    task_group: int = 0
    """Test tasks per agent and vector env of the protocol evaluation (suites other than Meta-World), the unit of work
    of ``--workers``; 0: all test tasks at once. Group g's agent is seeded from (seed, g), its envs as in one group."""

    def __post_init__(self):
        for n in ("num_evals", "adaptation_episodes", "evaluation_episodes", "context_size"):
            _int(self, n)
        for n in ("max_episode_steps", "meta_batch_size", "adapt_steps", "task_group"):
            _int(self, n, 0)
        _bool(self, "online")
        _float(self, "explore_noise", 0.0, strict=False, hi=10.0)


@dataclass(frozen=True)
class AgentSection:
    """The value-guided agent (TD-MPC2-style): a task-conditioned value and policy prior, trained by TD on the replay
    of the agent's own episodes on training tasks, then planning with the adapted model, the policy's proposals and
    the value beyond the horizon. ``env_steps`` 0 leaves it out (control uses the flat planner alone)."""

    SECTION: ClassVar[str] = "agent"
    PREFIX: ClassVar[str] = "agent-"

    env_steps: int = 0
    """Env steps of the whole run (the meta-training data's included) at which the agent's training stops; 0: no
    value-guided agent."""
    hidden: tuple[int, ...] = (256, 256)
    """Hidden layers of the Q heads and the policy (LayerNorm + Mish)."""
    latent_dim: int = 16
    """Size of the task vector the encoder infers from a context."""
    encoder_hidden: tuple[int, ...] = (128, 128)
    """Hidden layers of the per-transition context encoder."""
    discount: float = 0.99
    """TD discount (0.99 suits 500-step episodes)."""
    reward_scale: float = 0.1
    """Rewards are scaled by this for TD learning (values are reported in reward units)."""
    nstep: int = 3
    """n of the n-step TD return."""
    lr: float = 3e-4
    """Adam learning rate of critics, encoder, policy and temperature."""
    tau: float = 0.01
    """Polyak rate of the target critics."""
    tasks_per_round: int = 10
    """Training tasks acted in at once per collection round (round-robin over the training tasks)."""
    episodes_per_round: int = 1
    """Episodes per task per round."""
    tasks_per_class: int = 0
    """Training goals per class the agent collects on; 0: those of the meta-training data (data.tasks_per_class)."""
    updates_per_step: float = 0.25
    """Actor-critic updates per new env step."""
    batch_tasks: int = 8
    """Tasks per update."""
    batch_per_task: int = 32
    """n-step windows per task per update."""
    context: int = 64
    """Largest context (transitions) of an update's task inference."""
    model_steps: int = 0
    """Meta-training steps of the world model per round on the growing replay (0: the prior stays as meta-trained)."""
    checkpoint_minutes: float = 5.0
    """Minutes between checkpoints of the agent's training (a killed run resumes from the last)."""
    eval_every: int = 0
    """Env steps between evaluations on test tasks for the learning curve (policy mode, 1 adaptation + 1 scored
    episode per test task); 0: none."""
    mode: Literal["plan", "policy"] = "plan"
    """Scored actions: plan (planner + policy proposals + terminal value) or policy (the policy's mean action)."""
    planner: Literal["mppi", "cem", "hierarchical"] = "mppi"
    """The value-guided planner (hierarchical: the planner section's subgoal settings, the value scoring the subgoals
    and this section's horizon, population and iterations for the low level)."""
    horizon: int = 3
    """Its horizon (the value covers the rest)."""
    population: int = 64
    """Its Gaussian samples per iteration (the policy's proposals come on top)."""
    iterations: int = 4
    """Its iterations per action."""
    policy_samples: int = 24
    """Action sequences rolled out from the policy prior as proposals, per env and iteration."""
    plan_share: float = 0.0
    """Share of exploring steps (training collection, adaptation episodes) that are planned instead of sampled from
    the policy."""

    def __post_init__(self):
        _int(self, "env_steps", 0)
        _ints(self, "hidden")
        _ints(self, "encoder_hidden")
        for n in ("latent_dim", "nstep", "tasks_per_round", "episodes_per_round", "batch_tasks", "batch_per_task",
                  "horizon", "population", "iterations"):
            _int(self, n)
        for n in ("tasks_per_class", "context", "model_steps", "eval_every", "policy_samples"):
            _int(self, n, 0)
        _float(self, "discount", 0.0, strict=False, hi=1.0)
        _float(self, "reward_scale")
        _float(self, "lr", hi=MAX_LR)
        _float(self, "tau", hi=1.0)
        _float(self, "updates_per_step", 0.0, strict=False, hi=1000.0)
        _float(self, "checkpoint_minutes", 0.0, strict=False)
        _float(self, "plan_share", 0.0, strict=False, hi=1.0)
        _choice(self, "mode")
        _choice(self, "planner")


@dataclass(frozen=True)
class RunConfig:
    """Everything ``meta-mbrl train`` does: collect, meta-train, the few-shot benchmark, control.

    Library classes never take this object: :mod:`meta_mbrl.runs` turns its sections into plain
    keyword arguments.
    """

    SECTION: ClassVar[str] = ""
    PREFIX: ClassVar[str] = ""

    seed: int = 0
    """Seed of everything random in the run: the suite's goals, data collection, network init, window sampling,
    planners, evaluation envs."""
    device: str = "cpu"
    """Torch device, e.g. cpu, cuda or cuda:1 (checked against this torch build before any work)."""
    data: DataSection = field(default_factory=DataSection)
    model: ModelSection = field(default_factory=ModelSection)
    learner: LearnerSection = field(default_factory=LearnerSection)
    train: TrainSection = field(default_factory=TrainSection)
    kshot: KShotSection = field(default_factory=KShotSection)
    planner: PlannerSection = field(default_factory=PlannerSection)
    control: ControlSection = field(default_factory=ControlSection)
    agent: AgentSection = field(default_factory=AgentSection)

    def __post_init__(self):
        _int(self, "seed", 0)
        if not isinstance(self.device, str) or not self.device:
            raise ValueError(f"device: expected a torch device string such as 'cpu' or 'cuda', got {self.device!r}")
        e, p = self.learner.ensemble, self.planner
        if self.train.mb_bonus_weight > 0 and self.train.mb_rounds > 1 and e < 2:
            raise ValueError(f"train.mb_bonus_weight: the information bonus is the disagreement of an ensemble's members, "
                             f"so it needs learner.ensemble > 1; got learner.ensemble={e} with "
                             f"train.mb_bonus_weight={self.train.mb_bonus_weight} (use --ensemble 3, or 0 for no bonus)")
        if p.particles and e > 1 and p.propagation != "mean" and p.particles % e:
            raise ValueError(f"planner.particles: expected a multiple of learner.ensemble ({e}) for {p.propagation}, "
                             f"got {p.particles}")


#: the sections of a RunConfig, by attribute name, in CLI order
SECTIONS: dict[str, type] = {f.name: f.type for f in fields(RunConfig) if f.name not in ("seed", "device")}
