"""What the notebooks call (lpnb.tables): checked parameters, where outputs go, tables from records."""
import pandas as pd
import pytest
from conftest import smoke

from lpnb import tables
from lpnb.experiment import REPO, run
from lpnb.tables import COMMITTED_PRESET, notebook_settings, output_dir, recorded, run_rows


@pytest.fixture(autouse=True)
def no_smoke_env(monkeypatch):
    monkeypatch.delenv("SMOKE_TEST", raising=False)
    monkeypatch.delenv("LPNB_RESULTS_DIR", raising=False)


def test_one_value_means_a_one_element_list():
    s = notebook_settings(labels=1000, methods="lp", datasets="cifar100")
    assert (s.labels, s.methods, s.datasets) == ([1000], ["lp"], ["cifar100"])
    assert notebook_settings(labels="500,1000").labels == [500, 1000]  # `-p labels 500,1000`
    assert notebook_settings(labels=[500, 4000], methods=["supervised", "mt+lp"]).methods == ["supervised", "mt+lp"]


@pytest.mark.parametrize("name, value", [("labels", "abc"), ("labels", -1), ("labels", 0), ("labels", True),
                                         ("labels", []), ("methods", "fixmatch"), ("methods", []),
                                         ("datasets", "svhn"), ("splits", -1), ("splits", 0), ("splits", "3"),
                                         ("train", "yes"), ("preset", "huge")])
def test_bad_notebook_parameters_are_refused_naming_them(name, value):
    with pytest.raises(ValueError, match=f"notebook parameter {name} must be"):
        notebook_settings(**{name: value})


def test_the_committed_preset_writes_in_place_and_others_apart(monkeypatch, tmp_path):
    monkeypatch.setenv("LPNB_CACHE_DIR", str(tmp_path))
    s = notebook_settings(None)
    assert s.preset == COMMITTED_PRESET
    assert (s.results_dir, s.tables_dir, s.figures_dir) == (REPO / "results", REPO / "results", REPO / "figures")
    s = notebook_settings("paper")
    assert (s.results_dir, s.tables_dir, s.figures_dir) == (REPO / "results", REPO / "build/paper/results",
                                                            REPO / "build/paper/figures")
    s = notebook_settings("smoke")  # nothing inside the repository
    assert output_dir("smoke") == tmp_path / "smoke"
    assert (s.results_dir, s.tables_dir, s.figures_dir) == (tmp_path / "smoke/results", tmp_path / "smoke/results",
                                                            tmp_path / "smoke/figures")
    s = notebook_settings("paper", results_dir=tmp_path / "r", figures_dir=tmp_path / "f")  # given: used as given
    assert (s.results_dir, s.tables_dir, s.figures_dir) == (tmp_path / "r", tmp_path / "r", tmp_path / "f")


def test_smoke_test_forces_smoke_training_and_stand_in_data(monkeypatch, tmp_path):
    monkeypatch.setenv("SMOKE_TEST", "1")
    monkeypatch.setenv("LPNB_SMOKE_DIR", str(tmp_path))
    s = notebook_settings("paper", results_dir="/committed/results", datasets="cifar10", train=False)
    assert (s.preset, s.results_dir, s.tables_dir, s.figures_dir, s.train) == (
        "smoke", tmp_path / "results", tmp_path / "results", tmp_path / "figures", True)
    assert s.data_root == tmp_path / "data"
    assert len(list((s.data_root / "cifar10" / "train").glob("*/*.png"))) == 4200  # 4000 labels + 200 unlabeled
    assert sorted(p.name for p in s.data_root.iterdir()) == ["cifar10"]  # no staging folder left behind


def test_run_rows_without_training_lists_what_is_missing(env, capsys):
    root, results = env
    done = run(smoke("supervised"), data_root=root, results_dir=results, progress=False)
    records = run_rows([{"method": "supervised"}, {"method": "lp"}], 50, 1, preset="smoke", results_dir=results,
                       train=False, unlabeled_size=200, test_size=100, device="cpu")
    assert [r["run_id"] for r in records] == [done["run_id"]]
    assert "not run yet (1): cifar10-50-lp-split0-smoke" in capsys.readouterr().out


