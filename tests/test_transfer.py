"""Transfer metrics (Taylor & Stone 2009) on hand-made curves, the learning-curve runner and ``bench transfer``."""

import math

import numpy as np
import pandas as pd
import pytest

from meta_mbrl.evaluation.transfer import transfer_metrics, transfer_table

AMOUNTS = [0, 10, 100, 1000]


def _area(y):
    """Hand trapezoid over log(1 + amount) of AMOUNTS, divided by the span log(1001)."""
    x = [math.log(1 + a) for a in AMOUNTS]
    return sum((y[i] + y[i + 1]) / 2 * (x[i + 1] - x[i]) for i in range(3)) / x[-1]


def test_metrics_of_a_hand_made_error_curve_where_the_prior_helps():
    transfer, scratch = [0.5, 0.3, 0.2, 0.1], [2.0, 1.0, 0.4, 0.1]  # errors: lower is better
    m = transfer_metrics(AMOUNTS, transfer, scratch, higher_is_better=False)
    assert m["jump_start"] == pytest.approx(1.5) and m["start_amount"] == 0
    assert m["threshold"] == pytest.approx(0.1)  # default: the scratch asymptote
    assert m["time_to_threshold_transfer"] == 1000 and m["time_to_threshold_scratch"] == 1000
    assert m["auc_transfer"] == pytest.approx(_area(transfer)) and m["auc_scratch"] == pytest.approx(_area(scratch))
    # errors: better is positive, so the ratio is (AUC_scratch - AUC_transfer) / |AUC_scratch|
    assert m["transfer_ratio"] == pytest.approx((_area(scratch) - _area(transfer)) / _area(scratch))
    assert m["asymptote_transfer"] == 0.1 and m["asymptotic_gain"] == pytest.approx(0.0)
    assert m["gain"] == pytest.approx([1.5, 0.7, 0.2, 0.0]) and m["negative_at"] == [] and not m["negative_transfer"]
    # a given threshold: transfer reaches 0.3 at 10, scratch at 1000 -> 990 transitions saved
    m = transfer_metrics(AMOUNTS, transfer, scratch, higher_is_better=False, threshold=0.3)
    assert (m["time_to_threshold_transfer"], m["time_to_threshold_scratch"], m["threshold_saved"]) == (10, 1000, 990)
    # never reached: NaN
    m = transfer_metrics(AMOUNTS, transfer, scratch, higher_is_better=False, threshold=0.05)
    assert math.isnan(m["time_to_threshold_transfer"]) and math.isnan(m["threshold_saved"])


def test_negative_transfer_is_flagged_where_the_prior_hurts_higher_is_better():
    transfer, scratch = [0.1, 0.2, 0.3, 0.5], [0.0, 0.4, 0.7, 0.9]  # success: higher is better
    m = transfer_metrics(AMOUNTS, transfer, scratch, higher_is_better=True)
    assert m["jump_start"] == pytest.approx(0.1)  # the prior helps with no data ...
    assert m["negative_at"] == [10, 100, 1000] and m["negative_transfer"]  # ... and hurts after
    assert m["transfer_ratio"] == pytest.approx((_area(transfer) - _area(scratch)) / _area(scratch)) and m["transfer_ratio"] < 0
    assert math.isnan(m["time_to_threshold_transfer"]) and m["time_to_threshold_scratch"] == 1000  # threshold 0.9
    assert m["asymptotic_gain"] == pytest.approx(-0.4)
    # the same curves read as errors: the signs flip
    e = transfer_metrics(AMOUNTS, transfer, scratch, higher_is_better=False)
    assert e["jump_start"] == pytest.approx(-0.1) and e["negative_at"] == [0] and not e["negative_transfer"]
    assert e["time_to_threshold_transfer"] == 0  # an error <= 0.9 from the start


def test_bad_input_names_the_argument():
    with pytest.raises(ValueError, match=r"^transfer: expected 4 values \(one per amount\), got 3"):
        transfer_metrics(AMOUNTS, [1, 2, 3], [1, 2, 3, 4], higher_is_better=True)
    with pytest.raises(ValueError, match=r"^amounts: expected strictly increasing amounts >= 0, got \[0.0, 10.0, 5.0\]"):
        transfer_metrics([0, 10, 5], [1, 2, 3], [1, 2, 3], higher_is_better=True)
    with pytest.raises(ValueError, match="^amounts: expected strictly increasing"):
        transfer_metrics([-1, 10], [1, 2], [1, 2], higher_is_better=True)
    with pytest.raises(ValueError, match="^scratch: expected finite values"):
        transfer_metrics([0, 10], [1, 2], [1, float("nan")], higher_is_better=True)
    with pytest.raises(ValueError, match="^threshold: expected a finite number"):
        transfer_metrics([0, 10], [1, 2], [1, 2], higher_is_better=True, threshold=float("inf"))
    with pytest.raises(ValueError, match="^curves: expected columns"):
        transfer_table(pd.DataFrame({"amount": [0]}))


