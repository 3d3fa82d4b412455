"""Plots of a run (training curve, few-shot error against K, control) and GIFs of the adapted agent."""

import ctypes.util

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("matplotlib")
from matplotlib.figure import Figure  # noqa: E402
from PIL import Image  # noqa: E402

from meta_mbrl.cli import main  # noqa: E402
from meta_mbrl.evaluation import (  # noqa: E402
    RenderUnavailable,
    bootstrap_ci,
    plot_control,
    plot_kshot,
    plot_run,
    plot_training_curve,
    render_env,
    rollout_frames,
    save_gif,
)

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: extra threads only contend

PNGS = ["training_curve.png", "kshot_dyn_mse.png", "kshot_reward_mse.png", "control.png"]


def axes():
    return Figure().subplots()


def kshot_table(tasks=5, learners=None, seed=0):
    rng = np.random.default_rng(seed)
    level = {"prior": 0.5, "adapted": 0.2, "scratch": 0.8, "oracle": 0.05}
    rows = []
    for learner in learners or [None]:
        for method, base in level.items():
            for k in (8, 32, 128):
                for t in range(tasks):
                    row = {"task": f"point-mass/test/{t:02d}", "method": method, "k": k,
                           "dyn_mse": base * (1 + 0.3 * rng.standard_normal()) ** 2 / (k / 8) ** (method == "adapted"),
                           "reward_mse": base / 2 + 0.01 * rng.random()}
                    if learner is not None:
                        row = {"learner": learner, **row}
                    rows.append(row)
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, one_thread):
    run = tmp_path_factory.mktemp("pm_run")
    assert main(["train", "--suite", "point-mass", "--preset", "test", "--steps", "10", "--run-dir", str(run),
                 "--no-progress"]) == 0
    return run


# ---------------------------------------------------------------------------------------------- statistics
def test_bootstrap_ci_contains_the_mean_and_narrows_with_more_rows():
    rng = np.random.default_rng(0)
    widths = []
    for n in (8, 64, 512):
        x = rng.normal(1.0, 0.5, size=n)
        mean, low, high = bootstrap_ci(x, seed=0)
        assert mean == pytest.approx(x.mean()) and low < mean < high
        widths.append(high - low)
    assert widths[0] > widths[1] > widths[2]
    assert bootstrap_ci([3.0]) == (3.0, 3.0, 3.0)
    assert bootstrap_ci([1.0, 2.0, 3.0], seed=1) == bootstrap_ci([1.0, 2.0, 3.0], seed=1)  # seeded
    with pytest.raises(ValueError, match="values: expected at least one number"):
        bootstrap_ci([np.nan])
    with pytest.raises(ValueError, match="level: expected a number in"):
        bootstrap_ci([1.0, 2.0], level=95)


# ---------------------------------------------------------------------------------------------- plots
def test_plot_kshot_draws_one_line_per_method_with_its_interval():
    df = kshot_table()
    ax = plot_kshot(df, ax=axes())
    assert [line.get_label() for line in ax.get_lines()] == ["prior", "adapted", "scratch", "oracle"]
    assert all(line.get_xdata().tolist() == [8, 32, 128] for line in ax.get_lines())
    assert ax.get_xscale() == "log" and "95% bootstrap CI over tasks" in ax.get_title()
    assert len(ax.collections) == 4  # one band per line
    adapted = ax.get_lines()[1].get_ydata()
    assert adapted[0] == pytest.approx(df[(df.method == "adapted") & (df.k == 8)].dyn_mse.mean())
    band = ax.collections[1].get_paths()[0].vertices[:, 1]
    assert band.min() <= adapted.min() and band.max() >= adapted.max()

    # a naive baseline added later is drawn like any method; `methods` picks and orders
    more = pd.concat([df, df[df.method == "prior"].assign(method="persistence", dyn_mse=0.3)])
    assert [line.get_label() for line in plot_kshot(more, ax=axes()).get_lines()][-1] == "persistence"
    ax = plot_kshot(more, metric="reward_mse", ax=axes(), methods=["oracle", "persistence"])
    assert [line.get_label() for line in ax.get_lines()] == ["oracle", "persistence"]
    with pytest.raises(ValueError, match="methods: expected a non-empty subset"):
        plot_kshot(df, ax=axes(), methods=["ridge"])
    with pytest.raises(ValueError, match="metric: expected a column of df"):
        plot_kshot(df, metric="dyn_mae", ax=axes())
    with pytest.raises(ValueError, match="df: expected columns"):
        plot_kshot(df.drop(columns="k"), ax=axes())


