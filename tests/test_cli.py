"""The command line end to end on the fast suite (and ML10 at a tiny budget under the marker)."""

import json
import subprocess
import sys

import pandas as pd
import pytest

from meta_mbrl.cli import main
from meta_mbrl.config import SECTIONS, config_paths, field_docs, make_config, section_of
from meta_mbrl.config.cli_args import flag_of

KSHOT_COLUMNS = {"task", "method", "k", "dyn_mse", "reward_mse", "dyn_mse_h10"}


def test_every_config_field_has_a_docstring_and_a_flag_in_its_section():
    help_text = subprocess.run([sys.executable, "-m", "meta_mbrl.cli", "train", "--help"], capture_output=True,
                               text=True, check=True).stdout
    for path, f in config_paths().items():
        assert field_docs(section_of(path)).get(f.name), f"{path} has no docstring"
        assert flag_of(path) in help_text, path
    for name in SECTIONS:
        assert f"\n{name}:\n" in help_text  # one argument group per section
    assert "--learner {maml,fomaml,metasgd,anil,reptile,cadm,pearl,multitask,finetune,alpaca}" in help_text


def test_help_shows_the_chosen_presets_defaults_and_version():
    run = lambda *a: subprocess.run([sys.executable, "-m", "meta_mbrl.cli", *a], capture_output=True, text=True,  # noqa: E731
                                    check=True).stdout
    quick, full = run("train", "--help"), run("train", "--preset", "full", "--help")
    pick = lambda text: " ".join(text.split("--steps STEPS")[1].split("--tasks-per-batch")[0].split())  # noqa: E731
    assert "(default: 2000)" in pick(quick) and "(default: 20000)" in pick(full)
    assert run("--version").startswith("meta-mbrl ")


def test_make_config_rejects_bad_values():
    with pytest.raises(ValueError, match="preset: expected one of"):
        make_config("huge")
    with pytest.raises(ValueError, match="train.steps: expected an integer >= 1, got 0"):
        make_config("quick", steps=0)
    with pytest.raises(ValueError, match=r"overrides: unknown config fields \['stepz'\]"):
        make_config("quick", stepz=3)
    with pytest.raises(ValueError, match="model.hidden: expected a non-empty sequence of integers >= 1"):
        make_config("quick", hidden=(0,))
    with pytest.raises(ValueError, match=r"learner.maml.inner_lr: expected a finite number in \(0.0, 10000.0\], got nan"):
        make_config("quick", inner_lr=float("nan"))
    with pytest.raises(ValueError, match="train.steps: expected an integer >= 1, got 1.5"):
        make_config("quick", steps=1.5)
    with pytest.raises(ValueError, match="learner.cadm.encoder_activation: expected one of"):
        make_config("quick", {"learner.cadm.encoder_activation": "gelu"})


def test_learner_sections_reach_the_learner(tmp_path):
    from meta_mbrl.config import learner_kwargs
    from meta_mbrl.runs import build_learner

    cfg = make_config("test", {"learner.name": "pearl", "learner.pearl.kl_weight": 0.5, "learner.pearl.context_dim": 3})
    learner = build_learner(cfg, 4, 2)
    assert learner.kl_weight == 0.5 and learner.model.context_dim == 3
    assert "first_order" not in learner_kwargs(make_config("test", learner="fomaml"))
    assert build_learner(make_config("test", learner="fomaml"), 4, 2).first_order


