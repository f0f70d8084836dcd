"""A notebook's parameters (lpnb.notebook): checked, where its records, tables and figures go."""
import ast
import json
import os
import re
import sys
from types import SimpleNamespace

import pytest
import torch
from conftest import RECORD_REST

from lpnb import notebook, tables
from lpnb.experiment import REPO
from lpnb.notebook import notebook_settings, output_dir
from lpnb.tables import COMMITTED_PRESET


@pytest.fixture(autouse=True)
def no_smoke_env(monkeypatch):
    monkeypatch.delenv("SMOKE_TEST", raising=False)
    monkeypatch.delenv("LPNB_RESULTS_DIR", raising=False)


def test_one_value_means_a_one_element_list():
    s = notebook_settings(labels=1000, methods="lp", datasets="cifar100")
    assert (s.labels, s.methods, s.datasets) == ([1000], ["lp"], ["cifar100"])
    assert notebook_settings(labels="500,1000").labels == [500, 1000]  # `-p labels 500,1000`
    assert notebook_settings(labels="[500, 1000]").labels == [500, 1000]  # `-p labels "[500, 1000]"`
    assert notebook.positive_ints(3, "n_labeled") == [3] and notebook.positive_ints("1,5", "n_labeled") == [1, 5]
    assert notebook_settings(methods="['lp', 'mt']", labels="(500, 1000)").methods == ["lp", "mt"]  # any list text
    for bad in ("1,x", "\u00b2", "", "5.0"):  # named, with the value as given (a superscript digit is no int)
        with pytest.raises(ValueError, match=f"notebook parameter n_labeled must be a positive integer .*{bad!r}"):
            notebook.positive_ints(bad, "n_labeled")
    with pytest.raises(ValueError, match=r"got 'lp,supervized' \('supervized' not\)$"):  # the one misspelt
        notebook_settings(methods="lp,supervized")
    with pytest.raises(ValueError, match=r"got 'false' \(Python's spelling: -p train False\)"):
        notebook_settings(train="false")
    assert notebook_settings(labels=[500, 4000], methods=["supervised", "mt+lp"]).methods == ["supervised", "mt+lp"]
    s = notebook_settings(methods="supervised,mt+lp", datasets="cifar10 cifar100")  # `-p methods supervised,mt+lp`
    assert (s.methods, s.datasets) == (["supervised", "mt+lp"], ["cifar10", "cifar100"])
    s = notebook_settings(labels="500,1000,500", methods=["lp", "lp"])  # a value given twice: one cell, run once
    assert (s.labels, s.methods) == ([500, 1000], ["lp"])


@pytest.mark.parametrize("name, value", [("labels", "abc"), ("labels", -1), ("labels", 0), ("labels", True),
                                         ("labels", []), ("methods", "fixmatch"), ("methods", []),
                                         ("datasets", "svhn"), ("datasets", ""), ("splits", -1), ("splits", 0),
                                         ("splits", "0,-1"), ("splits", "a,b"), ("splits", [True]), ("splits", []),
                                         ("train", "yes"), ("preset", "huge"), ("workers", 0), ("workers", "4")])
def test_bad_notebook_parameters_are_refused_naming_them(name, value):
    with pytest.raises(ValueError, match=f"notebook parameter {name} must be") as refused:
        notebook_settings(**{name: value})
    assert ('"0," for split 0 alone' in str(refused.value)) == (name == "splits" and isinstance(value, int))