def test_plot_kshot_with_a_learner_column_draws_each_learners_adapted_model():
    df = kshot_table(learners=["maml", "cadm"])
    ax = plot_kshot(df, ax=axes())
    labels = [line.get_label() for line in ax.get_lines()]
    assert labels == ["maml prior", "cadm prior", "maml", "cadm", "scratch", "oracle"]
    ax = plot_kshot(df, ax=axes(), methods=["adapted", "oracle"])
    assert [line.get_label() for line in ax.get_lines()] == ["maml", "cadm", "oracle"]
    # the shared methods come from one learner's rows: n counts tasks, not tasks x learners
    assert "n = 5 per point" in ax.get_title()


def test_plot_training_curve_and_control():
    log = pd.DataFrame({"step": [10, 20, 30], "query_loss": [1.0, 0.1, 0.01], "query_loss_pre": [1.0, 0.9, 0.8],
                        "support_loss_pre": [1.1, 0.9, 0.7], "grad_norm": [3.0, 2.0, 1.0]})
    ax = plot_training_curve(log, ax=axes())
    assert len(ax.get_lines()) == 3 and ax.get_yscale() == "log"
    assert len(plot_training_curve(log.drop(columns="support_loss_pre"), ax=axes()).get_lines()) == 2
    with pytest.raises(ValueError, match="log: expected a 'step' column and at least one of"):
        plot_training_curve(log[["step", "grad_norm"]], ax=axes())

    mw = pd.DataFrame({"task_class": ["door-close-v3", "drawer-open-v3", "lever-pull-v3"], "success_rate": [1.0, 0.0, 0.5]})
    ax = plot_control(mw, ax=axes())
    assert len(ax.patches) == 3 and ax.get_ylabel() == "success rate"
    pm = pd.DataFrame({"task": [f"point-mass/test/{i:02d}" for i in range(4)], "eval_return": [-10.0, -20.0, -5.0, -7.0]})
    ax = plot_control(pm, ax=axes())
    assert len(ax.patches) == 4 and [t.get_text() for t in ax.get_xticklabels()] == ["00", "01", "02", "03"]
    with pytest.raises(ValueError, match="df: expected a control table"):
        plot_control(pd.DataFrame({"x": [1]}), ax=axes())