def test_table_leaves_out_curves_that_are_not_finite():
    curves = pd.DataFrame({"amount": [0, 10] * 4, "arm": (["transfer"] * 2 + ["scratch"] * 2) * 2,
                           "metric": ["dyn_mse"] * 4 + ["success"] * 4,
                           "value": [0.5, 0.1, 2.0, 0.3, np.nan, np.nan, np.nan, np.nan]})
    t = transfer_table(curves)
    assert t["metric"].tolist() == ["dyn_mse"] and not t["higher_is_better"].iloc[0]


@pytest.fixture(scope="module")
def pm_prior(tmp_path_factory, one_thread):
    """A small ALPaCA prior meta-trained on point-mass (seed 0), as a run directory."""
    from meta_mbrl.cli import main

    run = tmp_path_factory.mktemp("transfer") / "prior"
    assert main(["train", "--suite", "point-mass", "--preset", "test", "--learner", "alpaca", "--tasks-per-class", "0",
                 "--episodes-per-task", "2", "--hidden", "32", "32", "--steps", "150", "--kshot-oracle-steps", "20",
                 "--kshot-oracle-transitions", "200", "--run-dir", str(run), "--no-progress"]) == 0
    return run


def test_finetuned_prior_beats_scratch_at_a_small_amount(pm_prior, one_thread):
    import task_suites
    from meta_mbrl.evaluation.transfer import transfer_curves
    from meta_mbrl.training import learner_from_checkpoint, load_checkpoint

    learner = learner_from_checkpoint(load_checkpoint(pm_prior))
    target = task_suites.make("point-mass", seed=1)  # other masses, dampings and goals than the prior's
    curves, info = transfer_curves(learner, target, target.test_tasks[:4], [0, 20], steps=100, eval_episodes=1,
                                   windows=4, eval_length=20, seed=1)
    assert set(curves.columns) == {"amount", "arm", "metric", "value", "target_env_steps"}
    wide = curves.pivot_table(index=["metric", "amount"], columns="arm", values="value")
    # a prior of the same family predicts the dynamics better than scratch, with no data and with 20 transitions
    assert wide.loc[("dyn_mse", 0), "transfer"] < wide.loc[("dyn_mse", 0), "scratch"]
    assert wide.loc[("dyn_mse", 20), "transfer"] < wide.loc[("dyn_mse", 20), "scratch"]
    assert curves.loc[curves["amount"] == 20, "target_env_steps"].unique().tolist() == [80]
    assert info["target_env_steps"] == 4 * 50  # one 50-step episode per task holds the 20 transitions


def test_bench_transfer_cli_writes_curves_metrics_and_plot(pm_prior, tmp_path, capsys, one_thread):
    from meta_mbrl.cli import main

    out = tmp_path / "pm.csv"
    args = ["bench", "transfer", "--checkpoint", str(pm_prior), "--suite", "point-mass", "--out", str(out),
            "--amounts", "0", "20", "--tasks", "2", "--finetune-steps", "20", "--seed", "1", "--kshot-windows", "2",
            "--kshot-eval-episodes", "1", "--control-max-episode-steps", "10", "--no-progress"]
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "Taylor & Stone" in text and "jump_start" in text
    curves = pd.read_csv(out)
    assert {"amount", "arm", "metric", "value", "target_env_steps", "data_source", "seed", "target_suite"} <= set(curves.columns)
    assert set(curves["metric"]) == {"dyn_mse", "reward_mse", "dyn_mse_h10", "success", "return"}
    assert curves["data_source"].unique().tolist() == ["rl"] and curves["seed"].unique().tolist() == [1]
    metrics = pd.read_csv(tmp_path / "pm.metrics.csv")
    assert "return" in set(metrics["metric"]) and "success" not in set(metrics["metric"])  # point-mass: no success
    assert {"jump_start", "time_to_threshold_transfer", "transfer_ratio", "negative_transfer"} <= set(metrics.columns)
    pytest.importorskip("matplotlib")
    assert (tmp_path / "pm.png").stat().st_size > 0


@pytest.mark.parametrize("extra, message", [
    (["--suite", "nowhere"], "meta-mbrl: error: suite: cannot make target suite 'nowhere'"),
    (["--suite", "point-mass", "--amounts", "0", "30", "10"], "meta-mbrl: error: amounts: expected strictly increasing"),
])
def test_bench_transfer_cli_bad_arguments_exit_2(pm_prior, tmp_path, capsys, extra, message):
    from meta_mbrl.cli import main

    assert main(["bench", "transfer", "--checkpoint", str(pm_prior), "--out", str(tmp_path / "x.csv"), *extra]) == 2
    err = capsys.readouterr().err
    assert err.startswith(message) and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "x.csv").exists()


def test_target_suite_with_other_dims_is_refused(pm_prior):
    import task_suites
    from meta_mbrl.evaluation.transfer import transfer_curves
    from meta_mbrl.meta import MAML
    from meta_mbrl.models import DynamicsMLP

    with pytest.raises(ValueError, match=r"^suite: point-mass has obs/act dims \(4, 2\), the prior's network \(5, 2\)"):
        suite = task_suites.make("point-mass")
        transfer_curves(MAML(DynamicsMLP(5, 2, hidden=(8,))), suite, suite.test_tasks[:1], [0])
