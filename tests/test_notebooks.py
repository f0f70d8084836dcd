"""The paired notebooks: every notebooks/NN_name.py (jupytext percent, the source) has its executed
NN_name.ipynb; jupytext's round trip of every pair changes no byte; the committed notebooks carry nothing
that changes from run to run and re-executing them on the same records writes the same bytes; notebooks
run at another preset, or under SMOKE_TEST, change no file of the repository."""
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

jupytext = pytest.importorskip("jupytext")  # not on a GPU machine's image: `pytest -m gpu tests` still collects
nbformat = pytest.importorskip("nbformat")
papermill = pytest.importorskip("papermill")
from jupytext.combine import combine_inputs_with_outputs  # noqa: E402
from jupytext.config import load_jupytext_configuration_file  # noqa: E402

from lpnb import cli  # noqa: E402
from lpnb.cli import NotebookFailed, execute_notebook, merged_streams  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
SOURCES = sorted(NOTEBOOKS.glob("[0-9][0-9]_*.py"))
EXECUTED = sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))
BOTH = [*SOURCES, *EXECUTED]
CONFIG = load_jupytext_configuration_file(str(ROOT / "jupytext.toml"))  # as JupyterLab reads it


def test_notebooks_are_paired():
    assert SOURCES, f"no notebooks/NN_*.py found under {NOTEBOOKS}"
    sources, executed = {p.stem for p in SOURCES}, {p.stem for p in EXECUTED}
    assert not sources - executed, f"not built (jupytext --sync) and executed (lpnb reproduce): {sources - executed}"
    assert not executed - sources, f"no jupytext source NN_name.py: {sorted(executed - sources)}"


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.stem)
def test_jupytext_round_trip_changes_no_byte(source, tmp_path):
    """What JupyterLab with jupytext writes on save: the .py from the .ipynb, the .ipynb from the .py's cells and
    the .ipynb's outputs. Both must come out byte for byte as committed (so no injected-parameters cell either)."""
    executed = source.with_suffix(".ipynb")
    assert jupytext.writes(jupytext.read(executed), "py:percent", config=CONFIG) == source.read_text(), \
        f"{executed.name} and {source.name} differ: jupytext --sync notebooks/{source.name}, then lpnb reproduce"
    combined = combine_inputs_with_outputs(jupytext.read(source), jupytext.read(executed))
    jupytext.write(combined, tmp_path / executed.name, fmt="ipynb", config=CONFIG)
    assert (tmp_path / executed.name).read_bytes() == executed.read_bytes()


@pytest.mark.parametrize("path", BOTH, ids=lambda p: p.name)
def test_pairing_metadata_and_one_parameters_cell(path):
    nb = jupytext.read(path)
    assert nb.metadata["jupytext"]["formats"] == "ipynb,py:percent"
    assert nb.metadata["kernelspec"]["name"] == "python3"
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1 and tagged[0].cell_type == "code"


@pytest.mark.parametrize("path", EXECUTED, ids=lambda p: p.name)
def test_committed_notebooks_are_executed_and_carry_nothing_volatile(path):
    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.execution_count is not None for c in code), f"{path.name} is not executed"
    assert not [o for c in code for o in c.outputs if o.output_type == "error"]
    assert path.stat().st_size < 1_000_000
    assert "papermill" not in nb.metadata and not [c for c in nb.cells if {"papermill", "execution"} & set(c.metadata)]
    assert not [c for c in nb.cells if c.metadata.get("tags") == []], "papermill's empty tags: jupytext --test fails"
    text = path.read_text()
    for volatile in (str(ROOT), str(ROOT.parent), os.path.expanduser("~"), "iopub.", "start_time"):
        assert volatile not in text, f"{path.name} holds {volatile!r}, which changes from one machine or run to another"


@pytest.mark.parametrize("path", EXECUTED, ids=lambda p: p.stem)
def test_papermill_reads_every_parameter(path):
    """`papermill -p name value` only works for names papermill can parse out of the parameters cell."""
    cell = next(c for c in nbformat.read(path, as_version=4).cells if "parameters" in c.metadata.get("tags", []))
    assigned = {line.split("=")[0].strip() for line in cell.source.splitlines()
                if line and not line.startswith("#") and "=" in line}
    assert set(papermill.inspect_notebook(str(path))) == assigned


@pytest.fixture()
def kernel_env(monkeypatch):
    """The notebooks' kernel imports lpnb from this checkout, installed or not; no SMOKE_TEST unless a test sets it."""
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    monkeypatch.delenv("SMOKE_TEST", raising=False)