def test_plot_run_writes_the_png_files_and_the_cli_plots(run_dir, tmp_path, capsys):
    paths = plot_run(run_dir)
    assert [p.name for p in paths] == PNGS and all(p.parent == run_dir / "plots" for p in paths)
    for p in paths:
        with Image.open(p) as im:
            im.verify()
            assert im.format == "PNG"
        with Image.open(p) as im:
            assert im.size == (640, 420)
    assert not [p for p in (run_dir / "plots").iterdir() if p.suffix == ".tmp"]

    out = tmp_path / "figs"
    assert main(["plot", str(run_dir), "--out", str(out)]) == 0
    assert capsys.readouterr().out.splitlines() == [str(out / name) for name in PNGS]

    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["plot", str(empty)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("meta-mbrl: error: run_dir: expected a run directory holding")
    assert main(["plot", str(tmp_path / "missing")]) == 2
    assert "not a directory" in capsys.readouterr().err


def test_plot_without_matplotlib_says_which_extra_to_install(tmp_path, monkeypatch, capsys):
    import sys

    (tmp_path / "train_log.csv").write_text("step,query_loss\n1,0.5\n")
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)  # as if matplotlib were not installed
    assert main(["plot", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "matplotlib is not installed" in err and "meta-mbrl[notebooks]" in err


# ---------------------------------------------------------------------------------------------- videos
def test_evaluate_video_writes_a_gif_per_task(run_dir, tmp_path, capsys):
    ctl = tmp_path / "control.csv"
    video = tmp_path / "video"
    assert main(["evaluate", "--checkpoint", str(run_dir), "--out", str(ctl), "--video", str(video), "--video-tasks", "2",
                 "--control-max-episode-steps", "6", "--no-progress"]) == 0
    out = capsys.readouterr().out
    gifs = sorted(video.glob("*.gif"))
    assert [p.name for p in gifs] == ["point-mass_test_00.gif", "point-mass_test_01.gif"]
    assert f"wrote {gifs[0]}" in out and ctl.exists()
    for p in gifs:
        with Image.open(p) as im:
            assert im.format == "GIF" and im.n_frames == 7 and im.size == (192, 192)  # the start + 6 steps

    assert main(["evaluate", "--checkpoint", str(run_dir), "--video-tasks", "0", "--video", str(video)]) == 2
    assert "video_tasks: expected an int >= 1, got 0" in capsys.readouterr().err
    assert main(["evaluate", "--checkpoint", str(run_dir), "--video-tasks", "1"]) == 2
    assert "needs --video DIR" in capsys.readouterr().err


def test_render_unavailable_is_one_line_and_does_not_fail_the_evaluation(run_dir, tmp_path, pm_suite, monkeypatch, capsys):
    from task_suites import PointMassEnv

    def broken(self):
        raise RuntimeError("no OpenGL context\n(second line)")

    monkeypatch.setattr(PointMassEnv, "render", broken)
    with pytest.raises(RenderUnavailable) as info:
        render_env(pm_suite, pm_suite.test_tasks[0])
    msg = str(info.value)
    assert "\n" not in msg and msg.startswith("rendering: point-mass could not render a frame (RuntimeError: no OpenGL")

    ctl = tmp_path / "control.csv"
    video = tmp_path / "video"
    assert main(["evaluate", "--checkpoint", str(run_dir), "--out", str(ctl), "--video", str(video), "--no-progress"]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("video:")]
    assert lines == [f"video: {msg}; the evaluation above is unaffected"]
    assert ctl.exists() and not list(video.glob("*.gif"))


def test_rollout_and_gif_arguments_are_checked(pm_suite, tmp_path):
    from meta_mbrl import MAML, DynamicsMLP
    from meta_mbrl.agent import MetaMBRLAgent
    from meta_mbrl.planning import CEM

    planner = CEM(pm_suite.action_low, pm_suite.action_high, horizon=2, population=8, iterations=1, seed=0)
    agent = MetaMBRLAgent(MAML(DynamicsMLP(4, 2, hidden=(8,))), planner, num_envs=2, seed=0)
    with pytest.raises(ValueError, match="agent: expected an agent for one env"):
        rollout_frames(agent, pm_suite, pm_suite.test_tasks[0])
    with pytest.raises(ValueError, match="task: expected a task of suite 'point-mass'"):
        render_env(pm_suite, "point-mass/test/00")
    with pytest.raises(ValueError, match="frames: expected at least one"):
        save_gif([], tmp_path / "x.gif")
    with pytest.raises(ValueError, match="frames: expected .* frame 1 is float64"):
        save_gif([np.zeros((8, 8, 3), np.uint8), np.zeros((8, 8, 3))], tmp_path / "x.gif")
    with pytest.raises(ValueError, match="fps: expected a number in"):
        save_gif([np.zeros((8, 8, 3), np.uint8)], tmp_path / "x.gif", fps=0)
    assert not (tmp_path / "x.gif").exists()


@pytest.mark.metaworld
def test_metaworld_episode_renders_to_a_gif(ml10_suite, tmp_path):
    from meta_mbrl import MAML, DynamicsMLP
    from meta_mbrl.agent import MetaMBRLAgent
    from meta_mbrl.planning import CEM

    suite = ml10_suite
    planner = CEM(suite.action_low, suite.action_high, horizon=2, population=8, iterations=1, seed=0)
    agent = MetaMBRLAgent(MAML(DynamicsMLP(suite.obs_dim, suite.act_dim, hidden=(16,))), planner, num_envs=1, seed=0)
    try:
        frames = rollout_frames(agent, suite, suite.test_tasks[0], max_episode_steps=5)
    except RenderUnavailable as e:
        if ctypes.util.find_library("EGL") is None:
            pytest.skip(f"no EGL library on this machine: {e}")
        raise
    assert len(frames) == 6 and agent.env_steps["adapt"] == 5 and agent.env_steps["eval"] == 5
    assert all(f.dtype == np.uint8 and f.ndim == 3 and f.shape[-1] == 3 and f.std() > 10 for f in frames)
    path = save_gif(frames, tmp_path / "mw.gif", max_side=120)
    with Image.open(path) as im:
        assert im.n_frames == 6 and max(im.size) == 120
        assert np.asarray(im.convert("RGB")).std() > 10  # a picture, not a blank frame