def test_bad_device_fails_before_any_work(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--suite", "point-mass", "--preset", "test", "--device", "cuda", "--run-dir", str(run),
                 "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("meta-mbrl: error: device:") and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (run / "train_buffer.npz").exists()


def test_train_then_bench_kshot_on_point_mass(tmp_path, capsys):
    run = tmp_path / "run"
    args = ["train", "--suite", "point-mass", "--preset", "test", "--tasks-per-class", "0", "--kshot-oracle-steps", "300",
            "--kshot-oracle-transitions", "2000", "--run-dir", str(run), "--no-progress"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "Few-shot model benchmark" in out and "gap closed" in out
    assert "Control on held-out test tasks" in out
    for f in ("config.json", "checkpoint.pt", "train_log.csv", "kshot.csv", "train_buffer.npz", "control.csv"):
        assert (run / f).exists(), f
    control = pd.read_csv(run / "control.csv")
    assert len(control) == 10 and control.eval_return.notna().all()
    df = pd.read_csv(run / "kshot.csv")
    assert KSHOT_COLUMNS <= set(df.columns)
    assert set(df.method) == {"prior", "adapted", "scratch", "oracle", "persistence", "context_mean", "ridge"}
    summary = pd.read_csv(run / "kshot.summary.csv")
    assert {"k", "method", "dyn_mse", "dyn_mse_lo", "dyn_mse_hi", "reward_mse_lo"} <= set(summary.columns)
    assert (summary.dyn_mse_lo <= summary.dyn_mse).all() and (summary.dyn_mse <= summary.dyn_mse_hi).all()
    assert set(df.k) == {8, 16}
    doc = json.loads((run / "config.json").read_text())
    assert doc["config"]["data"]["suite"] == "point-mass" and doc["environment"]["versions"]["torch"]
    assert doc["environment"]["torch_threads"] >= 1 and "git_commit" in doc["environment"]
    # the oracle, trained on that very task, must beat the unadapted prior
    mean = df.groupby("method").dyn_mse.mean()
    assert mean["oracle"] < mean["prior"]

    # re-running resumes and reuses every finished stage; a changed setting is refused
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "reusing" in out and "few-shot benchmark: inputs unchanged" in out and "control: inputs unchanged" in out
    assert main([*args[:-1], "--hidden", "8", "--no-progress"]) == 2
    assert "holds a run with other settings" in capsys.readouterr().err

    out_csv = tmp_path / "k.csv"
    assert main(["bench", "kshot", "--checkpoint", str(run), "--out", str(out_csv), "--kshot-ks", "4", "--no-progress"]) == 0
    assert set(pd.read_csv(out_csv).k) == {4}
    assert "reusing" in capsys.readouterr().out  # the evaluation data and oracles are not collected and fit again
    assert main(args) == 0  # another benchmark file does not invalidate the run's own stages
    assert "few-shot benchmark: inputs unchanged" in capsys.readouterr().out

    ctl = tmp_path / "c.csv"
    assert main(["evaluate", "--checkpoint", str(run), "--out", str(ctl), "--planner", "mppi", "--plan-horizon", "3",
                 "--no-progress"]) == 0
    c = pd.read_csv(ctl)
    assert set(c.planner) == {"mppi"} and set(c.plan_horizon) == {3} and c.mean_return.notna().all()
    assert {"adaptation_episodes", "evaluation_episodes", "adapt_env_steps", "meta_train_sources"} <= set(c.columns)
    # by default evaluate writes a new numbered file, never the main job's control.csv
    before = (run / "control.csv").read_bytes()
    assert main(["evaluate", "--checkpoint", str(run), "--no-progress"]) == 0
    assert main(["evaluate", "--checkpoint", str(run), "--no-progress"]) == 0
    assert (run / "control.csv").read_bytes() == before
    assert sorted(p.name for p in (run / "evaluations").iterdir()) == ["control-001.csv", "control-002.csv"]
    assert main(["evaluate", "--checkpoint", str(run), "--planner", "cem", "--plan-population", "0"]) == 2
    assert "planner.population: expected an integer >= 1" in capsys.readouterr().err


def test_cli_errors_name_the_argument(tmp_path, capsys):
    assert main(["bench", "kshot", "--checkpoint", str(tmp_path / "none"), "--out", str(tmp_path / "x.csv")]) == 2
    assert "checkpoint: no checkpoint file" in capsys.readouterr().err
    assert main(["train", "--suite", "nope", "--preset", "test", "--run-dir", str(tmp_path / "r")]) == 2
    assert "name: expected one of" in capsys.readouterr().err
    # the few-shot windows must fit the suite's episodes; checked before any data is collected or trained
    assert main(["train", "--suite", "point-mass", "--preset", "quick", "--run-dir", str(tmp_path / "pm")]) == 2
    assert "kshot.ks: the largest context (512) plus kshot.eval_length (32) is 544" in capsys.readouterr().err
    assert not (tmp_path / "pm" / "train_buffer.npz").exists()
    (tmp_path / "a-file").write_text("")
    assert main(["train", "--suite", "point-mass", "--preset", "test", "--run-dir", str(tmp_path / "a-file")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("meta-mbrl: error:") and "a-file" in err and len(err.strip().splitlines()) == 1


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
    assert main(["evaluate", "--checkpoint", str(run), "--out", str(ctl), "--plan-propagation", "ts1",
                 "--plan-particles", "2"]) == 0
    assert pd.read_csv(ctl).eval_return.notna().all()
    assert main(["evaluate", "--checkpoint", str(run), "--plan-particles", "3"]) == 2
    assert "planner.particles: expected a multiple of learner.ensemble (2)" in capsys.readouterr().err
    assert main(["train", "--suite", "point-mass", "--preset", "test", "--ensemble", "0", "--run-dir",
                 str(tmp_path / "bad"), "--no-progress"]) == 2
    assert "learner.ensemble: expected an integer >= 1" in capsys.readouterr().err
    # cadm adapts without gradient steps: --control-adapt-steps is refused by name, before any work
    assert main(["evaluate", "--checkpoint", str(run), "--control-adapt-steps", "3"]) == 2
    assert "control.adapt_steps: cadm" in capsys.readouterr().err


def test_a_diverged_run_continues_from_its_last_good_checkpoint_with_changes(tmp_path, capsys, monkeypatch):
    import torch

    from meta_mbrl.meta import MAML
    from meta_mbrl.training import load_checkpoint

    run = tmp_path / "run"
    args = ["train", "--suite", "point-mass", "--preset", "test", "--run-dir", str(run), "--no-progress"]
    real, calls = MAML.meta_loss, {"n": 0}

    def blows_up_at_step_15(self, batch):
        calls["n"] += 1
        loss, info = real(self, batch)
        return (loss * float("nan") if calls["n"] == 15 else loss), info

    monkeypatch.setattr(MAML, "meta_loss", blows_up_at_step_15)
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "loss:" in err and "step 15" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert "step 10" in err and "--resume-with-changes" in err  # where the last good checkpoint is, and how to go on
    assert load_checkpoint(run)["step"] == 10  # the last good checkpoint, finite and loadable
    monkeypatch.setattr(MAML, "meta_loss", real)

    # the same run with a lower outer lr: refused without the flag, continued from step 10 with it
    assert main([*args, "--outer-lr", "5e-4"]) == 2
    assert "--resume-with-changes" in capsys.readouterr().err
    assert main([*args, "--outer-lr", "5e-4", "--resume-with-changes"]) == 0
    ckpt = load_checkpoint(run)
    assert ckpt["step"] == 30 and all(bool(torch.isfinite(v).all()) for v in ckpt["state_dict"].values())
    doc = json.loads((run / "config.json").read_text())
    assert doc["config"]["train"]["outer_lr"] == 5e-4
    assert doc["changes"] == [{"at_step": 10, "changes": {"train.outer_lr": [1e-3, 5e-4]}}]


def test_control_evaluation_shows_progress(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--suite", "point-mass", "--preset", "test", "--steps", "10", "--run-dir", str(run),
                 "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["evaluate", "--checkpoint", str(run)]) == 0
    assert "control point-mass" in capsys.readouterr().err  # the bar, on stderr


def test_train_the_recommended_learner_end_to_end_on_point_mass(tmp_path, capsys):
    """ALPaCA with a learned half-life (a 0-dim parameter) through collect, meta-train, few-shot and control."""
    run = tmp_path / "alpaca"
    args = ["train", "--suite", "point-mass", "--preset", "test", "--learner", "alpaca", "--alpaca-half-life", "8",
            "--support", "4", "--support-max", "12", "--tasks-per-class", "0", "--run-dir", str(run), "--no-progress"]
    assert main(args) == 0, capsys.readouterr().err
    df = pd.read_csv(run / "kshot.csv")
    assert {"persistence", "context_mean", "ridge"} <= set(df.method) and (run / "kshot.summary.csv").exists()
    assert main(args) == 0 and "few-shot benchmark: inputs unchanged" in capsys.readouterr().out


def test_train_with_the_value_agent_writes_both_control_tables_and_resumes(tmp_path, capsys):
    run = tmp_path / "va"
    args = ["train", "--suite", "point-mass", "--preset", "test", "--agent-env-steps", "400", "--agent-hidden", "16", "16",
            "--agent-tasks-per-round", "2", "--run-dir", str(run), "--no-progress"]
    assert main(args) == 0
    value, flat = pd.read_csv(run / "control.csv"), pd.read_csv(run / "control_flat.csv")
    assert set(value["agent"]) == {"value-guided (plan)"} and set(flat["agent"]) == {"flat planner"}
    assert (value["policy_samples"] == 24).all() and (flat["policy_samples"] == 0).all()
    assert (value["train_env_steps"] == 400).all() and (value["track"] == "rl").all()
    log = pd.read_csv(run / "agent_log.csv")
    assert log["env_steps"].iloc[-1] == 400 and log["updates"].iloc[-1] > 0
    capsys.readouterr()
    assert main(args) == 0  # everything reused
    out = capsys.readouterr().out
    assert "resumed the value agent" in out and "reusing" in out
    assert main(["evaluate", "--checkpoint", str(run), "--agent-mode", "policy", "--out", str(tmp_path / "p.csv"),
                 "--no-progress"]) == 0
    assert set(pd.read_csv(tmp_path / "p.csv")["agent"]) == {"value-guided (policy)"}
