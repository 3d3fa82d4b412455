"""Command line: ``meta-mbrl collect | data export | data import | train | sweep | evaluate | bench kshot |
bench learners | bench data | bench transfer | plot``.

The config flags of every command are generated from the config sections (:mod:`meta_mbrl.config`),
grouped by section in ``--help``, with the chosen preset's values (or, for commands that read a
checkpoint, the checkpoint's) as defaults, so the CLI and the Python API cannot drift apart.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from meta_mbrl.config import PRESETS, load_preset_file, make_config
from meta_mbrl.config.cli_args import add_config_flags, overrides_from_args

__all__ = ["main", "build_parser"]


def _preset_of(argv: list[str]) -> str:
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--preset", default="quick")
    known, _ = pre.parse_known_args(argv)
    return known.preset if known.preset in PRESETS else "quick"


def _positive_int(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected an int >= 1, got {text!r}")
    return n


def _add_ray_flags(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("--workers", type=_positive_int, default=None, metavar="N",
                   help=f"run the {what} on N Ray workers (needs pip install ray); the results are the same as without, "
                        "for any N (default: in this process, no Ray)")
    p.add_argument("--ray-address", default=None, metavar="ADDR",
                   help="join this Ray cluster (ray.init(address=ADDR)) instead of starting a local one; implies --workers "
                        "(default 1 task in flight)")


def _preset_file_of(argv: list[str]) -> str | None:
    pre = argparse.ArgumentParser(add_help=False, allow_abbrev=False)  # "--preset" is not short for "--preset-file"
    pre.add_argument("--preset-file", default=None)
    known, _ = pre.parse_known_args(argv)
    return known.preset_file


def _add_preset(p: argparse.ArgumentParser, preset_help: str) -> None:
    g = p.add_mutually_exclusive_group()
    g.add_argument("--preset", default="quick", choices=sorted(PRESETS), help=preset_help)
    g.add_argument("--preset-file", default=None, metavar="FILE",
                   help='a preset file, JSON {"base": <preset>, "overrides": {<dotted path>: value}} (as written by '
                        "meta-mbrl sweep: best_preset.json); its values become the defaults, flags still override")


def _config(args: argparse.Namespace, overrides: dict):
    """The command's config: its preset (or preset file) with the flags' overrides on top."""
    if getattr(args, "preset_file", None):
        base, file_overrides = load_preset_file(args.preset_file)
        return make_config(base, {**file_overrides, **overrides})
    return make_config(args.preset, overrides)


def build_parser(preset: str = "quick", preset_overrides: dict | None = None) -> argparse.ArgumentParser:
    """The whole command line; help texts show ``preset``'s values (with ``preset_overrides``, a preset file's) as
    defaults."""
    from meta_mbrl import __version__

    defaults = make_config(preset, preset_overrides)
    parser = argparse.ArgumentParser(prog="meta-mbrl", description="Meta-learned model-based RL toolkit.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    preset_help = f"settings preset; defaults below are {preset!r}'s (default: quick)"

    p = sub.add_parser("train", usage="meta-mbrl train [--preset NAME] [--run-dir DIR] [options]",
                       help="collect on training tasks, meta-train, then the few-shot benchmark and control")
    _add_preset(p, preset_help)
    p.add_argument("--run-dir", default=None, help="output folder (default: runs/<suite>-<preset>-seed<seed>)")
    p.add_argument("--resume-with-changes", action="store_true",
                   help="continue the run directory's last checkpoint with changed optimisation settings (e.g. a lower "
                        "--outer-lr after a divergence); the change is recorded in config.json")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    _add_ray_flags(p, "collection and control")
    p.add_argument("--distributed", action="store_true",
                   help="meta-train data-parallel on the processes torchrun starts (reads RANK, WORLD_SIZE, MASTER_ADDR, "
                        "MASTER_PORT): `torchrun --nproc-per-node 2 -m meta_mbrl.cli train --distributed ...`; each "
                        "process takes tasks-per-batch / W tasks of every meta-batch, rank 0 writes the run directory")
    p.add_argument("--dist-backend", default=None, choices=["gloo", "nccl"],
                   help="torch.distributed backend (default: nccl on a CUDA --device, gloo otherwise)")
    p.add_argument("--dist-timeout", type=float, default=1800.0, metavar="SEC",
                   help="how long a process waits for the others, e.g. while rank 0 collects the data (default: 1800)")
    add_config_flags(p, defaults)

    p = sub.add_parser("collect", help="collect episodes on a suite's tasks into a TaskBuffer file")
    _add_preset(p, preset_help)
    p.add_argument("--split", default="train", choices=["train", "test"], help="which tasks (default: train)")
    p.add_argument("--out", required=True, help="output .npz file")
    p.add_argument("--no-progress", action="store_true")
    _add_ray_flags(p, "collection")
    add_config_flags(p, defaults, sections=["run", "data"])

    p_data = sub.add_parser("data", help="export / import TaskBuffer files as Minari datasets")
    dsub = p_data.add_subparsers(dest="data_command", required=True)
    p = dsub.add_parser("export", usage="meta-mbrl data export --buffer FILE.npz --suite NAME --dataset-id ID [--seed N] "
                        "[--per-task] [--root DIR] [--overwrite]",
                        help="write a buffer file as Minari dataset(s)",
                        description="One dataset whose episodes carry their task id (Minari episode metadata task_id), or "
                        "with --per-task one dataset per task (ids <namespace>/<name>/<task>-v<N>). Every episode ends "
                        "truncated (the suites' envs never terminate). Datasets go under --root, else "
                        "MINARI_DATASETS_PATH, else ~/.minari/datasets.")
    p.add_argument("--buffer", required=True, help="buffer file (.npz) written by meta-mbrl collect")
    p.add_argument("--suite", required=True, help="the suite the buffer was collected on, e.g. point-mass")
    p.add_argument("--seed", type=int, default=0, help="the suite's seed at collection (its tasks' goals; default: 0)")
    p.add_argument("--dataset-id", required=True, help="Minari dataset id, (namespace/)name-v<N>")
    p.add_argument("--per-task", action="store_true", help="one dataset per task")
    p.add_argument("--root", default=None, metavar="DIR", help="datasets folder (default: $MINARI_DATASETS_PATH)")
    p.add_argument("--overwrite", action="store_true", help="replace existing datasets of the same ids")
    p = dsub.add_parser("import", usage="meta-mbrl data import --dataset-id ID [ID ...] [--root DIR] --out FILE.npz",
                        help="read Minari dataset(s) into a buffer file",
                        description="Every dataset of one `data export` (e.g. all per-task ids) gives back the buffer "
                        "exactly; other datasets are appended in the order given, one sources entry each.")
    p.add_argument("--dataset-id", required=True, nargs="+", help="Minari dataset id(s)")
    p.add_argument("--root", default=None, metavar="DIR", help="datasets folder (default: $MINARI_DATASETS_PATH)")
    p.add_argument("--out", required=True, help="output buffer file (.npz)")

    p = sub.add_parser("evaluate", usage="meta-mbrl evaluate --checkpoint RUN [--out FILE] [--video DIR [--video-tasks N]] "
                       "[options]", help="control success on held-out tasks, judged by metaworld.evaluation")
    p.add_argument("--checkpoint", required=True, help="run directory or checkpoint.pt")
    p.add_argument("--out", default=None, help="CSV file to write (default: a new RUN/evaluations/control-NNN.csv)")
    p.add_argument("--video", default=None, metavar="DIR",
                   help="after the evaluation, write GIFs of the adapted agent's evaluation episode on held-out tasks "
                        "into DIR (same planner and control settings, --control-max-episode-steps honoured)")
    p.add_argument("--video-tasks", type=int, default=None, metavar="N",
                   help="how many held-out tasks to film: the first task of each test class, then the second, ... "
                        "(default: one per test class)")
    p.add_argument("--suite", dest="data.suite", default=None, help="suite to evaluate on (default: the checkpoint's)")
    p.add_argument("--flat", action="store_true",
                   help="score today's flat planner even if the run trained a value-guided agent (agent.pt)")
    p.add_argument("--no-progress", action="store_true")
    _add_ray_flags(p, "control")
    add_config_flags(p, defaults, sections=["run", "planner", "control", "agent"], default_note="the checkpoint's")

    p = sub.add_parser("plot", usage="meta-mbrl plot RUN [--out DIR]",
                       help="PNG figures of a run directory: training curve, few-shot error against K, control")
    p.add_argument("run", metavar="RUN", help="run directory")
    p.add_argument("--out", default=None, metavar="DIR", help="output folder (default: RUN/plots/)")

    p_bench = sub.add_parser("bench", help="benchmarks of a trained prior, and of the learner family")
    bsub = p_bench.add_subparsers(dest="bench", required=True)
    p = bsub.add_parser("kshot", help="few-shot model benchmark on the held-out test tasks")
    p.add_argument("--checkpoint", required=True, help="run directory or checkpoint.pt")
    p.add_argument("--out", required=True, help="CSV file to write (and <stem>.summary.csv: means with intervals)")
    p.add_argument("--suite", dest="data.suite", default=None,
                   help="suite whose held-out tasks to score (default: the checkpoint's), e.g. a custom split of "
                        "Meta-World classes outside the training suite")
    p.add_argument("--no-progress", action="store_true")
    add_config_flags(p, defaults, sections=["run", "kshot"], default_note="the checkpoint's")
    p = bsub.add_parser("transfer", usage="meta-mbrl bench transfer --checkpoint RUN --suite TARGET_SUITE --out FILE.csv "
                        "[--amounts N ...] [--tasks N] [options]",
                        help="transfer curves: the prior fine-tuned on a target suite's tasks vs a model from scratch",
                        description="Fine-tunes the checkpoint's prior (Adam on all its weights) and trains a fresh network "
                        "of the same architecture on growing amounts of target data (the exploration policy's transitions), "
                        "scores model error on held-out target transitions and control with the planner, and reports "
                        "Taylor & Stone's transfer metrics (jump-start, time to threshold, area under the curve and transfer "
                        "ratio, asymptote, negative transfer). Writes FILE.csv, FILE.metrics.csv and FILE.png.")
    p.add_argument("--checkpoint", required=True, help="run directory or checkpoint.pt of the prior")
    p.add_argument("--suite", required=True, help="target suite, e.g. point-maze or custom:<train,...>|<test,...>")
    p.add_argument("--out", required=True, help="CSV file of the curves (and <stem>.metrics.csv, <stem>.png)")
    p.add_argument("--amounts", nargs="+", type=int, default=[0, 30, 100, 300, 1000],
                   help="target transitions per task, strictly increasing (default: 0 30 100 300 1000)")
    p.add_argument("--tasks", type=int, default=2, help="target tasks per test class (default: 2)")
    p.add_argument("--finetune-steps", type=int, default=300, help="Adam steps of both arms at every amount (default: 300)")
    p.add_argument("--finetune-lr", type=float, default=1e-3, help="their learning rate (default: 0.001)")
    p.add_argument("--units", choices=["prior", "target"], default="prior",
                   help="model error units: the prior's normalizers, as bench kshot (default), or the held-out target "
                        "data's own std (for a prior whose normalizers saw some dims constant)")
    p.add_argument("--no-control", action="store_true", help="model error only")
    p.add_argument("--no-progress", action="store_true")
    add_config_flags(p, defaults, sections=["run", "kshot", "planner", "control"], default_note="the checkpoint's")
    p = bsub.add_parser("learners", usage="meta-mbrl bench learners --out FILE [--learners NAME ...] [options]",
                        help="train and compare learners on the same data, seed and planner")
    p.add_argument("--learners", nargs="+", default=None, help="learner names (default: all); each takes its "
                   "family's settings (--maml-*, --cadm-*, ...)")
    _add_preset(p, preset_help)
    p.add_argument("--out", required=True, help="CSV file to write (one row per learner)")
    p.add_argument("--data", default=None, metavar="FILE.npz",
                   help="train every learner on this TaskBuffer file (e.g. a run's train_buffer.npz, with its env "
                        "steps and data sources) instead of collecting the data section's exploration data; its suite "
                        "must be --suite")
    p.add_argument("--no-control", action="store_true", help="skip the control column")
    p.add_argument("--no-progress", action="store_true")
    add_config_flags(p, defaults)
    from meta_mbrl.evaluation.data_stats import DATA_SOURCES

    p = bsub.add_parser("data", usage="meta-mbrl bench data --out FILE.csv [--sources NAME ...] [--suite NAME] "
                        "[--tasks-per-class N] [--episodes-per-task N] [options]",
                        help="how often each data source moves an object, and how much of the object's space it covers",
                        description="Collects every data source on the suite's training tasks (--tasks-per-class per "
                        "class, --episodes-per-task each) and writes one row per (class, source): fraction of transitions "
                        "that move an object, occupied 1 cm voxels and std of object 1's position, env steps and env "
                        "steps per second, plus an 'all classes' row per source. --policy and --demo-episodes-per-task "
                        "do not apply (--sources chooses).")
    p.add_argument("--sources", nargs="+", default=["colored-noise", "demo"], choices=list(DATA_SOURCES),
                   help="data sources to compare (default: colored-noise demo); demo = Meta-World's scripted policies "
                        "with --demo-noise, training classes only")
    _add_preset(p, preset_help)
    p.add_argument("--out", required=True, help="CSV file to write")
    p.add_argument("--no-progress", action="store_true")
    add_config_flags(p, defaults, sections=["run", "data"])
    p = sub.add_parser("sweep", usage="meta-mbrl sweep [--preset NAME | --preset-file FILE] --space SPEC [SPEC ...] "
                       "--trials N --out DIR [--seeds S ...] [--objective NAME] [options]",
                       help="hyperparameter sweep with Optuna (optional extra): several seeds per point, pruning, "
                       "resumable; writes DIR/trials.csv and DIR/best_preset.json",
                       description="Searches config fields by their dotted names; every trial trains a run per seed "
                       "(collect, meta-train, few-shot benchmark, control) under DIR/trials/ and is scored by the "
                       "objective (mean over seeds, 95%% t-interval in DIR/trials.csv). A MedianPruner may stop a trial "
                       "from meta-training's query loss. The study is stored in DIR/sweep.db: run the same command again "
                       "to continue it. The best point goes to DIR/best_preset.json (meta-mbrl train --preset-file). "
                       "Other flags fix settings for every trial.")
    _add_preset(p, preset_help)
    p.add_argument("--space", nargs="+", required=True, metavar="SPEC",
                   help="path=kind:args per searched field: train.outer_lr=log:1e-4:1e-2, planner.horizon=int:5:20, "
                        "train.support=logint:8:128, learner.alpaca.half_life=float:4:32, learner.name=choice:maml,alpaca, "
                        "model.hidden=choice:32x32,64x64")
    p.add_argument("--trials", type=int, required=True, help="trials in total, counting earlier runs of this sweep")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1], help="run seeds per point (default: 0 1)")
    p.add_argument("--objective", default="kshot:dyn_mse",
                   help="kshot:dyn_mse|kshot:reward_mse|kshot:dyn_mse_h10 [@K] (adapted error at K, default the largest; "
                        "minimised), control:return|control:success (maximised), train:query_loss (default: kshot:dyn_mse)")
    p.add_argument("--out", required=True, metavar="DIR", help="the sweep's folder (sweep.db, trials.csv, best_preset.json)")
    p.add_argument("--study-name", default=None, help="study name in the storage (default: DIR's name)")
    p.add_argument("--storage", default=None, help="Optuna RDB URL (default: sqlite:///DIR/sweep.db)")
    p.add_argument("--sweep-seed", type=int, default=0, help="seeds the sampler (default: 0)")
    p.add_argument("--no-prune", action="store_true", help="run every trial to the end")
    p.add_argument("--no-progress", action="store_true")
    add_config_flags(p, defaults, sections=[s for s in ("data", "model", "learner", "train", "kshot", "planner", "control",
                                                         "agent")] + ["run"])
    return parser


def _train(args: argparse.Namespace, cfg, run_dir: str, progress: bool) -> None:
    import os

    from meta_mbrl import runs
    from meta_mbrl.errors import DistributedError

    world = os.environ.get("WORLD_SIZE", "1")
    if not args.distributed:
        if world.strip() not in ("", "1"):
            raise DistributedError(f"distributed: WORLD_SIZE is {world} (launched by torchrun?) but --distributed is not "
                                   "given: every process would train alone in the same run directory; add --distributed")
        runs.train_run(cfg, run_dir, progress=progress, resume_with_changes=args.resume_with_changes,
                       workers=args.workers, ray_address=args.ray_address)
        return
    from meta_mbrl.distributed.ddp import init_distributed, shutdown

    dist = init_distributed(cfg.device, args.dist_backend, timeout_s=args.dist_timeout)
    try:
        runs.train_run(cfg, run_dir, progress=progress and dist.is_main, resume_with_changes=args.resume_with_changes,
                       out=print if dist.is_main else (lambda *a, **k: None), dist=dist)
    finally:
        shutdown()


def _run(args: argparse.Namespace) -> None:
    if args.command == "plot":
        from meta_mbrl.evaluation.plots import plot_run

        for path in plot_run(args.run, args.out):
            print(path)
        return
    from meta_mbrl import runs

    if args.command == "data":
        if args.data_command == "export":
            runs.minari_export_run(args.buffer, args.suite, args.dataset_id, seed=args.seed, per_task=args.per_task,
                                   root=args.root, overwrite=args.overwrite)
        else:
            runs.minari_import_run(args.dataset_id, args.out, root=args.root)
        return
    overrides = overrides_from_args(args)
    progress = not args.no_progress
    if getattr(args, "workers", None) is not None or getattr(args, "ray_address", None) is not None:
        from meta_mbrl.distributed import require_ray

        require_ray("--workers" if args.workers is not None else "--ray-address")  # before any work
    if args.command == "sweep":
        from meta_mbrl.sweep import sweep

        overrides.pop("seed", None)  # --seeds
        if args.preset_file:
            base, file_overrides = load_preset_file(args.preset_file)
            overrides = {**{k: v for k, v in file_overrides.items() if k != "seed"}, **overrides}
        else:
            base = args.preset
        import pandas as pd

        table = sweep(base, args.space, trials=args.trials, seeds=args.seeds, objective=args.objective, out=args.out,
                      overrides=overrides, study_name=args.study_name, storage=args.storage, sweep_seed=args.sweep_seed,
                      prune=not args.no_prune, progress=progress)
        with pd.option_context("display.width", 250, "display.max_columns", 30):
            print(table.drop(columns=["run_dir"]).to_string(index=False, float_format=lambda v: f"{v:.4g}"))
        print(f"wrote {Path(args.out) / 'trials.csv'} and {Path(args.out) / 'best_preset.json'}")
    elif args.command == "train":
        cfg = _config(args, overrides)
        name = Path(args.preset_file).stem if args.preset_file else args.preset
        run_dir = args.run_dir or f"runs/{cfg.data.suite.replace(':', '_')}-{name}-seed{cfg.seed}"
        _train(args, cfg, run_dir, progress)
    elif args.command == "collect":
        runs.collect_run(_config(args, overrides), args.split, args.out, progress=progress,
                         workers=args.workers, ray_address=args.ray_address)
    elif args.command == "evaluate":
        if args.video is None and args.video_tasks is not None:
            raise ValueError(f"video_tasks: --video-tasks {args.video_tasks} needs --video DIR (where to write the GIFs)")
        if args.video_tasks is not None and args.video_tasks < 1:
            raise ValueError(f"video_tasks: expected an int >= 1, got {args.video_tasks}")
        if args.video is not None:
            import meta_mbrl.evaluation.video  # noqa: F401  # chooses MuJoCo's offscreen GL backend before MuJoCo loads
        runs.control_run(args.checkpoint, args.out, overrides=overrides, progress=progress, flat=args.flat,
                         workers=args.workers, ray_address=args.ray_address)
        if args.video is not None:
            runs.video_run(args.checkpoint, args.video, tasks=args.video_tasks, overrides=overrides)
    elif args.bench == "kshot":
        runs.kshot_run(args.checkpoint, args.out, overrides=overrides, progress=progress)
    elif args.bench == "transfer":
        runs.transfer_run(args.checkpoint, args.suite, args.out, amounts=args.amounts, tasks=args.tasks,
                          steps=args.finetune_steps, lr=args.finetune_lr, control=not args.no_control, units=args.units,
                          overrides=overrides, progress=progress)
    elif args.bench == "data":
        runs.data_run(_config(args, overrides), args.sources, args.out, progress=progress)
    else:
        from meta_mbrl.meta import LEARNER_NAMES

        runs.learners_run(_config(args, overrides), args.learners or list(LEARNER_NAMES), args.out,
                          control=not args.no_control, progress=progress, data=args.data)


def main(argv: list[str] | None = None) -> int:
    """Runs the command line; a user's mistake or a failed run prints one line on stderr and returns 2."""
    from meta_mbrl.errors import CollectionError
    from meta_mbrl.evaluation.plots import OptionalDependencyError

    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        preset, preset_overrides, preset_file = _preset_of(argv), None, _preset_file_of(argv)
        if preset_file is not None:
            preset, preset_overrides = load_preset_file(preset_file)
        args = build_parser(preset, preset_overrides).parse_args(argv)
        _run(args)
    except (ValueError, FloatingPointError, CollectionError, OSError, OptionalDependencyError) as e:  # OSError: a path that cannot be used
        msg = " ".join(str(e).split())
        print(f"meta-mbrl: error: {msg}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("meta-mbrl: interrupted; re-run the same command to resume from the last checkpoint", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