@pytest.mark.parametrize("name, figure", [("04_figure1", "figure1"), ("05_figure3", "figure3")])
def test_toy_notebook_writes_figures(name, figure, tmp_path, kernel_env):
    out = tmp_path / f"{name}.ipynb"
    papermill.execute_notebook(NOTEBOOKS / f"{name}.ipynb", out, parameters={"seed": 1, "figures_dir": str(tmp_path)},
                               kernel_name="python3", cwd=tmp_path, progress_bar=False)
    pdf, png = (tmp_path / f"{figure}.pdf").read_bytes(), (tmp_path / f"{figure}.png").read_bytes()
    assert pdf.startswith(b"%PDF-") and len(pdf) > 1000
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 1000
    outputs = [o for c in nbformat.read(out, as_version=4).cells if c.cell_type == "code" for o in c.outputs]
    assert any("image/png" in o.get("data", {}) for o in outputs), "the figure is not shown inline"
    assert not list(tmp_path.glob("*.tmp")), "save_figure left a temporary file"


def git_status():
    """Every change to the checkout, ignored files included (less Python's byte-code caches)."""
    out = subprocess.run(["git", "status", "--porcelain", "--ignored=matching", "--untracked-files=all"], cwd=ROOT,
                         capture_output=True, text=True, check=True).stdout
    return sorted(line for line in out.splitlines() if "__pycache__" not in line and ".pytest_cache" not in line)


needs_git = pytest.mark.skipif(not (ROOT / ".git").exists() or shutil.which("git") is None,
                               reason="needs a git checkout")


@needs_git
@pytest.mark.slow
def test_smoke_runs_of_the_notebooks_write_nothing_into_the_repository(tmp_path, monkeypatch, kernel_env):
    """SMOKE_TEST=1 (as `make test` runs them) and the smoke preset without it: nothing appears or changes in the
    checkout, git-ignored folders included."""
    before = git_status()
    monkeypatch.setenv("LPNB_CACHE_DIR", str(tmp_path / "cache"))
    for name, parameters in [("04_figure1", {}), ("06_figure4", {})]:
        with monkeypatch.context() as m:
            m.setenv("SMOKE_TEST", "1")
            m.setenv("LPNB_SMOKE_DIR", str(tmp_path / "smoke"))
            papermill.execute_notebook(NOTEBOOKS / f"{name}.ipynb", tmp_path / "out.ipynb", parameters=parameters,
                                       cwd=str(ROOT), progress_bar=False)
    assert (tmp_path / "smoke" / "figures" / "figure4.png").stat().st_size > 1000
    papermill.execute_notebook(NOTEBOOKS / "02_table2.ipynb", tmp_path / "out.ipynb", cwd=str(ROOT), progress_bar=False,
                               parameters={"preset": "smoke", "labels": 500, "methods": "lp",
                                           "data_root": str(tmp_path / "smoke" / "data")})  # the stand-in above
    assert (tmp_path / "cache" / "smoke" / "results" / "table2.csv").exists()
    assert git_status() == before


@needs_git
def test_a_notebook_at_another_preset_writes_its_table_apart(tmp_path, kernel_env):
    """The paper preset's cells, shown from the records (train=False): the committed table is not touched."""
    before = git_status()
    apart = ROOT / "build" / "paper" / "results" / "table2.csv"
    kept = apart.read_bytes() if apart.exists() else None  # a table from an earlier run, put back afterwards
    apart.unlink(missing_ok=True)
    try:
        papermill.execute_notebook(NOTEBOOKS / "02_table2.ipynb", tmp_path / "out.ipynb", cwd=str(ROOT),
                                   progress_bar=False, parameters={"preset": "paper", "train": False,
                                                                   "labels": [500, 1000]})
        assert set(__import__("pandas").read_csv(apart).preset) == {"paper"}  # written by this run
        assert [line for line in git_status() if line not in before] in ([], ["!! build/"])
    finally:
        if kept is None:
            apart.unlink(missing_ok=True)
        else:
            apart.write_bytes(kept)


@pytest.mark.parametrize("name", ["01_table1", "03_table3"])
def test_reexecuting_a_committed_notebook_writes_the_same_bytes(name, tmp_path, kernel_env):
    """What `lpnb reproduce` does at the committed preset, on the committed records: the same notebook, byte for
    byte (and the same table CSV, which it rewrites in place)."""
    committed = NOTEBOOKS / f"{name}.ipynb"
    out = tmp_path / committed.name
    table = ROOT / "results" / f"table{name[-1]}.csv"
    before = table.read_bytes()
    execute_notebook(committed, out)
    assert out.read_text() == committed.read_text()
    assert table.read_bytes() == before


