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
    args = ["train", "--suite", "point-mass", "--preset", "test", "--tasks-per-class", "0", "--run-dir", str(run),
            "--no-progress"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "Few-shot model benchmark" in out and "gap closed" in out
    for f in ("config.json", "checkpoint.pt", "train_log.csv", "kshot.csv", "train_buffer.npz"):
        assert (run / f).exists(), f
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


def test_cli_errors_name_the_argument(tmp_path, capsys):
    assert main(["bench", "kshot", "--checkpoint", str(tmp_path / "none"), "--out", str(tmp_path / "x.csv")]) == 2
    assert "checkpoint: no checkpoint file" in capsys.readouterr().err
    assert main(["train", "--suite", "nope", "--preset", "test", "--run-dir", str(tmp_path / "r")]) == 2
    assert "name: expected one of" in capsys.readouterr().err


@pytest.mark.metaworld
def test_train_ml10_tiny(tmp_path, capsys):
    run = tmp_path / "ml10"
    assert main(["train", "--suite", "ml10", "--preset", "test", "--run-dir", str(run), "--no-progress"]) == 0
    df = pd.read_csv(run / "kshot.csv")
    assert df.task.str.startswith("ml10/test/").all() and df.task.nunique() == 5
    assert (df.meta_train_env_steps == 10 * 500).all()
