"""The paired notebooks: every notebooks/NN_name.py (jupytext percent, the source) has its
executed NN_name.ipynb and the two hold the same cells; each has one `parameters` cell;
the toy figure notebooks run under papermill with overridden parameters."""
import os
from pathlib import Path

import jupytext
import nbformat
import papermill
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
SOURCES = sorted(NOTEBOOKS.glob("[0-9][0-9]_*.py"))
EXECUTED = sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))
BOTH = [*SOURCES, *EXECUTED]


def cells(path):
    """(type, source) of every cell as jupytext reads it, less papermill's injected parameters."""
    return [(c.cell_type, c.source) for c in jupytext.read(path).cells
            if "injected-parameters" not in c.metadata.get("tags", [])]


def test_notebooks_are_paired():
    assert SOURCES, f"no notebooks/NN_*.py found under {NOTEBOOKS}"
    sources, executed = {p.stem for p in SOURCES}, {p.stem for p in EXECUTED}
    assert not sources - executed, f"not built and executed (jupytext --to ipynb, then papermill): {sorted(sources - executed)}"
    assert not executed - sources, f"no jupytext source NN_name.py: {sorted(executed - sources)}"


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.stem)
def test_pair_in_sync(source):
    assert source.with_suffix(".ipynb").exists(), f"{source.stem}.ipynb missing: build it with jupytext, execute it with papermill"
    assert cells(source) == cells(source.with_suffix(".ipynb")), \
        f"{source.name} and its .ipynb differ: rebuild with jupytext --to ipynb, then execute with papermill"


@pytest.mark.parametrize("path", BOTH, ids=lambda p: p.name)
def test_pairing_metadata(path):
    meta = jupytext.read(path).metadata
    assert meta["jupytext"]["formats"] == "ipynb,py:percent"
    assert meta["kernelspec"]["name"] == "python3"


@pytest.mark.parametrize("path", BOTH, ids=lambda p: p.name)
def test_one_parameters_cell(path):
    tagged = [c for c in jupytext.read(path).cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1 and tagged[0].cell_type == "code"


@pytest.mark.parametrize("path", EXECUTED, ids=lambda p: p.name)
def test_executed_and_small(path):
    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.execution_count is not None for c in code), f"{path.name} is not executed"
    assert not [o for c in code for o in c.outputs if o.output_type == "error"]
    assert path.stat().st_size < 1_000_000


@pytest.mark.parametrize("name, figure", [("04_figure1", "figure1"), ("05_figure3", "figure3")])
def test_toy_notebook_writes_figures(name, figure, tmp_path, monkeypatch):
    # the kernel imports lpnb from this checkout, installed or not
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    out = tmp_path / f"{name}.ipynb"
    papermill.execute_notebook(NOTEBOOKS / f"{name}.ipynb", out, parameters={"seed": 1, "figures_dir": str(tmp_path)},
                               kernel_name="python3", cwd=tmp_path, progress_bar=False)
    pdf, png = (tmp_path / f"{figure}.pdf").read_bytes(), (tmp_path / f"{figure}.png").read_bytes()
    assert pdf.startswith(b"%PDF-") and len(pdf) > 1000
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 1000
    outputs = [o for c in nbformat.read(out, as_version=4).cells if c.cell_type == "code" for o in c.outputs]
    assert any("image/png" in o.get("data", {}) for o in outputs), "the figure is not shown inline"
    assert not list(tmp_path.glob("*.tmp")), "save_figure left a temporary file"


@pytest.fixture()
def smoke_env(tmp_path, monkeypatch):
    """SMOKE_TEST=1 with a shared smoke folder (the one `make test` sets, so nbval reuses these runs)."""
    smoke_dir = Path(os.environ.get("LPNB_SMOKE_DIR") or tmp_path)
    monkeypatch.setenv("SMOKE_TEST", "1")
    monkeypatch.setenv("LPNB_SMOKE_DIR", str(smoke_dir))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    return smoke_dir


@pytest.mark.slow
def test_table2_notebook_writes_its_table(smoke_env, tmp_path):
    import pandas as pd

    papermill.execute_notebook(NOTEBOOKS / "02_table2.ipynb", tmp_path / "out.ipynb", cwd=str(ROOT), progress_bar=False,
                               parameters={"labels": 500, "methods": ["supervised", "lp"]})
    table = pd.read_csv(smoke_env / "results" / "table2.csv")
    assert {"method", "labels", "ours_mean", "ours_std", "splits", "paper_mean", "paper_std", "preset"} <= set(table.columns)
    assert sorted(zip(table.method, table.labels)) == [("lp", 500), ("supervised", 500)]
    assert (table.preset == "smoke").all() and (table.splits == 1).all()
    assert table.set_index("method").paper_mean.to_dict() == {"supervised": 49.08, "lp": 32.40}
    assert table.ours_mean.between(0, 100).all()
    assert not list((ROOT / "results" / "runs").glob("*-smoke-*")), "a smoke run wrote into the committed results"


@pytest.mark.slow
def test_figure_notebook_writes_its_figure(smoke_env, tmp_path):
    papermill.execute_notebook(NOTEBOOKS / "06_figure4.ipynb", tmp_path / "out.ipynb", cwd=str(ROOT), progress_bar=False)
    for suffix, magic in ((".pdf", b"%PDF"), (".png", b"\x89PNG")):
        path = smoke_env / "figures" / f"figure4{suffix}"
        assert path.stat().st_size > 1000 and path.read_bytes()[:4] == magic
    assert not list((ROOT / "results" / "runs").glob("*-smoke-*")), "a smoke run wrote into the committed results"


@pytest.mark.parametrize("path", EXECUTED, ids=lambda p: p.stem)
def test_papermill_reads_every_parameter(path):
    """`papermill -p name value` only works for names papermill can parse out of the parameters cell."""
    cell = next(c for c in nbformat.read(path, as_version=4).cells if "parameters" in c.metadata.get("tags", []))
    assigned = {line.split("=")[0].strip() for line in cell.source.splitlines() if line and not line.startswith("#") and "=" in line}
    assert set(papermill.inspect_notebook(str(path))) == assigned
