"""Command line: ``meta-mbrl collect | train | evaluate | bench kshot | bench learners``.

The ``train`` flags are generated from :class:`meta_mbrl.config.TrainConfig` (one per field, its
docstring as help), so the CLI and the Python API cannot drift apart.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import typing

from meta_mbrl.config import PRESETS, TrainConfig, field_docs, make_config

__all__ = ["main"]


def _add_config_flags(p: argparse.ArgumentParser) -> None:
    docs = field_docs(TrainConfig)
    hints = typing.get_type_hints(TrainConfig)
    for f in dataclasses.fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        tp = hints[f.name]
        help_ = f"{docs.get(f.name, '')} (default: {f.default})"
        if tp is bool:
            p.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, default=None, help=help_)
        elif typing.get_origin(tp) is tuple:
            p.add_argument(flag, dest=f.name, type=int, nargs="+", default=None, help=help_)
        else:
            p.add_argument(flag, dest=f.name, type=tp, default=None, help=help_)


def _overrides(args: argparse.Namespace) -> dict:
    out = {}
    for f in dataclasses.fields(TrainConfig):
        v = getattr(args, f.name, None)
        if v is not None:
            out[f.name] = tuple(v) if isinstance(v, list) else v
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="meta-mbrl", description="Meta-learned model-based RL toolkit.")
    sub = parser.add_subparsers(dest="command", required=True)

    p_train = sub.add_parser("train", help="collect on training tasks, meta-train, then run the few-shot benchmark")
    p_train.add_argument("--preset", default="quick", choices=sorted(PRESETS), help="settings preset (default: quick)")
    p_train.add_argument("--run-dir", default=None, help="output folder (default: runs/<suite>-<preset>-seed<seed>)")
    p_train.add_argument("--no-progress", action="store_true", help="hide progress bars")
    _add_config_flags(p_train)

    p_collect = sub.add_parser("collect", help="collect episodes on a suite's tasks into a TaskBuffer file")
    p_collect.add_argument("--suite", default="ml10")
    p_collect.add_argument("--split", default="train", choices=["train", "test"])
    p_collect.add_argument("--tasks-per-class", type=int, default=10, help="tasks per class (0: all)")
    p_collect.add_argument("--episodes-per-task", type=int, default=1)
    p_collect.add_argument("--policy", default="colored-noise", choices=["uniform", "colored-noise", "ou"])
    p_collect.add_argument("--seed", type=int, default=0)
    p_collect.add_argument("--out", required=True, help="output .npz file")

    p_eval = sub.add_parser("evaluate", help="control success on held-out tasks, judged by metaworld.evaluation")
    p_eval.add_argument("--checkpoint", required=True, help="run directory or checkpoint.pt")
    p_eval.add_argument("--suite", default=None, help="suite to evaluate on (default: the checkpoint's)")
    p_eval.add_argument("--out", default=None, help="CSV file to write (default: RUN/control.csv)")
    p_eval.add_argument("--num-evals", dest="control_num_evals", type=int, default=None, help="evaluation rounds")
    p_eval.add_argument("--adaptation-episodes", dest="control_adaptation_episodes", type=int, default=None)
    p_eval.add_argument("--evaluation-episodes", dest="control_evaluation_episodes", type=int, default=None)
    p_eval.add_argument("--max-episode-steps", dest="control_max_episode_steps", type=int, default=None,
                        help="shorter episodes (smoke tests only)")
    p_eval.add_argument("--adapt-steps", dest="control_adapt_steps", type=int, default=None)
    p_eval.add_argument("--meta-batch-size", dest="control_meta_batch_size", type=int, default=None,
                        help="test sub-envs, a multiple of the test classes (default: one per class)")
    p_eval.add_argument("--online", dest="control_online", action=argparse.BooleanOptionalAction, default=None)
    p_eval.add_argument("--planner", default=None, choices=["cem", "mppi", "rs"])
    p_eval.add_argument("--horizon", dest="plan_horizon", type=int, default=None)
    p_eval.add_argument("--population", dest="plan_population", type=int, default=None)
    p_eval.add_argument("--iterations", dest="plan_iterations", type=int, default=None)
    p_eval.add_argument("--particles", dest="plan_particles", type=int, default=None,
                        help="particles per candidate (ensembles: a multiple of E; 0: one per member)")
    p_eval.add_argument("--propagation", dest="plan_propagation", default=None, choices=["ts1", "tsinf", "mean"],
                        help="trajectory sampling across ensemble members")
    p_eval.add_argument("--device", default=None)

    p_bench = sub.add_parser("bench", help="benchmarks of a trained prior")
    bsub = p_bench.add_subparsers(dest="bench", required=True)
    p_k = bsub.add_parser("kshot", help="few-shot model benchmark on the held-out test tasks")
    p_k.add_argument("--checkpoint", required=True, help="run directory or checkpoint.pt")
    p_k.add_argument("--out", required=True, help="CSV file to write")
    p_k.add_argument("--ks", dest="kshot_ks", type=int, nargs="+", default=None, help="context sizes K")
    p_k.add_argument("--windows", dest="kshot_windows", type=int, default=None, help="evaluation points per task")
    p_k.add_argument("--tasks-per-class", dest="kshot_tasks_per_class", type=int, default=None)
    p_k.add_argument("--device", default=None)
    p_k.add_argument("--no-progress", action="store_true")
    p_l = bsub.add_parser("learners", help="train and compare learners on the same data, seed and planner")
    p_l.add_argument("--learners", nargs="+", default=None, help="learner names (default: all)")
    p_l.add_argument("--preset", default="quick", choices=sorted(PRESETS))
    p_l.add_argument("--out", required=True, help="CSV file to write (one row per learner)")
    p_l.add_argument("--no-control", action="store_true", help="skip the control column")
    p_l.add_argument("--no-progress", action="store_true")
    _add_config_flags(p_l)

    args = parser.parse_args(argv)
    try:
        if args.command == "train":
            from meta_mbrl.experiment import train_run

            cfg = make_config(args.preset, **_overrides(args))
            run_dir = args.run_dir or f"runs/{cfg.suite.replace(':', '_')}-{args.preset}-seed{cfg.seed}"
            train_run(cfg, run_dir, progress=not args.no_progress)
        elif args.command == "collect":
            import task_suites
            from meta_mbrl.data import collect
            from meta_mbrl.experiment import select_tasks

            suite = task_suites.make(args.suite, seed=args.seed)
            tasks = select_tasks(suite.train_tasks if args.split == "train" else suite.test_tasks, args.tasks_per_class)
            buf = collect(suite, tasks, args.policy, episodes_per_task=args.episodes_per_task, seed=args.seed)
            buf.save(args.out)
            print(f"wrote {buf} to {args.out}")
        elif args.command == "evaluate":
            from pathlib import Path

            from meta_mbrl.experiment import control_run

            ckpt = Path(args.checkpoint)
            out_csv = args.out or (ckpt if ckpt.is_dir() else ckpt.parent) / "control.csv"
            keys = ("suite", "control_num_evals", "control_adaptation_episodes", "control_evaluation_episodes",
                    "control_max_episode_steps", "control_adapt_steps", "control_meta_batch_size", "control_online", "planner",
                    "plan_horizon",
                    "plan_population", "plan_iterations", "plan_particles", "plan_propagation", "device")
            control_run(args.checkpoint, out_csv, **{k: getattr(args, k) for k in keys})
        elif args.command == "bench" and args.bench == "learners":
            from meta_mbrl.experiment import learners_run
            from meta_mbrl.meta import LEARNER_NAMES

            cfg = make_config(args.preset, **_overrides(args))
            learners_run(cfg, args.learners or list(LEARNER_NAMES), args.out, control=not args.no_control,
                         progress=not args.no_progress)
        elif args.command == "bench" and args.bench == "kshot":
            from meta_mbrl.experiment import kshot_run

            kshot_run(args.checkpoint, args.out, progress=not args.no_progress,
                      kshot_ks=tuple(args.kshot_ks) if args.kshot_ks else None, kshot_windows=args.kshot_windows,
                      kshot_tasks_per_class=args.kshot_tasks_per_class, device=args.device)
    except (ValueError, FloatingPointError) as e:
        print(f"meta-mbrl: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
