"""Named presets: dotted overrides of :class:`~meta_mbrl.config.sections.RunConfig`'s defaults.

``quick`` is the README's main job (meta-train on ML10 in minutes on 2 CPU cores). ``long`` meta-trains on all
50 goals per class for 10k steps and scores 5 goals per test class (sized for 2 CPU cores within 2 hours).
``full`` is meant for a GPU machine (``--device cuda``). ``test`` is a seconds-long smoke run for CI.
"""

# the recommended few-shot setting (issue: adaptation that improves with context): ALPaCA with a recency-weighted
# posterior, meta-trained on support windows of 8 to 128 transitions, scored at K up to 512 on 3 goals per class
_RECOMMENDED = {
    "learner.name": "alpaca", "learner.alpaca.half_life": 16.0, "train.support": 8, "train.support_max": 128,
    "kshot.ks": (8, 32, 128, 512), "kshot.tasks_per_class": 3,
}

PRESETS: dict[str, dict[str, object]] = {
    "quick": dict(_RECOMMENDED),
    "long": {
        **_RECOMMENDED, "data.tasks_per_class": 0, "train.steps": 10_000, "train.checkpoint_every": 1000,
        "kshot.tasks_per_class": 5, "kshot.windows": 16, "kshot.oracle_steps": 5000,
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
