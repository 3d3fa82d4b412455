"""Ray (meta_mbrl.distributed): parallel collection and evaluation equal the serial ones bit for bit, the CLI flags,
the missing-Ray error, and a killed worker (retried; or reported with the finished chunks kept)."""

import builtins
import os
import signal
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

import task_suites
from meta_mbrl import distributed
from meta_mbrl.cli import main
from meta_mbrl.data import collect
from meta_mbrl.errors import CollectionError

ray = pytest.importorskip("ray")  # the dev extra installs it; CI must not skip (see pyproject's dev extra)


@pytest.fixture(scope="module")
def cluster():
    """A local cluster of 2 worker CPUs for the whole module (starting one takes ~12 s); nothing outside localhost."""
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False,
             runtime_env={"env_vars": {"OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(sys.path)}})
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the test policies below travel by value
    yield
    ray.shutdown()


def same_buffers(a, b):
    assert a.task_ids == b.task_ids
    assert a.env_steps == b.env_steps and a.num_trajectories == b.num_trajectories
    assert a.sources == b.sources
    for (ta, xa), (tb, xb) in zip(a._trajs, b._trajs, strict=True):
        assert ta == tb
        for u, v in zip(xa, xb, strict=True):
            assert u.dtype == v.dtype and np.array_equal(u, v)


@pytest.mark.parametrize("policy", ["colored-noise", "uniform"])
def test_parallel_collect_equals_serial(cluster, pm_suite, policy):
    tasks = pm_suite.train_tasks[:7]  # chunks of 3: 3 + 3 + 1, a short last chunk
    serial = collect(pm_suite, tasks, policy, episodes_per_task=2, seed=5, num_envs=3, progress=False)
    for workers in (1, 2):
        par = distributed.collect(pm_suite, tasks, policy, episodes_per_task=2, seed=5, num_envs=3, workers=workers,
                                  progress=False)
        same_buffers(par, serial)


def test_parallel_collect_maze_success_rate(cluster):
    suite = task_suites.make("point-maze", seed=0)
    tasks = suite.train_tasks[:4]
    serial = collect(suite, tasks, "ou", seed=1, num_envs=2, progress=False)
    same_buffers(distributed.collect(suite, tasks, "ou", seed=1, num_envs=2, workers=2, progress=False), serial)
    assert "success_rate" in serial.sources[-1]


def test_first_chunk_is_a_suffix_of_the_serial_call(pm_suite):
    tasks = pm_suite.train_tasks[:5]
    full = collect(pm_suite, tasks, seed=2, num_envs=2, progress=False)
    tail = collect(pm_suite, tasks[2:], seed=2, num_envs=2, first_chunk=1, progress=False)
    assert all(np.array_equal(u, v) for (_, x), (_, y) in zip(full._trajs[2:], tail._trajs, strict=True)
               for u, v in zip(x, y, strict=True))


class KillingPolicy:
    """Uniform actions reseeded per chunk (from its first task), so a chunk never depends on earlier ones; in a worker
    process (not the test's), SIGKILLs itself when a chunk starts on a task of ``kill``: once (``marker`` missing,
    then created) or every time (``marker=None``)."""

    def __init__(self, suite, kill, marker=None):
        self.low, self.high, self.kill, self.marker = suite.action_low, suite.action_high, set(kill), marker
        self.driver, self.rng = os.getpid(), None

    def attach(self, env, tasks):
        self.rng = np.random.default_rng(int(tasks[0].id.rsplit("/", 1)[1]))
        if os.getpid() != self.driver and tasks[0].id in self.kill:
            if self.marker is None or not os.path.exists(self.marker):
                if self.marker is not None:
                    open(self.marker, "w").close()
                os.kill(os.getpid(), signal.SIGKILL)

    def __call__(self, obs):
        return self.rng.uniform(self.low, self.high, size=(obs.shape[0], self.low.shape[0])).astype(np.float32)


def test_killed_worker_is_retried(cluster, pm_suite, tmp_path):
    tasks = pm_suite.train_tasks[:4]
    pol = KillingPolicy(pm_suite, kill=[tasks[2].id], marker=str(tmp_path / "killed-once"))
    serial = collect(pm_suite, tasks, pol, seed=0, num_envs=2, progress=False, source="kill")
    par = distributed.collect(pm_suite, tasks, pol, seed=0, num_envs=2, workers=2, progress=False, source="kill")
    assert os.path.exists(tmp_path / "killed-once")  # the worker did die once
    same_buffers(par, serial)


def test_worker_lost_for_good_keeps_what_was_collected(cluster, pm_suite):
    tasks = pm_suite.train_tasks[:4]
    pol = KillingPolicy(pm_suite, kill=[tasks[0].id])
    with pytest.raises(CollectionError, match="missing tasks") as err:
        distributed.collect(pm_suite, tasks, pol, seed=0, num_envs=2, workers=2, progress=False, max_retries=1,
                            source="kill")
    msg, buf = str(err.value), err.value.buffer
    assert tasks[0].id in msg and tasks[1].id in msg and tasks[2].id not in msg.split("missing tasks")[1]
    assert buf.task_ids == [t.id for t in tasks[2:]] and buf.num_trajectories == 2
    assert buf.sources[-1]["status"].startswith("failed: 1 of 2 chunks")
    assert buf.sources[-1]["trajectories"] == 2


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("ray") / "run"
    assert main(["train", "--suite", "point-mass", "--preset", "test", "--run-dir", str(run), "--no-progress"]) == 0
    return run


def test_parallel_evaluation_equals_serial(cluster, trained_run, tmp_path):
    serial, par = tmp_path / "serial.csv", tmp_path / "par.csv"
    flags = ["--checkpoint", str(trained_run), "--control-task-group", "3", "--no-progress"]
    assert main(["evaluate", *flags, "--out", str(serial)]) == 0
    assert main(["evaluate", *flags, "--out", str(par), "--workers", "2"]) == 0
    a, b = pd.read_csv(serial), pd.read_csv(par)
    assert len(a) == 10 and list(a.task) == sorted(a.task)
    pd.testing.assert_frame_equal(a, b, check_exact=True)


def test_one_group_is_todays_evaluation(trained_run, tmp_path):
    """control.task_group 0 (the default) runs all test tasks at once, as before the setting existed."""
    df = pd.read_csv(trained_run / "control.csv")
    assert len(df) == 10


def test_cli_collect_workers(cluster, tmp_path):
    base = ["collect", "--suite", "point-mass", "--preset", "test", "--tasks-per-class", "5", "--num-envs", "2",
            "--no-progress"]
    assert main([*base, "--out", str(tmp_path / "serial.npz")]) == 0
    assert main([*base, "--out", str(tmp_path / "par.npz"), "--workers", "2"]) == 0
    from meta_mbrl.data import TaskBuffer

    same_buffers(TaskBuffer.load(tmp_path / "par.npz"), TaskBuffer.load(tmp_path / "serial.npz"))


def test_missing_ray_is_one_line(monkeypatch, tmp_path, capsys):
    real_import = builtins.__import__

    def no_ray(name, *args, **kwargs):
        if name == "ray" or name.startswith("ray."):
            raise ImportError("No module named 'ray'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_ray)
    monkeypatch.delitem(sys.modules, "ray", raising=False)
    assert main(["collect", "--suite", "point-mass", "--preset", "test", "--out", str(tmp_path / "b.npz"),
                 "--workers", "2", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--workers" in err and "pip install ray" in err
    assert not (tmp_path / "b.npz").exists()


def test_import_does_not_import_ray():
    code = "import sys, meta_mbrl, meta_mbrl.cli, meta_mbrl.runs, meta_mbrl.distributed; print('ray' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert out.stdout.strip() == "False"


# ---------------------------------------------------------------------------------------------- Meta-World rounds
@pytest.fixture(scope="module")
def ml1_run(tmp_path_factory):
    """A tiny ml1:reach-v3 run (~7 s): 2 training tasks, 5 meta-steps, a small CEM, 20-step control episodes."""
    run = tmp_path_factory.mktemp("ray-mw") / "run"
    assert main(["train", "--suite", "ml1:reach-v3", "--preset", "test", "--tasks-per-class", "2",
                 "--kshot-tasks-per-class", "1", "--steps", "5", "--control-max-episode-steps", "20",
                 "--plan-population", "8", "--plan-horizon", "3", "--run-dir", str(run), "--no-progress"]) == 0
    return run


@pytest.mark.metaworld
def test_metaworld_rounds_on_workers_equal_serial(cluster, ml1_run, tmp_path):
    serial, par, one = tmp_path / "serial.csv", tmp_path / "par.csv", tmp_path / "one.csv"
    flags = ["--checkpoint", str(ml1_run), "--control-num-evals", "2", "--no-progress"]
    assert main(["evaluate", *flags, "--out", str(serial)]) == 0
    assert main(["evaluate", *flags, "--out", str(par), "--workers", "2"]) == 0
    a, b = pd.read_csv(serial), pd.read_csv(par)
    assert list(a.task_class) == ["reach-v3"] and (a.num_evals == 2).all() and (a.adapt_env_steps == 2 * 20).all()
    pd.testing.assert_frame_equal(a, b, check_exact=True)
    # one round is the evaluation train ran (num_evals 1, as before rounds existed)
    assert main(["evaluate", "--checkpoint", str(ml1_run), "--no-progress", "--out", str(one)]) == 0
    pd.testing.assert_frame_equal(pd.read_csv(one), pd.read_csv(ml1_run / "control.csv"), check_exact=True)


@pytest.mark.metaworld
def test_round_r_draws_the_goals_of_round_r():
    """metaworld_evaluation(first_round=r) skips r goal draws: round r's goals are those of one call's round r."""
    suite = task_suites.make("ml1:reach-v3", seed=0)
    envs = suite.make_benchmark_envs("test", seed=3, max_episode_steps=20)
    goals = []
    for _ in range(3):
        envs.call("sample_tasks")
        goals.append(np.array(envs.get_attr("_target_pos")))
    envs.close()
    assert not np.array_equal(goals[0], goals[1])
    for r in range(3):
        fresh = suite.make_benchmark_envs("test", seed=3, max_episode_steps=20)
        for _ in range(r + 1):
            fresh.call("sample_tasks")
        assert np.array_equal(np.array(fresh.get_attr("_target_pos")), goals[r])
        fresh.close()


def test_combine_rounds_is_metaworlds_aggregation(monkeypatch):
    """combine_rounds of N rounds' results = metalearning_evaluation(num_evals=N) on the same per-round results."""
    import metaworld.evaluation as mwe

    from meta_mbrl.evaluation import combine_rounds

    names = {"ReachEnvV3": "reach-v3", "PushEnvV3": "push-v3", "SweepIntoEnvV3": "sweep-into-v3"}
    rng = np.random.default_rng(0)
    # per round, as metaworld's evaluation() returns it: rates keyed in set(task names) order
    rounds = [(float(rng.uniform()), float(rng.uniform(0, 500)),
               {n: float(rng.integers(0, 4) / 3) for n in set(names.values())}) for _ in range(5)]
    calls = iter(rounds)
    monkeypatch.setattr(mwe, "evaluation", lambda agent, envs, episodes: (*next(calls), {}))
    monkeypatch.setattr(mwe, "ALL_V3_ENVIRONMENTS", {v: type(k, (), {}) for k, v in names.items()})

    class Envs:
        num_envs = 3

        def call(self, *a):
            pass

        def get_attr(self, name):
            return list(names)

        def reset(self):
            return np.zeros((3, 1)), {}

        def step(self, act):
            return np.zeros((3, 1)), np.zeros(3), np.ones(3, bool), np.zeros(3, bool), {}

    class Agent:
        def init(self):
            pass

        def adapt_action(self, obs):
            return np.zeros((3, 1)), {}

        def step(self, ts):
            pass

        def adapt(self):
            pass

    success, ret, per_class = mwe.metalearning_evaluation(Agent(), Envs(), num_evals=5, adaptation_episodes=1)
    parts = [(pd.DataFrame({"task_class": sorted(pc), "success_rate": [pc[c] for c in sorted(pc)]}),
              {"mean_success_rate": s, "mean_return": r, "adapt_env_steps": 1, "eval_env_steps": 1, "seconds": 0.0})
             for s, r, pc in rounds]
    df, info = combine_rounds(parts)
    assert info["mean_success_rate"] == success and info["mean_return"] == ret and info["num_evals"] == 5
    assert dict(zip(df.task_class, df.success_rate)) == {k: float(v) for k, v in per_class.items()}
    assert combine_rounds(parts[:1])[1]["mean_return"] == rounds[0][1]  # one round: its own numbers
