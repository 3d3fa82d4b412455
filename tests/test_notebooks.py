"""The tutorials: stored with outputs from the code as committed, and executed top to bottom at the CI budget."""

import json
import sys
from pathlib import Path

import pytest

NB_DIR = Path(__file__).resolve().parents[1] / "notebooks"
sys.path.insert(0, str(NB_DIR))
nbformat = pytest.importorskip("nbformat")
pytest.importorskip("nbclient")

from execute import code_hash, execute, notebooks  # noqa: E402

NOTEBOOKS = notebooks()


def test_there_are_the_five_tutorials():
    assert len(NOTEBOOKS) >= 5, [p.name for p in NOTEBOOKS]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_stored_outputs_come_from_the_committed_code(path):
    nb = nbformat.read(path, as_version=4)
    stamp = nb.metadata.get("meta_mbrl", {})
    assert stamp.get("code_sha256") == code_hash(nb), "code changed since the outputs were stored: run notebooks/execute.py"
    assert stamp.get("budget") == "doc"
    assert path.stat().st_size < 2e6
    first, last = nb.cells[0], nb.cells[-1]
    assert first.cell_type == "markdown" and "teaches" in first.source.lower()
    assert last.cell_type == "markdown" and "where next" in last.source.lower() and "README" in last.source
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert [c.execution_count for c in code] == list(range(1, len(code) + 1))  # one clean top-to-bottom run
    assert not [o for c in code for o in c.outputs if o.output_type == "error"]
    assert any(o.get("data", {}).get("image/png") for c in code for o in c.outputs), "no figure in the stored outputs"
    assert "META_MBRL_NB_BUDGET" in code[0].source  # the parameter cell sets the budget


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_at_the_ci_budget(path, tmp_path):
    target, seconds = execute(path, "ci", out=tmp_path)
    nb = json.loads(target.read_text())
    assert nb["metadata"]["meta_mbrl"]["budget"] == "ci"