def test_a_notebook_whose_kernel_dies_fails_as_a_notebook_and_the_others_run(tmp_path, kernel_env, monkeypatch):
    dies = tmp_path / "dies.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("import os; os.kill(os.getpid(), 9)")],
                                            metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                                     "language": "python"}}), dies)
    made, mkdtemp = [], tempfile.mkdtemp
    monkeypatch.setattr(tempfile, "mkdtemp", lambda *a, **kw: made.append(mkdtemp(*a, **kw)) or made[-1])
    with pytest.raises(NotebookFailed, match="dies.ipynb failed: DeadKernelError"):
        execute_notebook(dies, tmp_path / "out.ipynb")
    assert not (tmp_path / "out.ipynb").exists()
    [ours] = [d for d in made if Path(d).name.startswith("lpnb-notebook-")]
    assert not Path(ours).exists()  # nothing in it to read


def test_reproduce_with_a_results_dir_of_ones_own_leaves_the_committed_notebooks(tmp_path, monkeypatch):
    """They would show that folder's records, and no longer the committed ones (nbval)."""
    written = []
    monkeypatch.setattr(cli, "execute_notebook", lambda nb, out, given, **kwargs: written.append((out, given)))
    monkeypatch.setenv("LPNB_RESULTS_DIR", str(tmp_path))
    cli.main(["reproduce", "--preset", "cpu", "--only", "table2", "figure1"])
    assert written == [(tmp_path / "notebooks" / "02_table2.ipynb", {}),
                       (tmp_path / "notebooks" / "04_figure1.ipynb", {})]
    written.clear()
    cli.main(["reproduce", "--preset", "smoke", "--only", "table2", "figure1"])  # the toys' figures there too
    assert written == [(tmp_path / "notebooks" / "02_table2.ipynb", {"preset": "smoke"}),
                       (tmp_path / "notebooks" / "04_figure1.ipynb", {})]


def test_an_unknown_parameter_stops_the_notebook_naming_the_parameters_it_has(tmp_path, kernel_env):
    with pytest.raises(papermill.PapermillExecutionError) as failed:  # papermill itself only logs a warning
        papermill.execute_notebook(NOTEBOOKS / "02_table2.ipynb", tmp_path / "out.ipynb", cwd=str(ROOT),
                                   parameters={"label": 1000, "train": False, "results_dir": str(tmp_path)},
                                   progress_bar=False)
    assert "unknown notebook parameter(s) label (papermill -p): this notebook's parameters are labels, methods, " \
           "splits, preset, data_root, results_dir, device, train, workers" in str(failed.value)


def test_a_cells_printed_text_cut_into_several_messages_is_kept_as_one_output():
    out = [nbformat.v4.new_output("stream", name="stdout", text="a\n"), nbformat.v4.new_output("stream", name="stdout",
                                                                                              text="b\n"),
           nbformat.v4.new_output("stream", name="stderr", text="warning\n"),
           nbformat.v4.new_output("stream", name="stdout", text="c\n"),
           nbformat.v4.new_output("execute_result", data={"text/plain": "1"}, execution_count=1),
           nbformat.v4.new_output("stream", name="stdout", text="d\n")]
    assert [(o.output_type, o.get("name"), o.get("text")) for o in merged_streams(out)] == [
        ("stream", "stdout", "a\nb\n"), ("stream", "stderr", "warning\n"), ("stream", "stdout", "c\n"),
        ("execute_result", None, None), ("stream", "stdout", "d\n")]


@pytest.mark.parametrize("splits", [2, "7,9"])  # splits 0 and 1; splits 7 and 9
def test_the_paper_protocol_section_counts_the_splits_asked_for(tmp_path, kernel_env, splits):
    out = tmp_path / "out.ipynb"
    papermill.execute_notebook(NOTEBOOKS / "02_table2.ipynb", out, cwd=str(ROOT), progress_bar=False,
                               parameters={"results_dir": str(tmp_path), "labels": 4000, "methods": "lp",
                                           "splits": splits, "train": False})
    text = out.read_text()
    assert "2 paper-scale runs of this table still to do" in text  # lp at 4000 labels
    assert ("cifar10-4000-lp-split7-cpu" in text) == (splits == "7,9")  # the cpu-preset cells not run, listed
