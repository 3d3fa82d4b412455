"""The same command with the same seed, on the same machine and thread count, writes bit-identical files."""

import hashlib
import subprocess
import sys

# wall-clock columns live in their own file, the only one allowed to differ
WALL_CLOCK = {"timing.csv"}


def _digests(run):
    return {str(p.relative_to(run)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(run.rglob("*")) if p.is_file() and p.name not in WALL_CLOCK and p.name != "run.lock"}


def _train(run, *extra):
    """One CLI run in its own process (its own hash seed, its own torch state), as a user would start it."""
    args = ["train", "--suite", "point-mass", "--preset", "test", "--tasks-per-class", "0", "--run-dir", str(run),
            "--no-progress", *extra]
    code = "import sys, torch; torch.set_num_threads(2); from meta_mbrl.cli import main; sys.exit(main(sys.argv[1:]))"
    out = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]


def test_two_runs_with_one_seed_write_identical_files(tmp_path):
    _train(tmp_path / "a")
    _train(tmp_path / "b")
    a, b = _digests(tmp_path / "a"), _digests(tmp_path / "b")
    for name in ("config.json", "checkpoint.pt", "train_log.csv", "kshot.csv", "control.csv", "train_buffer.npz"):
        assert name in a, name
    assert a == b
    _train(tmp_path / "c", "--seed", "1")  # and the seed matters
    c = _digests(tmp_path / "c")
    assert c["checkpoint.pt"] != a["checkpoint.pt"] and c["train_buffer.npz"] != a["train_buffer.npz"]
