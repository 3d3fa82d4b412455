"""The command line end to end on the fast suite (and ML10 at a tiny budget under the marker)."""

import json
import subprocess
import sys

import pandas as pd
import pytest

from meta_mbrl.cli import main
from meta_mbrl.config import TrainConfig, field_docs, make_config

KSHOT_COLUMNS = {"task", "method", "k", "dyn_mse", "reward_mse", "dyn_mse_h10"}


def test_every_config_field_has_a_docstring_and_a_flag():
    docs = field_docs(TrainConfig)
    assert set(docs) == set(TrainConfig.__dataclass_fields__)
    help_text = subprocess.run([sys.executable, "-m", "meta_mbrl.cli", "train", "--help"], capture_output=True,
                               text=True, check=True).stdout
    for name in docs:
        assert "--" + name.replace("_", "-") in help_text


def test_make_config_rejects_bad_values():
    with pytest.raises(ValueError, match="preset: expected one of"):
        make_config("huge")
    with pytest.raises(ValueError, match="steps: expected >= 1, got 0"):
        make_config("quick", steps=0)
    with pytest.raises(ValueError, match=r"overrides: unknown config fields \['stepz'\]"):
        make_config("quick", stepz=3)


def test_train_then_bench_kshot_on_point_mass(tmp_path, capsys):
    run = tmp_path / "run"
    args = ["train", "--suite", "point-mass", "--preset", "test", "--tasks-per-class", "0", "--oracle-steps", "300",
            "--oracle-transitions", "2000", "--run-dir", str(run), "--no-progress"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "Few-shot model benchmark" in out and "gap closed" in out
    assert "Control on held-out test tasks" in out
    for f in ("config.json", "checkpoint.pt", "train_log.csv", "kshot.csv", "train_buffer.npz", "control.csv"):
        assert (run / f).exists(), f
    control = pd.read_csv(run / "control.csv")
    assert len(control) == 10 and control.eval_return.notna().all()
    df = pd.read_csv(run / "kshot.csv")
    assert KSHOT_COLUMNS <= set(df.columns) and set(df.method) == {"prior", "adapted", "scratch", "oracle"}
    assert set(df.k) == {8, 16}
    assert json.loads((run / "config.json").read_text())["suite"] == "point-mass"
    # the oracle, trained on that very task, must beat the unadapted prior
    mean = df.groupby("method").dyn_mse.mean()
    assert mean["oracle"] < mean["prior"]

    # re-running resumes (nothing to redo) and a changed setting is refused
    assert main(args) == 0
    assert main([*args[:-1], "--hidden", "8", "--no-progress"]) == 2
    assert "holds a run with other settings" in capsys.readouterr().err

    out_csv = tmp_path / "k.csv"
    assert main(["bench", "kshot", "--checkpoint", str(run), "--out", str(out_csv), "--ks", "4", "--no-progress"]) == 0
    assert set(pd.read_csv(out_csv).k) == {4}

    ctl = tmp_path / "c.csv"
    assert main(["evaluate", "--checkpoint", str(run), "--out", str(ctl), "--planner", "mppi", "--horizon", "3"]) == 0
    assert set(pd.read_csv(ctl).planner) == {"mppi"}
    assert main(["evaluate", "--checkpoint", str(run), "--planner", "cem", "--population", "0"]) == 2
    assert "plan_population: expected >= 1" in capsys.readouterr().err


def test_cli_errors_name_the_argument(tmp_path, capsys):
    assert main(["bench", "kshot", "--checkpoint", str(tmp_path / "none"), "--out", str(tmp_path / "x.csv")]) == 2
    assert "checkpoint: no checkpoint file" in capsys.readouterr().err
    assert main(["train", "--suite", "nope", "--preset", "test", "--run-dir", str(tmp_path / "r")]) == 2
    assert "name: expected one of" in capsys.readouterr().err
    # the few-shot windows must fit the suite's episodes; checked before any data is collected or trained
    assert main(["train", "--suite", "point-mass", "--preset", "quick", "--run-dir", str(tmp_path / "pm")]) == 2
    assert "kshot_ks: the largest context (128) plus kshot_eval_length (32) is 160" in capsys.readouterr().err
    assert not (tmp_path / "pm" / "train_buffer.npz").exists()


@pytest.mark.metaworld
def test_train_ml10_tiny(tmp_path, capsys):
    run = tmp_path / "ml10"
    assert main(["train", "--suite", "ml10", "--preset", "test", "--run-dir", str(run), "--no-progress"]) == 0
    df = pd.read_csv(run / "kshot.csv")
    assert df.task.str.startswith("ml10/test/").all() and df.task.nunique() == 5
    assert (df.meta_train_env_steps == 10 * 500).all()
    out = capsys.readouterr().out
    assert "judged by metaworld.evaluation.metalearning_evaluation" in out and "mean success rate" in out
    control = pd.read_csv(run / "control.csv")
    assert sorted(control.task_class) == sorted(["door-close-v3", "drawer-open-v3", "lever-pull-v3", "shelf-place-v3",
                                                 "sweep-into-v3"])
    assert control.success_rate.between(0, 1).all()


def test_model_based_rounds_from_the_cli(tmp_path):
    run = tmp_path / "mb"
    args = ["train", "--suite", "point-mass", "--preset", "test", "--tasks-per-class", "0", "--mb-rounds", "2",
            "--mb-tasks-per-class", "0", "--run-dir", str(run), "--no-progress"]
    assert main(args) == 0
    from meta_mbrl.training import load_checkpoint

    ckpt = load_checkpoint(run)
    # 40 tasks x 50 steps of colored noise, then one agent round on the same 40 tasks
    assert ckpt["env_steps"] == 2 * 40 * 50 and ckpt["sources"][-1]["policy"] == "mpc-agent/round1"


def test_ensemble_from_the_cli_trains_evaluates_and_resumes(tmp_path, capsys):
    run = tmp_path / "run"
    args = ["train", "--suite", "point-mass", "--preset", "test", "--learner", "cadm", "--ensemble", "2",
            "--plan-propagation", "tsinf", "--plan-particles", "4", "--kshot-tasks-per-class", "1", "--run-dir", str(run),
            "--no-progress"]
    assert main(args) == 0
    assert "Control on held-out test tasks" in capsys.readouterr().out
    from meta_mbrl.meta import Ensemble
    from meta_mbrl.training import learner_from_checkpoint

    learner = learner_from_checkpoint(run)
    assert isinstance(learner, Ensemble) and learner.size == 2 and learner.member == "cadm"
    ctl = tmp_path / "c.csv"
    assert main(["evaluate", "--checkpoint", str(run), "--out", str(ctl), "--propagation", "ts1", "--particles", "2"]) == 0
    assert pd.read_csv(ctl).eval_return.notna().all()
    assert main(["evaluate", "--checkpoint", str(run), "--particles", "3"]) == 2
    assert "plan_particles: expected a multiple of ensemble (2)" in capsys.readouterr().err
    assert main(["train", "--suite", "point-mass", "--preset", "test", "--ensemble", "0", "--run-dir",
                 str(tmp_path / "bad"), "--no-progress"]) == 2
    assert "ensemble: expected >= 1" in capsys.readouterr().err
