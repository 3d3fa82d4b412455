"""Sweeps: a tiny Optuna sweep on point-mass writes its table and a loadable best preset, resumes from its storage,
prunes through meta_train's callback, and refuses bad specs by name. Optuna comes with the dev extra (not skipped)."""

import json

import optuna
import pandas as pd
import pytest

import task_suites
from meta_mbrl import MAML, DynamicsMLP, collect
from meta_mbrl.cli import main
from meta_mbrl.config import load_preset_file, make_config
from meta_mbrl.sweep import parse_objective, parse_space, sweep, t_interval
from meta_mbrl.training import load_checkpoint, meta_train

SPACE = ["train.outer_lr=log:1e-3:1e-2", "planner.horizon=int:3:6", "model.hidden=choice:16x16,32"]
FIXED = {"data.suite": "point-mass", "train.steps": 20}
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def swept(tmp_path_factory, one_thread):
    out = tmp_path_factory.mktemp("sweep") / "sw"
    notes: list[str] = []
    table = sweep("test", SPACE, trials=2, seeds=[0, 1], objective="kshot:dyn_mse@8", out=out, overrides=FIXED,
                  prune=False, log=notes.append)
    return out, table, notes


def test_sweep_writes_trials_with_intervals_and_a_best_preset_the_cli_loads(swept, tmp_path):
    out, table, _ = swept
    df = pd.read_csv(out / "trials.csv")
    assert len(df) == 2 and set(df["state"]) == {"complete"}
    assert {"mean", "ci_lo", "ci_hi", "seeds", "values", *[s.split("=")[0] for s in SPACE]} <= set(df.columns)
    assert (df["seeds"] == 2).all() and (df["ci_lo"] <= df["mean"]).all() and (df["mean"] <= df["ci_hi"]).all()
    for _, row in df.iterrows():  # the mean is the seeds' mean, and each seed ran in its own folder
        assert row["mean"] == pytest.approx(sum(map(float, row["values"].split())) / 2, rel=1e-5)
        assert (out / "trials" / f"{row['trial']:04d}" / "seed1" / "kshot.csv").exists()
    best = df.loc[df["mean"].idxmin()]
    base, overrides = load_preset_file(out / "best_preset.json")
    assert base == "test" and overrides["train.outer_lr"] == pytest.approx(best["train.outer_lr"])
    assert overrides["planner.horizon"] == best["planner.horizon"] and overrides["data.suite"] == "point-mass"
    run = tmp_path / "run"
    assert main(["train", "--preset-file", str(out / "best_preset.json"), "--kshot-windows", "1", "--run-dir", str(run),
                 "--no-progress"]) == 0
    cfg = json.loads((run / "config.json").read_text())["config"]
    assert cfg["train"]["outer_lr"] == pytest.approx(best["train.outer_lr"])
    assert cfg["planner"]["horizon"] == best["planner.horizon"] and cfg["train"]["steps"] == 20
    assert cfg["model"]["hidden"] == [int(v) for v in str(best["model.hidden"]).split("x")]
    assert cfg["kshot"]["windows"] == 1  # a flag still overrides the file


def test_sweep_resumes_from_storage_and_retries_a_killed_trial(swept):
    out, _, _ = swept
    study = optuna.load_study(study_name="sw", storage=f"sqlite:///{out / 'sweep.db'}")
    study.enqueue_trial({"train.outer_lr": 0.005, "planner.horizon": 4, "model.hidden": "32"})
    killed = study.ask()  # a trial left running, as by a sweep killed after drawing its point
    for d in parse_space(SPACE, "test", FIXED):
        d.suggest(killed)
    with pytest.raises(ValueError, match="other settings"):
        sweep("test", SPACE, trials=3, seeds=[0], objective="kshot:dyn_mse@8", out=out, overrides=FIXED, log=print)
    notes: list[str] = []
    table = sweep("test", SPACE, trials=3, seeds=[0, 1], objective="kshot:dyn_mse@8", out=out, overrides=FIXED,
                  prune=False, log=notes.append)
    assert any("tried again" in n for n in notes) and any("continuing" in n for n in notes)
    assert list(table["state"]) == ["complete", "complete", "fail", "complete"]
    retry = table.iloc[3]
    assert retry["train.outer_lr"] == 0.005 and retry["model.hidden"] == "32" and killed.number == 2
    assert len(pd.read_csv(out / "trials.csv")) == 4