def test_run_rows_skips_a_dataset_without_data_saying_so_without_paths(env, capsys, tmp_path):
    _, results = env
    assert run_rows([{"method": "supervised"}], 400, 1, dataset="cifar100", preset="smoke", data_root=tmp_path,
                    results_dir=results) == []
    out = capsys.readouterr().out
    assert "skipped cifar100: its data is not under the data root" in out and str(tmp_path) not in out


def test_recorded_returns_finished_runs_and_the_missing_ids(env):
    root, results = env
    done = run(smoke("supervised"), data_root=root, results_dir=results, progress=False)
    kw = dict(preset="smoke", results_dir=results, unlabeled_size=200, test_size=100, device="cpu")
    records, missing = recorded([{"method": "supervised"}, {"method": "lp"}], [50], 2, **kw)
    assert [r["run_id"] for r in records] == [done["run_id"]]
    assert [m.rsplit("-", 1)[0] for m in missing] == [
        "cifar10-50-supervised-split1-smoke", "cifar10-50-lp-split0-smoke", "cifar10-50-lp-split1-smoke"]
    assert len(recorded([{"method": "lp"}], 50, dataset="cifar100", **{**kw, "preset": "paper"})[1]) == 3  # 3 splits


def record(labels, method, error, preset="cpu", dataset="cifar10", use_omega=True, use_zeta=True):
    return {"dataset": dataset, "labels": labels, "method": method, "preset": preset, "device": "cpu",
            "config": {"use_omega": use_omega, "use_zeta": use_zeta}, "test_error": error}


def test_side_by_side_uses_the_papers_names_and_marks_a_cell_not_run():
    cells = [(4000, "supervised", 70.0), (4000, "supervised", 71.0), (4000, "mt", 75.0), (10000, "supervised", 60.0)]
    records = [record(labels, method, error, dataset="cifar100") for labels, method, error in cells]
    table = tables.side_by_side(tables.summarize(records))
    assert list(table.index) == ["Fully supervised", "Mean Teacher"]
    assert table.loc["Mean Teacher", ("CIFAR-100", 10000, "top-1 error %")] == "not run"
    assert table.loc["Mean Teacher", ("CIFAR-100", 4000, "top-1 error %")] == "75.00"  # one split: no ± 0.00
    assert table.loc["Fully supervised", ("CIFAR-100", 4000, "top-1 error %")] == "70.50 ± 0.50"


def test_table1_rows_are_named_by_their_weights():
    records = [record(500, "lp", 50.0, use_omega=o, use_zeta=z) for o in (False, True) for z in (False, True)]
    names = list(tables.side_by_side(tables.summarize(records + [record(500, "gtg", 51.0)])).index)
    assert names == ["Diffusion (7), no weights", "Diffusion (7) + ζ", "Diffusion (7) + ω",
                     "Ours: diffusion (7) + weights", "GTG + weights"]


def test_write_table_updates_the_cells_it_has_and_keeps_the_rest(tmp_path):
    path = tmp_path / "table2.csv"
    full = [record(labels, method, e + s) for labels, e in ((500, 50.0), (1000, 40.0))
            for method in ("supervised", "lp") for s in (0, 2)]
    tables.write_table(tables.summarize(full), path)
    tables.write_table(tables.summarize([record(500, "lp", 33.5)]), path)  # `-p labels 500 -p splits 1`
    tables.write_table(tables.summarize([record(500, "lp", 30.0, preset="paper")]), path)
    tables.write_table(tables.summarize([]), path)  # nothing recorded: the file is left as it is
    rows = [(r.labels, r.method, r.preset, r.ours_mean, r.splits) for r in pd.read_csv(path).itertuples()]
    assert rows == [(500, "supervised", "cpu", 51.0, 2), (500, "lp", "cpu", 33.5, 1),
                    (1000, "supervised", "cpu", 41.0, 2), (1000, "lp", "cpu", 41.0, 2), (500, "lp", "paper", 30.0, 1)]