def test_a_table_notebook_takes_only_its_tables_methods_and_datasets(tmp_path):
    with pytest.raises(ValueError, match=r"methods must be one of \['supervised', 'network', 'lp', 'mt', 'mt\+lp'\]"):
        notebook_settings(table=2, methods="fixmatch", datasets="cifar10")  # Table 2's methods, not all of lpnb's
    with pytest.raises(ValueError, match=r"Table 2 has no method\(s\) \['gtg'\]; its methods are \['supervised'"):
        notebook_settings(table=2, methods="lp,gtg", datasets="cifar10")  # gtg is a row of Table 1 only
    with pytest.raises(ValueError, match=r"Table 3 has no dataset\(s\) \['cifar10'\]"):
        notebook_settings(table=3, methods="lp", datasets="cifar100,cifar10")
    with pytest.warns(UserWarning, match="Table 1 has no column of 4000 labels"):
        assert notebook_settings(table=1, labels=4000, datasets="cifar10").labels == [4000]
    s = notebook_settings(None, table=3, splits=2, methods="lp", datasets="cifar100", results_dir=tmp_path)
    assert (s.methods, s.datasets, s.splits) == (["lp"], ["cifar100"], 2)
    s = notebook_settings(None, splits=2, datasets="fashion-mnist")  # no committed split count: one, not KeyError
    assert s.tables_dir == REPO / "build/cpu/results"
    with pytest.warns(UserWarning, match="Table 1 has no column of 1000 labels"):
        s = notebook_settings(None, table=1, labels="500,1000", datasets="cifar10")  # not in the committed table
    assert (s.results_dir, s.tables_dir) == (REPO / "results", REPO / "build/cpu/results")
    assert notebook_settings(None, table=2, labels=1000, datasets="cifar10").tables_dir == REPO / "results"


def test_a_results_dir_that_is_no_folder_is_refused_naming_it(tmp_path):
    (tmp_path / "a_file").write_text("")
    with pytest.raises(ValueError, match=r"notebook parameter results_dir: .*a_file is not a folder: give the"):
        notebook_settings(None, results_dir=tmp_path / "a_file")
    with pytest.raises(ValueError, match=r"results_dir: .*typo is no folder, and train=False reads runs: give"):
        notebook_settings(None, results_dir=tmp_path / "typo", train=False)
    assert notebook_settings(None, results_dir=tmp_path / "new", train=True).results_dir == tmp_path / "new"
    for name in ("results_dir", "figures_dir", "data_root"):  # `-p results_dir ""`: not the current folder
        with pytest.raises(ValueError, match=f"notebook parameter {name} is empty: give a folder, or None"):
            notebook_settings(None, **{name: " "})


def test_a_notebooks_tables_show_their_text_whole():
    """Why a table is empty, said in a one-cell table, is not cut to pandas' 50 characters."""
    import pandas as pd
    said = tables._says(f"not run: {tables.NO_RECORD}")
    pd.reset_option("display.max_colwidth")  # pandas' default
    try:
        assert tables.NO_RECORD not in repr(said) + said._repr_html_()  # as a notebook shows it
        notebook_settings(None)
        assert tables.NO_RECORD in repr(said) and tables.NO_RECORD in said._repr_html_()
    finally:
        pd.reset_option("display.max_colwidth")


