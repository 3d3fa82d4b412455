"""Named presets: dotted overrides of :class:`~meta_mbrl.config.sections.RunConfig`'s defaults.

``quick`` is the README's main job (meta-train on ML10 in minutes on 2 CPU cores). ``long`` meta-trains on all
50 goals per class for 10k steps and scores 5 goals per test class (sized for 2 CPU cores within 2 hours).
``ml1`` trains the value-guided agent on one Meta-World class (``--suite ml1:push-v3``) and scores 10 test
goals, one sub-env at a time (Meta-World's judge counts the first episodes to finish per class, so several sub-envs
of one class favour the episodes that end early on success), each with 10 adaptation and 3 scored episodes.
``mujoco`` reproduces CaDM's model-based protocol on the parametric-dynamics MuJoCo suites (``--suite
cadm:halfcheetah-mass`` and the rest): 20 rounds of 2 episodes per training task (200k env steps on a 5-task suite,
CaDM's budget), a 4x200 swish model, the CaDM learner with its 256-128-64 encoder and 10-d context, every test task
scored with 1 adaptation and 1 scored 1000-step episode; the planner is smaller than CaDM's (CEM 100 x H15 x 3
iterations, not 200 x H30) so that one suite runs on one CPU core in about an hour. ``full`` is meant for a GPU
machine (``--device cuda``). ``test`` is a seconds-long smoke run for CI.
"""

# the recommended few-shot setting (issue: adaptation that improves with context): ALPaCA with a recency-weighted
# posterior, meta-trained on support windows of 8 to 128 transitions, scored at K up to 512 on 3 goals per class
_RECOMMENDED = {
    "learner.name": "alpaca", "learner.alpaca.half_life": 16.0, "train.support": 8, "train.support_max": 128,
    "kshot.ks": (8, 32, 128, 512), "kshot.tasks_per_class": 3,
}

# the value-guided agent (issue: control that solves new tasks) on top of the recommended prior: its own replay on the
# training goals, n-step SAC with a PEARL-style task encoder, the prior fine-tuned on the growing replay each round
_AGENT = {"agent.updates_per_step": 0.5, "agent.model_steps": 20}

PRESETS: dict[str, dict[str, object]] = {
    "quick": {**_RECOMMENDED, **_AGENT, "agent.env_steps": 75_000},
    "ml1": {
        **_RECOMMENDED, **_AGENT, "kshot.ks": (8, 32, 128), "kshot.oracle_steps": 1000, "agent.env_steps": 250_000,
        "agent.tasks_per_class": 50, "agent.eval_every": 25_000, "control.meta_batch_size": 1, "control.num_evals": 10,
        "control.adaptation_episodes": 10, "control.evaluation_episodes": 3,
    },
    "long": {
        **_RECOMMENDED, "data.tasks_per_class": 0, "train.steps": 10_000, "train.checkpoint_every": 1000,
        "kshot.tasks_per_class": 5, "kshot.windows": 16, "kshot.oracle_steps": 5000,
    },
    "mujoco": {
        "data.tasks_per_class": 0, "data.episodes_per_task": 2, "model.hidden": (200, 200, 200, 200),
        "learner.name": "cadm", "learner.cadm.encoder_hidden": (256, 128, 64), "train.steps": 20_000,
        "train.mb_rounds": 20, "train.mb_tasks_per_class": 0, "train.mb_episodes_per_task": 2,
        "train.checkpoint_every": 1000, "kshot.ks": (8, 32, 128), "kshot.tasks_per_class": 16,
        "planner.horizon": 15, "planner.population": 100, "planner.iterations": 3, "control.online": True,
        "agent.env_steps": 0,
    },
    "full": {
        "data.tasks_per_class": 0, "data.episodes_per_task": 2, "model.hidden": (512, 512, 512), "train.steps": 20_000,
        "train.checkpoint_every": 1000, "kshot.tasks_per_class": 5, "kshot.windows": 16, "kshot.oracle_steps": 10_000,
        "planner.horizon": 15, "planner.population": 500, "planner.iterations": 5, "control.num_evals": 10,
        "control.adaptation_episodes": 10, "control.evaluation_episodes": 3, "control.online": True,
    },
    "test": {
        "data.tasks_per_class": 1, "data.episodes_per_task": 1, "model.hidden": (32, 32), "train.steps": 30,
        "train.checkpoint_every": 10, "train.log_every": 10, "kshot.ks": (8, 16), "kshot.eval_length": 16,
        "kshot.windows": 2, "kshot.eval_episodes": 1, "kshot.oracle_transitions": 500, "kshot.oracle_steps": 30,
        "kshot.scratch_steps": 10, "planner.horizon": 4, "planner.population": 16, "planner.iterations": 2,
        "control.max_episode_steps": 20,
    },
}