def test_meta_train_callback_stops_early_and_resumes(tmp_path):
    suite = task_suites.make("point-mass")
    buf = collect(suite, suite.train_tasks[:2], episodes_per_task=1, progress=False)
    seen = []
    log = meta_train(MAML(DynamicsMLP(4, 2, hidden=(16,))), buf, steps=30, log_every=5, run_dir=tmp_path, progress=False,
                     callback=lambda step, row: seen.append((step, row["query_loss"])) or step >= 10)
    assert [s for s, _ in seen] == [5, 10] and log.attrs["stopped_at"] == 10 and list(log["step"]) == [5, 10]
    assert load_checkpoint(tmp_path)["step"] == 10  # stopped with a checkpoint: a later call continues
    log = meta_train(MAML(DynamicsMLP(4, 2, hidden=(16,))), buf, steps=30, log_every=5, run_dir=tmp_path, progress=False)
    assert list(log["step"]) == [15, 20, 25, 30] and "stopped_at" not in log.attrs

    def prune(step, row):
        raise optuna.TrialPruned(f"at {step}")

    with pytest.raises(optuna.TrialPruned, match="at 5"):
        meta_train(MAML(DynamicsMLP(4, 2, hidden=(16,))), buf, steps=30, log_every=5, progress=False, callback=prune)


def test_sweep_prunes_a_trial_through_the_callback(tmp_path):
    # a study whose two finished trials reported a query loss of 0 at every log step: a MedianPruner stops the next
    # trial at its first report (step 10), inside meta_train, before the few-shot benchmark
    out, space, overrides = tmp_path / "p", ["train.outer_lr=choice:0.01,0.001"], {**FIXED, "train.steps": 30}
    study = optuna.create_study(study_name="p", storage=f"sqlite:///{out.mkdir() or out / 'sweep.db'}")
    study.set_user_attr("sweep", {"base": "test", "overrides": overrides, "space": space, "seeds": [0],
                                  "objective": "train:query_loss"})
    for _ in range(2):
        study.add_trial(optuna.trial.create_trial(
            params={"train.outer_lr": 0.01}, value=0.0, intermediate_values={10: 0.0, 20: 0.0, 30: 0.0},
            distributions={"train.outer_lr": optuna.distributions.CategoricalDistribution([0.01, 0.001])}))
    df = sweep("test", space, trials=3, seeds=[0], objective="train:query_loss", out=out, overrides=overrides,
               log=lambda *a: None)
    assert list(df["state"]) == ["complete", "complete", "pruned"] and df["pruned_at"].iloc[2] == "seed 0 step 10"
    run = out / "trials" / "0002" / "seed0"
    assert len(pd.read_csv(run / "train_log.csv")) == 1 and not (run / "kshot.csv").exists()


@pytest.mark.parametrize("spec, match", [
    ("train.outr_lr=log:1e-4:1e-2", "unknown config field 'train.outr_lr'"),
    ("train.outer_lr=log:0:1e-2", "LOW > 0"),
    ("train.outer_lr=float:1e-2:1e-4", "LOW < HIGH"),
    ("planner.horizon=float:1:5", "int field; expected kind int, logint or choice"),
    ("planner.horizon=int:0:5", "planner.horizon"),
    ("learner.name=choice:maml,nope", "expected choices among"),
    ("seed=int:0:3", "seed is not searched"),
    ("train.outer_lr", "expected 'path=kind:args'"),
    ("data.suite=choice:point-mass", "also set by"),
])
def test_bad_space_specs_name_the_argument(spec, match):
    with pytest.raises(ValueError, match=match) as e:
        parse_space([spec], "test", {"data.suite": "point-mass"})
    assert str(e.value).startswith(f"space: {spec!r}")


def test_bad_objective_and_cli_errors(tmp_path, capsys):
    with pytest.raises(ValueError, match="objective: expected one of"):
        parse_objective("kshot:mse")
    with pytest.raises(ValueError, match="K=5 is not among"):
        parse_objective("kshot:dyn_mse@5", ks=(8, 16))
    assert parse_objective("control:return").direction == "maximize"
    mean, lo, hi = t_interval([2.0, 2.0])
    assert (mean, lo, hi) == (2.0, 2.0, 2.0)
    assert main(["sweep", "--preset", "test", "--space", "planner.horizon=int:9:3", "--trials", "1",
                 "--out", str(tmp_path / "s")]) == 2
    assert "space: 'planner.horizon=int:9:3'" in capsys.readouterr().err
    assert not (tmp_path / "s").exists()  # nothing written for a user's mistake
    assert make_config("test").planner.horizon == 4