def test_the_committed_preset_writes_in_place_and_others_apart(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("LPNB_CACHE_DIR", str(tmp_path))
    (tmp_path / "r").mkdir()
    (tmp_path / "env").mkdir()
    s = notebook_settings(None)
    assert s.preset == COMMITTED_PRESET
    assert (s.results_dir, s.tables_dir, s.figures_dir) == (REPO / "results", REPO / "results", REPO / "figures")
    s = notebook_settings("paper")
    assert (s.results_dir, s.tables_dir, s.figures_dir) == (REPO / "results", REPO / "build/paper/results",
                                                            REPO / "build/paper/figures")
    assert f"preset paper, not the cpu of the committed tables: tables and figures go to {REPO / 'build/paper'}" in \
        capsys.readouterr().out
    s = notebook_settings(None, splits=3, datasets="cifar10")  # the committed tables' split count: in place
    assert (s.tables_dir, s.figures_dir) == (REPO / "results", REPO / "figures")
    for given, splits in (("0,2", [0, 2]), ("4,", [4]), ([1, 1], [1]), ((0, 2), [0, 2]), ("3", 3), ("0,1,2", 3),
                          ("2,1,0", 3)):  # "3": a count; "0,1,2": the same cells
        s = notebook_settings(None, splits=given, datasets="cifar10")  # as `-p splits 0,2` or `-r splits 3` pass them
        assert s.splits == splits and s.tables_dir == REPO / ("results" if splits == 3 else "build/cpu/results")
    s = notebook_settings(None, splits=1, datasets="cifar10")  # a cell of one split is not the committed mean
    assert (s.results_dir, s.tables_dir, s.figures_dir) == (REPO / "results", REPO / "build/cpu/results",
                                                            REPO / "build/cpu/figures")
    s = notebook_settings("smoke")  # nothing inside the repository
    assert output_dir("smoke") == tmp_path / "smoke"
    assert (s.results_dir, s.tables_dir, s.figures_dir) == (tmp_path / "smoke/results", tmp_path / "smoke/results",
                                                            tmp_path / "smoke/figures")
    s = notebook_settings("paper", results_dir=tmp_path / "r", figures_dir=tmp_path / "f")  # given: used as given
    assert (s.results_dir, s.tables_dir, s.figures_dir) == (tmp_path / "r", tmp_path / "r", tmp_path / "f")
    for preset in (None, "paper", "smoke"):  # a results folder given: the tables in it, the figures in its figures/
        capsys.readouterr()
        s = notebook_settings(preset, results_dir=tmp_path / "r")
        assert (s.results_dir, s.tables_dir, s.figures_dir) == (tmp_path / "r", tmp_path / "r", tmp_path / "r/figures")
        assert capsys.readouterr().out.endswith(f"records and tables go to {tmp_path / 'r'}, figures to "
                                                f"{tmp_path / 'r/figures'}\n")  # said: no "goes apart" line says it
        monkeypatch.setenv("LPNB_RESULTS_DIR", str(tmp_path / "env"))  # the same for $LPNB_RESULTS_DIR
        s = notebook_settings(preset)
        assert (s.results_dir, s.tables_dir, s.figures_dir) == (tmp_path / "env", tmp_path / "env",
                                                                tmp_path / "env/figures")
        monkeypatch.delenv("LPNB_RESULTS_DIR")
    monkeypatch.setenv("LPNB_RESULTS_DIR", str(REPO / "results"))
    assert output_dir("smoke") == tmp_path / "smoke"  # the smoke folder does not follow the records' folder


def test_a_figure_of_other_cells_than_the_defaults_does_not_write_over_the_committed_one(capsys, tmp_path):
    committed = notebook_settings(None)
    assert notebook.figure_dir(committed, "08_figure6", labels=[500, 1000, 2000, 4000],
                             methods=["supervised", "network", "lp", "mt", "mt+lp"], splits=None) == REPO / "figures"
    assert notebook.figure_dir(committed, "06_figure4", labels=500, split=0) == REPO / "figures"
    assert capsys.readouterr().out == ""
    assert notebook.figure_dir(committed, "06_figure4", labels=1000, split=0) == REPO / "build/cpu/figures/labels-1000"
    assert "other labels than 06_figure4's defaults" in capsys.readouterr().out
    assert notebook.figure_dir(committed, "06_figure4", labels=1000, split=2) == \
        REPO / "build/cpu/figures/labels-1000_split-2"  # not over the figure of split 0
    assert notebook.figure_dir(committed, "04_figure1", seed=1, n_points=300) == REPO / "build/cpu/figures/seed-1"
    assert notebook.figure_dir(committed, "08_figure6", labels=[500, 1000], methods=["lp"], splits=3) == \
        REPO / "build/cpu/figures/labels-500,1000_methods-lp_splits-3"
    explicit = notebook_settings(COMMITTED_PRESET)  # `-p preset cpu`: that preset's run, not the committed figure's
    assert notebook.figure_dir(explicit, "06_figure4", labels=500, split=0) == REPO / "build/cpu/figures"
    assert "other preset than 06_figure4's defaults" in capsys.readouterr().out
    given = notebook_settings(None, figures_dir=tmp_path)  # a folder of the user's: used as given
    assert notebook.figure_dir(given, "06_figure4", labels=1000, split=2) == tmp_path


@pytest.mark.parametrize("name", sorted(p.stem for p in (REPO / "notebooks").glob("0[4-9]_figure*.py")))
def test_every_figure_notebook_passes_what_it_draws_to_figure_dir(name):
    """Each parameter of a figure notebook either picks where it reads and writes, or is compared with its
    default by figure_dir, so that a figure of other cells never writes over the committed one."""
    where = {"figures_dir", "preset", "data_root", "results_dir", "device", "train", "workers", "download"}
    source = (REPO / "notebooks" / f"{name}.py").read_text()
    calls = [node for node in ast.walk(ast.parse(source))
             if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "figure_dir"]
    assert len(calls) == 1 and calls[0].args[1].value == name
    assert {kw.arg for kw in calls[0].keywords} == set(notebook.notebook_defaults(name)) - where


@pytest.mark.parametrize("history, unknown, known", [
    (["", "labels = 500\nsplits = None", "# Parameters\nlabel = 1000\n", "settings = 1"], ["label"],
     ["labels", "splits"]),  # as papermill runs it
    (["", "labels = 500", "# Parameters\nlabels = 1000\nPAPERMILL_INPUT_PATH = 'a.ipynb'\n"], [], ["labels"]),
    (["", "labels = 500", "# Parameters\nlabel = 1000\n", "x = f(labels)", "labels = 500",
      "# Parameters\nlabel = 1000\n"], ["label"], ["labels"]),  # Run All twice in one kernel: still unknown
    (["", "import lpnb", "# Parameters\nlabels = 1000\n"], [], []),  # the parameters cell not run: nothing to say
    (["", "labels = 500", "y = g()", "# Parameters\nlabels = 1000\n"], [], ["labels"]),  # a cell between
    (["", "labels = 500"], [], [])])  # no injected cell: JupyterLab, nbval
def test_unknown_notebook_parameters_are_read_from_the_kernels_history(monkeypatch, history, unknown, known):
    shell = SimpleNamespace(user_ns={"In": history})
    monkeypatch.setitem(sys.modules, "IPython", SimpleNamespace(get_ipython=lambda: shell))
    assert notebook.unknown_parameters() == (unknown, known)
    monkeypatch.delitem(sys.modules, "IPython")
    assert notebook.unknown_parameters() == ([], [])  # not in a kernel


def test_smoke_test_forces_smoke_training_and_stand_in_data(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("SMOKE_TEST", "1")
    monkeypatch.setenv("LPNB_SMOKE_DIR", str(tmp_path))
    s = notebook_settings("paper", results_dir="/committed/results", datasets="cifar10", train=False)
    assert f"SMOKE_TEST is set: the smoke preset on generated stand-in data, training what is missing, everything " \
           f"under {tmp_path} (the parameters preset, train" in capsys.readouterr().out
    assert (s.preset, s.results_dir, s.tables_dir, s.figures_dir, s.train) == (
        "smoke", tmp_path / "results", tmp_path / "results", tmp_path / "figures", True)
    assert s.data_root == tmp_path / "data"
    assert len(list((s.data_root / "cifar10" / "train").glob("*/*.png"))) == 4200  # 4000 labels + 200 unlabeled
    assert sorted(p.name for p in s.data_root.iterdir()) == ["cifar10"]  # no staging folder left behind


def test_two_smoke_notebooks_starting_at_once_share_the_stand_in(monkeypatch, tmp_path):
    monkeypatch.setenv("SMOKE_TEST", "1")
    monkeypatch.setenv("LPNB_SMOKE_DIR", str(tmp_path))
    write_standin = notebook.lpdata.write_standin

    def the_other_first(root, name, **kwargs):  # the other notebook moves its stand-in in while this one writes
        write_standin(tmp_path / "other", name, **kwargs)
        os.replace(tmp_path / "other" / name, tmp_path / "data" / name)
        return write_standin(root, name, **kwargs)
    monkeypatch.setattr(notebook.lpdata, "write_standin", the_other_first)
    s = notebook_settings(datasets="cifar10")
    assert sorted(p.name for p in s.data_root.iterdir()) == ["cifar10"]  # no staging folder left behind
    assert len(list((s.data_root / "cifar10" / "train").glob("*/*.png"))) == 4200


def test_the_figures_are_drawn_from_the_paper_scale_run_once_it_is_recorded(monkeypatch, tmp_path, capsys):
    trained = []
    monkeypatch.setattr(notebook, "run", lambda cfg, **kw: trained.append(cfg) or {"preset": cfg.preset})
    committed = notebook_settings(None, results_dir=tmp_path)
    assert notebook.figure_run(committed) == {"preset": COMMITTED_PRESET}  # no paper-scale run yet
    assert re.search(r"The paper-scale run cifar10-500-lp-split0-paper-\w+ is not recorded yet: this figure is drawn "
                     f"from the {COMMITTED_PRESET} preset's run", capsys.readouterr().out)
    assert (trained[-1].preset, trained[-1].labels, trained[-1].split, trained[-1].method) == ("cpu", 500, 0, "lp")
    paper = tables.make_config("paper", dataset="cifar10", labels=500, split=0, method="lp")
    recorded = dict(run_id=tables.run_id(paper), preset="paper", method="lp", dataset="cifar10", labels=500, split=0,
                    test_error=30.0, history=[{"stage": 2, "epoch": 0}], device="cpu", omega_histograms=[],
                    confident_mistakes=[], **RECORD_REST)
    tables.lpdata.atomic_write(tmp_path / "runs" / tables.run_id(paper) / "record.json",
                               lambda f: f.write(json.dumps(recorded).encode()))
    assert notebook.figure_run(committed) == recorded and len(trained) == 1  # read, not trained
    assert "not recorded yet" not in capsys.readouterr().out
    assert notebook.figure_run(committed, split=1) == {"preset": COMMITTED_PRESET}  # split 1 has no paper-scale run
    assert notebook.figure_run(committed, labels=1000) == {"preset": COMMITTED_PRESET}  # nor 1000 labels
    assert (trained[-1].labels, trained[-1].split, len(trained)) == (1000, 0, 3)
    other = notebook_settings("smoke", results_dir=tmp_path)
    assert notebook.figure_run(other) == {"preset": "smoke"}  # another preset: its own run
    given = notebook_settings(COMMITTED_PRESET, results_dir=tmp_path)
    assert notebook.figure_run(given) == {"preset": COMMITTED_PRESET}  # the preset given, not the paper's run
    shown = notebook_settings("paper", results_dir=tmp_path, train=False)
    with pytest.raises(RuntimeError, match=r"no run cifar10-500-lp-split1-paper-\w+ recorded .*`lpnb run --preset "
                                           "paper --dataset cifar10 --labels 500 --method lp --split 1 --results-dir "
                                           f"{re.escape(str(tmp_path))}` on a GPU, "  # the notebook's own folder
                                           "or pass " + ("train=True" if torch.cuda.is_available() else
                                                         "preset='cpu' to the notebook \\(its small run, not "
                                                         "recorded here: the notebook trains it on this CPU\\)")):
        notebook.figure_run(shown, split=1)  # on a CPU, train=True would mean days
    small = tables.make_config("cpu", dataset="cifar10", labels=500, split=1, method="lp")
    tables.lpdata.atomic_write(tmp_path / "runs" / tables.run_id(small) / "record.json", lambda f: f.write(json.dumps(
        {**recorded, "run_id": tables.run_id(small), "preset": "cpu", "split": 1}).encode()))
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match=r"preset='cpu' to the notebook \(its small run, recorded\)"):
            notebook.figure_run(shown, split=1)
    assert notebook.figure_run(shown) == recorded and len(trained) == 5  # recorded: read, nothing trained
    with pytest.raises(ValueError, match=r"labels must be one label count for a figure \(e.g. 500\), got '500,1000'"):
        notebook.figure_run(committed, "500,1000")  # what `-p labels 500,1000` gives
    for split in (-1, "0", True):
        with pytest.raises(ValueError, match=r"notebook parameter split must be one split number >= 0 \(e.g. 0\)"):
            notebook.figure_run(committed, split=split)


def test_the_paper_preset_trains_by_default_only_with_cuda(monkeypatch, capsys):
    monkeypatch.setattr(notebook.torch.cuda, "is_available", lambda: False)
    assert not notebook_settings("paper").train and "showing the recorded runs only" in capsys.readouterr().out
    assert notebook_settings("paper", train=True).train and notebook_settings("cpu").train  # asked for; affordable
    monkeypatch.setattr(notebook.torch.cuda, "is_available", lambda: True)
    assert notebook_settings("paper").train and notebook_settings("auto").preset == "paper"
