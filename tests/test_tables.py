"""The paper's tables from run records (lpnb.tables): cells, summaries, comparisons, findings, status."""
import json
import os
import re
import tarfile
import threading
from functools import partial

import numpy as np
import pandas as pd
import pytest
from conftest import RECORD_REST, smoke, write_timed_record
from PIL import Image

from lpnb import data as lpdata
from lpnb import tables
from lpnb.config import make_config, run_id
from lpnb.experiment import REPO, run
from lpnb.notebook import notebook_settings
from lpnb.tables import recorded, run_rows


@pytest.fixture(autouse=True)
def no_smoke_env(monkeypatch):
    monkeypatch.delenv("SMOKE_TEST", raising=False)
    monkeypatch.delenv("LPNB_RESULTS_DIR", raising=False)


def test_run_rows_without_training_lists_what_is_missing(env, capsys):
    root, results = env
    done = run(smoke("supervised"), data_root=root, results_dir=results, progress=False)
    records = run_rows([{"method": "supervised"}, {"method": "lp"}], 50, 1, preset="smoke", results_dir=results,
                       train=False, unlabeled_size=200, test_size=100, device="cpu")
    assert [r["run_id"] for r in records] == [done["run_id"]]
    assert "not run yet (1): cifar10-50-lp-split0-smoke" in capsys.readouterr().out


def test_run_rows_without_data_shows_what_is_recorded_and_trains_nothing(env, capsys, tmp_path):
    root, results = env
    done = run(smoke("supervised"), data_root=root, results_dir=results, progress=False)
    kw = dict(preset="smoke", data_root=tmp_path, results_dir=results, unlabeled_size=200, test_size=100,
              device="cpu")  # tmp_path holds no data
    for workers in (1, 2):  # the sweep path too: recorded cells are shown, not dropped with the dataset
        records = run_rows([{"method": "supervised"}, {"method": "lp"}], 50, 1, workers=workers, **kw)
        assert records == [done]
        out = capsys.readouterr().out
        assert out == (f"not run yet (1), and not trained: no cifar10 data found in {tmp_path}; give the folder that "
                       "holds it as the notebook's data_root (lpnb.data.load_dataset('cifar10') says where it looks "
                       "and what it reads)\n")  # the data root given, no id list


def test_training_is_announced_with_the_committed_records_a_results_dir_hides(capsys, tmp_path, monkeypatch):
    cells = [make_config("cpu", labels=500, method=m) for m in ("supervised", "lp")]  # both committed
    tables.announce_training(cells + [make_config("cpu", labels=500, method="lp", split=7)], tmp_path)
    line, estimate = capsys.readouterr().out.split(": about ")  # the time, judged from the committed records
    assert line == (f"training 3 run(s) not recorded in {tmp_path}, with the stage-1 runs they continue where those "
                    "have no checkpoint (cpu preset; train=False shows only what is recorded)")
    assert re.fullmatch(f"[0-9.]+ (min|h) \\(the stage-1 runs included\\), judged from like runs recorded on .+; "
                        f"{re.escape(str(REPO / 'results'))} holds 2 of them, which results_dir=None would read "
                        "instead\n", estimate)
    monkeypatch.setenv("LPNB_RESULTS_DIR", str(tmp_path))  # where results_dir=None reads now
    tables.announce_training(cells[:1], None)
    line, estimate = capsys.readouterr().out.split(": about ")
    assert line == f"training 1 run(s) not recorded in {tmp_path} (cpu preset; train=False shows only what is recorded)"
    assert estimate.endswith(f"; {REPO / 'results'} holds 1 of them, which $LPNB_RESULTS_DIR unset and "
                             "results_dir=None would read instead\n")
    tables.announce_training([make_config("smoke", labels=500, method="supervised")], tmp_path)
    assert capsys.readouterr().out.endswith(f"{tmp_path} (smoke preset; train=False shows only what is recorded)\n")


def test_runs_not_run_in_a_results_dir_say_when_the_repository_records_them(capsys, tmp_path):
    records = run_rows([{"method": "supervised"}, {"method": "lp"}], 500, 1, preset="cpu", results_dir=tmp_path,
                       train=False)
    assert records == [] and capsys.readouterr().out == (
        f"not run yet (2): {run_id(make_config('cpu', labels=500, method='supervised'))}, "
        f"{run_id(make_config('cpu', labels=500, method='lp'))}; {REPO / 'results'} holds 2 of them, which "
        "results_dir=None would read instead\n")


def test_the_training_time_is_judged_from_like_runs_recorded(tmp_path):
    write = partial(write_timed_record, tmp_path)
    cell = partial(make_config, "smoke", labels=500)
    write(cell(method="supervised", split=0), 2)
    write(cell(method="supervised", split=1), 4)
    write(cell(method="supervised", split=2, labels=4000), 100)  # another label count
    write(cell(method="lp", split=0), 5, device="GPU")  # its own stage only: not the 999 s of the stage 1 it nests
    (tmp_path / "runs" / "broken").mkdir()
    (tmp_path / "runs" / "broken" / "record.json").write_text("{")  # skipped
    untimed = cell(method="supervised", split=9)
    write(untimed, 0)
    record = json.loads((tmp_path / "runs" / run_id(untimed) / "record.json").read_text())
    del record["timings"]  # a record need not have its times: skipped
    (tmp_path / "runs" / run_id(untimed) / "record.json").write_text(json.dumps(record))
    lp = cell(method="lp", split=5, labels=1000)  # the nearest label count recorded: 500
    assert tables.training_time([lp], tmp_path) == ("about 8 min (the stage-1 runs included), judged from like "
                                                    "runs recorded on GPU or cpu (2 cores, x86_64)")  # 5 + median 3
    (tmp_path / "runs" / run_id(cell(method="supervised", split=5, labels=1000))).mkdir()
    (tmp_path / "runs" / run_id(cell(method="supervised", split=5, labels=1000)) / "checkpoint.pt").touch()
    assert tables.training_time([lp], tmp_path) == "about 5 min, judged from like runs recorded on GPU"
    both = [cell(method=m, split=3) for m in ("supervised", "lp", "gtg")]  # one stage 1, counted once
    assert tables.training_time(both, tmp_path) == (
        "about 8 min for 2 of the 3 runs to train, judged from like runs recorded on GPU or cpu (2 cores, x86_64); "
        "no run like the other 1 is recorded")
    assert tables.training_time([cell(method="mt+lp", split=0)], tmp_path) is None  # nor its stage 1 (mt)
    assert tables.training_time([cell(method="supervised", labels=3000)], tmp_path) == (
        "about 1.7 h, judged from like runs recorded on cpu (2 cores, x86_64)")
    write(cell(method="supervised", split=0, labels=20), 0.2)  # seconds: not "about 0 min"
    assert tables.training_time([cell(method="supervised", labels=20, split=1)], tmp_path).startswith(
        "under a minute, judged")
    for split, minutes in enumerate((1, 1, 10)):  # one slow run (compiling, say) does not make the typical one slow
        write(cell(method="supervised", split=split, labels=7), minutes)
    assert tables.training_time([cell(method="supervised", labels=7, split=5)], tmp_path).startswith("about 1 min")


def test_runs_that_fail_in_a_notebook_fail_it_with_one_worker_or_many(env, capsys, tmp_path):
    root, results = env
    kw = dict(preset="smoke", data_root=root, results_dir=results, unlabeled_size=200, test_size=100,
              device="cuda:9")  # a device no machine here has: the run fails before it trains
    with pytest.raises(ValueError, match="device 'cuda:9'"):
        run_rows([{"method": "supervised"}], 50, 1, **kw)
    with pytest.raises(RuntimeError, match="runs of this table failed"):
        run_rows([{"method": "supervised"}], 50, 1, workers=2, **kw)
    assert "device 'cuda:9'" in capsys.readouterr().out  # the sweep's report says why
    with pytest.raises(ValueError, match=f"notebook parameter data_root: {tmp_path / 'nowhere'} is not a folder"):
        notebook_settings(data_root=tmp_path / "nowhere")


def test_a_notebooks_workers_share_the_gpus_when_they_outnumber_them(env, monkeypatch):
    root, results = env
    asked = []
    monkeypatch.setattr("lpnb.sweep.sweep", lambda cells, **kw: asked.append(kw["per_gpu"]) or [])
    kw = dict(preset="smoke", data_root=root, results_dir=results, unlabeled_size=200, test_size=100, device="auto")
    for gpus, workers, per_gpu in ((1, 3, 3), (2, 3, 2), (4, 2, 1)):
        monkeypatch.setattr("torch.cuda.device_count", lambda g=gpus: g)
        run_rows([{"method": "supervised"}], 50, 1, workers=workers, **kw)
        assert asked.pop() == per_gpu


def test_run_rows_shows_records_of_another_copy_of_the_data_but_trains_none_beside_them(env, tmp_path):
    root, results = env
    done = run(smoke("supervised"), data_root=root, results_dir=results, progress=False)
    other = lpdata.write_standin(tmp_path / "other", train_per_class=30, test_per_class=10, seed=1)
    with pytest.raises(RuntimeError, match="made from other data"):  # training on it would mix the data
        run(smoke("lp"), data_root=other, results_dir=results, progress=False)
    kw = dict(preset="smoke", data_root=other, results_dir=results, unlabeled_size=200, test_size=100, device="cpu")
    assert run_rows([{"method": "supervised"}], 50, 1, **kw) == [done]  # read, not refused and not retrained
    for workers in (1, 2):  # a missing cell would be trained on the other copy beside it: refused, nothing trained
        with pytest.raises(RuntimeError, match="made from other data"):
            run_rows([{"method": "supervised"}], 50, 2, workers=workers, **kw)
    assert not list((results / "runs").glob("*split1*"))


def test_recorded_returns_finished_runs_and_the_missing_ids(env):
    root, results = env
    done = run(smoke("supervised"), data_root=root, results_dir=results, progress=False)
    kw = dict(preset="smoke", results_dir=results, unlabeled_size=200, test_size=100, device="cpu")
    records, missing = recorded([{"method": "supervised"}, {"method": "lp"}], [50], 2, **kw)
    assert [r["run_id"] for r in records] == [done["run_id"]]
    assert [m.rsplit("-", 1)[0] for m in missing] == [
        "cifar10-50-supervised-split1-smoke", "cifar10-50-lp-split0-smoke", "cifar10-50-lp-split1-smoke"]
    assert len(recorded([{"method": "lp"}], 50, dataset="cifar100", **{**kw, "preset": "paper"})[1]) == 3  # 3 splits
    with pytest.raises(ValueError, match="split given as a config override: the cells choose them"):
        recorded([{"method": "lp"}], 50, split=0, **kw)  # a typo for splits


def record(labels, method, error, preset="cpu", dataset="cifar10", use_omega=True, use_zeta=True, split=0):
    return {"dataset": dataset, "labels": labels, "method": method, "preset": preset, "device": "cpu", "split": split,
            "config": {"use_omega": use_omega, "use_zeta": use_zeta}, "test_error": error}


def test_no_record_at_all_reads_not_run_and_a_long_list_of_runs_to_do_is_cut(capsys):
    assert tables.side_by_side(tables.summarize([])).iloc[0, 0] == f"not run: {tables.NO_RECORD}"
    rows = [dict(method="supervised"), dict(method="lp", use_omega=False, use_zeta=True)]
    empty = tables.side_by_side(tables.summarize([]), rows)
    assert list(empty.index) == ["Fully supervised", "Diffusion (7) + ζ"] and set(empty.iloc[:, 0]) == {"not run"}
    shown = tables.side_by_side(tables.summarize([record(500, "supervised", 40.0)]), rows)  # a row, none recorded
    assert list(shown.index) == ["Fully supervised", "Diffusion (7) + ζ"] and list(shown.iloc[:, 0]) == [
        "40.00", "not run"]
    run_rows([{"method": "lp"}], [500, 1000], 6, preset="paper", results_dir=REPO / "build/none", train=False)
    out = capsys.readouterr().out
    assert re.search(r"not run yet \(12\): (cifar10-\d+-lp-split\d-paper-\w+, ){9}cifar10-\S+ and 2 more\n", out)


def test_side_by_side_uses_the_papers_names_and_marks_a_cell_not_run():
    cells = [(4000, "supervised", 70.0), (4000, "supervised", 71.0), (4000, "mt", 75.0), (10000, "supervised", 60.0)]
    records = [record(labels, method, error, dataset="cifar100") for labels, method, error in cells]
    table = tables.side_by_side(tables.summarize(records))
    assert list(table.index) == ["Fully supervised", "Mean Teacher"]
    assert table.loc["Mean Teacher", ("CIFAR-100", 10000, "top-1 error %")] == "not run"
    assert table.loc["Mean Teacher", ("CIFAR-100", 4000, "top-1 error %")] == "75.00"  # one split: no ± 0.00
    assert table.loc["Fully supervised", ("CIFAR-100", 4000, "top-1 error %")] == "70.50 ± 0.50"


def test_every_number_of_the_paper_csvs_is_in_the_papers_text():
    """A typo in results/paper/ would put a wrong number beside ours: each mean ± std must be in the paper's text."""
    text = " ".join(p.read_text() for p in sorted((REPO.parent / "shared" / "paper").glob("*.md")))
    if not text:
        pytest.skip("the paper's text (../shared/paper/) is not beside the repository")
    for csv in sorted((REPO / "results" / "paper").glob("table*.csv")):
        for row in pd.read_csv(csv, dtype=str, keep_default_na=False).itertuples():  # "32.40" as written
            std = r"\s*\$?\s*\\pm\s*\$?\s*" + re.escape(row.std) if row.std else r"\$"  # "$a \pm b$", "(a $\pm$ b)"
            assert re.search(re.escape(row.error) + std, text), f"{csv.name}: {row}"


def test_summarize_keeps_the_cells_the_paper_has_no_number_for():
    paper = REPO / "results/paper/table2.csv"
    table = tables.summarize([record(4000, "lp", 20.0), record(50, "lp", 60.0)], paper)  # 50 labels: ours only
    assert table.labels.tolist() == [4000, 50] and table.paper_mean.iloc[0] == 12.69
    assert pd.isna(table.paper_mean.iloc[1]) and table.ours_mean.iloc[1] == 60.0


def test_side_by_side_shows_every_column_selected_and_the_papers_number_where_not_run():
    """A dataset or a label count with no record at all still has its columns (Mini-ImageNet's top-1 and top-5)."""
    paper = REPO / "results/paper/table3.csv"
    rows, columns = [dict(method="supervised"), dict(method="lp")], [("cifar100", 4000), ("miniimagenet", 10000)]
    table = tables.side_by_side(tables.summarize([record(4000, "supervised", 56.0, dataset="cifar100")], paper), rows,
                                columns, paper)
    assert list(table.columns) == [("CIFAR-100", 4000, "top-1 error %"), ("Mini-ImageNet", 10000, "top-1 error %"),
                                   ("Mini-ImageNet", 10000, "top-5 error %")]
    assert table.loc["Fully supervised"].tolist() == ["56.00 (55.43)", "not run (60.25)", "not run (38.28)"]
    assert table.loc["Ours: diffusion (7) + weights"].tolist() == ["not run (46.20)", "not run (57.58)",
                                                                   "not run (36.14)"]
    empty = tables.side_by_side(tables.summarize([], paper), rows, columns[1:])  # nothing recorded, no paper given
    assert empty.shape == (2, 2) and set(empty.to_numpy().ravel()) == {"not run"}


def test_a_stage1_record_is_one_row_whatever_weight_flags_its_config_carries(tmp_path):
    """A supervised run trained for Table 1's 'no weights' row carries use_omega = use_zeta = False in its config
    (before base_config reset them): it is the same cell as the others, with the paper's number beside it."""
    records = [record(500, "supervised", 60.0, use_omega=False, use_zeta=False, split=3),
               record(500, "supervised", 62.0, split=1),
               {**record(500, "supervised", 70.0, split=0), "device": "gpu b"},
               {**record(500, "supervised", 68.0, split=2), "device": "gpu a"}]
    paper = dict(dataset="cifar10", labels=500, method="supervised", metric="top1", error=49.08, std=1.0)
    pd.DataFrame([paper]).to_csv(csv := tmp_path / "table.csv", index=False)
    table = tables.summarize(records, csv)
    assert len(table) == 1 and table.ours_mean[0] == 65.0 and table.splits[0] == 4 and table.paper_mean[0] == 49.08
    assert table.split_numbers[0] == "0 1 2 3"  # which splits the mean is over
    assert table.device[0] == "cpu; gpu a; gpu b"  # every device the cell's runs ran on
    copies = [{**records[0], "data": "cifar10 from cifar10.tar.gz", "data_content": "2ad0627943a0028a"},
              {**records[1], "data": "cifar10 from cifar-10-py"}]
    assert tables.summarize(copies).data[0] == (  # every copy of the data, ours marked JPEG
        "cifar10 from cifar-10-py; cifar10 from cifar10.tar.gz (JPEG q95)")
    assert tables.summarize(records[:1]).ours_std.isna().all()  # one split: no spread, not 0
    with pytest.raises(ValueError, match=r"records of the presets \['cpu', 'paper'\]: summarize one preset"):
        tables.summarize([records[0], {**records[1], "preset": "paper"}])  # not two splits of one cell
    ours = [{**full_record("lp", s, e), "config": {"use_omega": False, "use_zeta": False}} for s, e in ((0, 30.0),)]
    assert tables.compare(ours + [{**r, "split": 0} for r in records[:1]], {"method": "lp", "use_omega": False,
                                                                            "use_zeta": False}, "supervised")[1] == (
        "Diffusion (7), no weights has a lower error than Fully supervised on 1 of 1 split at 500 labels "
        "(difference -30.00 points).")


def test_table1_rows_are_named_by_their_weights():
    records = [record(500, "lp", 50.0, use_omega=o, use_zeta=z) for o in (False, True) for z in (False, True)]
    names = list(tables.side_by_side(tables.summarize(records + [record(500, "gtg", 51.0)])).index)
    assert names == ["Diffusion (7), no weights", "Diffusion (7) + ζ", "Diffusion (7) + ω",
                     "Ours: diffusion (7) + weights", "GTG + weights"]
    network = [record(500, "network", 40.0), record(500, "network", 35.0, use_omega=False, use_zeta=False)]
    assert list(tables.side_by_side(tables.summarize(network)).index) == [  # two rows, not one averaged
        "Network prediction (1) + weights", "Network prediction (1), no weights"]
    assert tables.row_name("supervised", False, False) == "Fully supervised"  # no pseudo-labels to weight


def test_two_notebooks_writing_one_table_at_once_keep_both_columns(tmp_path, monkeypatch):
    """The first writer has read the file when the second comes: the second waits for it, instead of writing
    a table that the first then overwrites without the second's rows."""
    path = tmp_path / "table2.csv"
    tables.write_table(tables.summarize([record(4000, "lp", 20.0)]), path)
    read, has_read, go_on = tables._read_table, threading.Event(), threading.Event()

    def slow_read(p):
        table = read(p)
        if threading.current_thread().name == "first":
            has_read.set()
            go_on.wait(10)
        return table
    monkeypatch.setattr(tables, "_read_table", slow_read)
    writers = [threading.Thread(target=tables.write_table, args=(tables.summarize([record(n, "lp", 30.0)]), path),
                                name=name) for n, name in ((500, "first"), (1000, "second"))]
    writers[0].start()
    assert has_read.wait(10)
    writers[1].start()
    writers[1].join(0.5)
    go_on.set()
    for writer in writers:
        writer.join(10)
    assert sorted(pd.read_csv(path).labels) == [500, 1000, 4000]


def test_write_table_updates_the_cells_it_has_and_keeps_the_rest(tmp_path):
    path = tmp_path / "table2.csv"
    full = [record(labels, method, e + s) for labels, e in ((500, 50.0), (1000, 40.0))
            for method in ("supervised", "lp") for s in (0, 2)]
    tables.write_table(tables.summarize(full), path)
    tables.write_table(tables.summarize([record(500, "lp", 33.5)]), path)  # `-p labels 500 -p splits 1`
    tables.write_table(tables.summarize([record(500, "lp", 30.0, preset="paper")]), path)
    tables.write_table(tables.summarize([]), path)  # nothing recorded: the file is left as it is
    assert tables.write_table(tables.summarize([]), tmp_path / "none.csv") is None  # and none is made
    assert not (tmp_path / "none.csv").exists()
    rows = [(r.labels, r.method, r.preset, r.ours_mean, r.splits) for r in pd.read_csv(path).itertuples()]
    assert rows == [(500, "supervised", "cpu", 51.0, 2), (500, "lp", "cpu", 33.5, 1),
                    (1000, "supervised", "cpu", 41.0, 2), (1000, "lp", "cpu", 41.0, 2), (500, "lp", "paper", 30.0, 1)]
    older = pd.read_csv(path).drop(columns="data").assign(gone="x")  # a file from before a column was added
    older.to_csv(path, index=False)
    tables.write_table(tables.summarize([record(500, "lp", 31.0)]), path)
    assert list(pd.read_csv(path).columns) == [*tables.summarize(full).columns, "gone"]  # summarize's order
    text = path.read_text()
    for damaged, why in ((text[:text.rindex("\ncifar10,") + 12] + "\n", r"row \d+ is incomplete"),
                         (text[:-3], "it ends inside a line"), ("", "it is empty"), ("\n", "No columns"),
                         ('"dataset,labels\n', "EOF inside string"), ("a,b\n1,2\n", "no column dataset")):
        path.write_text(damaged)  # cut short, emptied, or not a table of ours: named, not merged
        with pytest.raises(ValueError, match=f"table {path} is damaged \\(.*{why}.*delete it: the notebook"):
            tables.write_table(tables.summarize([record(500, "lp", 31.0)]), path)
        assert path.read_text() == damaged


def test_a_table_write_interrupted_leaves_the_file_as_it_was(tmp_path, monkeypatch):
    path = tmp_path / "table2.csv"
    tables.write_table(tables.summarize([record(500, "lp", 30.0)]), path)
    before = path.read_bytes()

    def killed(*args):
        raise KeyboardInterrupt
    monkeypatch.setattr(os, "replace", killed)  # the kill comes just before the new file would take its place
    with pytest.raises(KeyboardInterrupt):
        tables.write_table(tables.summarize([record(1000, "lp", 20.0)]), path)
    assert path.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == [".table2.csv.lock", path.name]


def test_write_table_drops_the_selected_cells_no_record_gives_any_more(tmp_path):
    path = tmp_path / "table2.csv"
    full = [record(labels, method, 40.0) for labels in (500, 1000) for method in ("supervised", "lp")]
    tables.write_table(tables.summarize(full), path)
    tables.write_table(tables.summarize([record(500, "lp", 30.0, preset="paper")]), path)
    rows, columns = [{"method": "supervised"}, {"method": "lp"}], [("cifar10", 500)]
    left = [r for r in full if (r["labels"], r["method"]) != (500, "lp")]  # lp's records at 500 labels deleted
    tables.write_table(tables.summarize(left), path, rows, columns, "cpu")
    assert [(r.labels, r.method, r.preset) for r in pd.read_csv(path).itertuples()] == [
        (500, "supervised", "cpu"), (1000, "supervised", "cpu"), (1000, "lp", "cpu"), (500, "lp", "paper")]
    tables.write_table(tables.summarize([]), path, rows, [("cifar10", 1000)], "cpu")  # none left at 1000 labels
    assert [(r.labels, r.method, r.preset) for r in pd.read_csv(path).itertuples()] == [
        (500, "supervised", "cpu"), (500, "lp", "paper")]


def full_record(method, split, error, labels=500, base=None, history=(), **extra):
    return {**record(labels, method, error), "split": split, "run_id": f"{method}-{labels}-split{split}",
            "base_run": base, "history": list(history),
            "timings": {"train": 60.0, "eval": 30.0, **({"stage1": {"train": 120.0, "eval": 60.0}} if base else {})},
            **extra}


def test_compare_gives_the_differences_split_by_split_and_says_what_they_show():
    records = [full_record("lp", s, e) for s, e in ((0, 30.0), (1, 32.0), (2, 35.0))]
    records += [full_record("network", s, e) for s, e in ((0, 31.0), (1, 31.5))]  # split 2 not run
    table, text = tables.compare(records, "lp", "network")
    assert table.loc[("CIFAR-10", 500)].tolist() == [-1.0, 0.5]
    assert text == ("Ours: diffusion (7) + weights has a lower error than Network prediction (1) + weights on 1 of 2 "
                    "splits at 500 labels (mean difference -0.25 points, from -1.00 to +0.50).")
    more = [{**r, "labels": 4000, "test_error": r["test_error"] + 10 * (r["method"] == "lp")} for r in records]
    more += [{**r, "dataset": "cifar100"} for r in records]  # counted per dataset and label count, not pooled
    assert tables.compare(records + more, "lp", "network")[1] == (
        "Ours: diffusion (7) + weights has a lower error than Network prediction (1) + weights on 1 of 2 splits at "
        "CIFAR-10 500 labels, 0 of 2 at CIFAR-10 4000 and 1 of 2 at CIFAR-100 500 (mean difference +3.08 points, from "
        "-1.00 to +10.50).")
    ablated = [{**r, "config": {"use_omega": False, "use_zeta": True}} for r in records if r["method"] == "lp"]
    no_omega = tables.compare(records + ablated, "lp", {"method": "lp", "use_omega": False})[0]
    assert no_omega.values.tolist() == [[0, 0, 0]]
    assert tables.compare(records, "lp", "gtg")[1] == (  # a method not selected is not "no shared split"
        "No comparison of Ours: diffusion (7) + weights with GTG + weights: GTG + weights has no run here (not "
        "selected, or not run yet).")
    assert "Fully supervised and Mean Teacher have no run" in tables.compare(records, "supervised", "mt")[1]
    lp2 = [r for r in records if r["method"] == "lp" and r["split"] == 2]
    assert tables.compare(lp2 + records[3:], "lp", "network")[1].endswith("share no recorded split yet.")
    assert tables.compare(records[:1] + records[3:], "lp", "network")[1].endswith(
        "on 1 of 1 split at 500 labels (difference -1.00 points).")  # one split: no mean or range of one


def test_compare_says_where_the_order_of_two_rows_is_the_paper_s_and_where_it_is_reversed(tmp_path):
    paper = tmp_path / "paper.csv"
    paper.write_text("method,dataset,labels,metric,error,std,source\nlp,cifar10,500,top1,30.0,1,paper\n"
                     "network,cifar10,500,top1,32.0,1,paper\nlp,cifar10,4000,top1,12.0,1,paper\n"
                     "network,cifar10,4000,top1,13.0,1,paper\nlp,cifar10,4000,top5,1.0,0,paper\n"
                     "network,cifar10,4000,top5,2.0,0,paper\n")
    records = [full_record(m, s, e, labels) for m, s, e, labels in [
        ("lp", 0, 30.0, 500), ("network", 0, 31.0, 500), ("lp", 1, 33.0, 500), ("network", 1, 32.5, 500),
        ("lp", 0, 20.0, 4000), ("network", 0, 19.0, 4000), ("lp", 0, 20.0, 2000), ("network", 0, 21.0, 2000)]]
    text = tables.compare(records, "lp", "network", paper)[1]  # 500: -0.25 on average; 2000: no paper number
    assert text.endswith("(mean difference -0.12 points, from -1.00 to +1.00). Against the paper's means: the "
                         "reverse order at 4000 labels, the same at 500.")
    assert tables.compare(records[:4] + records[6:], "lp", "network", paper)[1].endswith(
        "to +0.50). Against the paper's means: the same order at 500 labels.")  # 2000: no paper number to say
    assert tables.compare(records[4:6], "lp", "network", paper)[1].endswith(
        "(difference +1.00 points). Against the paper's means: the reverse order at 4000 labels.")
    assert tables.compare(records[6:], "lp", "network", paper)[1].endswith("(difference -1.00 points).")
    assert tables.compare(records, "lp", "network")[1].endswith("to +1.00).")  # no paper numbers given


def test_per_split_and_run_times():
    records = [full_record("lp", s, 30.0 + s, base="b") for s in (0, 1)] + [full_record("supervised", 0, 40.0)]
    assert tables.per_split(records).loc[("CIFAR-10", 500, "Ours: diffusion (7) + weights")].tolist() == [30.0, 31.0]
    times = tables.run_times(records)
    lp = times.loc[("cpu", "CIFAR-10", 500, "Ours: diffusion (7) + weights", "cpu")]
    assert (lp["runs"], lp["stage 1 (min)"], lp["stage 2 (min)"]) == (2, 3.0, 1.5)  # stage 1 nested in a stage-2 record
    assert tables.run_times(records + records).equals(times)  # a record given twice is one run
    supervised = times.loc[("cpu", "CIFAR-10", 500, "Fully supervised", "cpu")]
    assert (supervised["stage 1 (min)"], supervised["stage 2 (min)"]) == (1.5, 0.0)
    elsewhere = {**records[1], "run_id": "other", "device": "NVIDIA H100"}  # other hardware: a row of its own
    times = tables.run_times(records[:1] + [elsewhere])
    assert times.xs("Ours: diffusion (7) + weights", level="method")["runs"].to_dict() == {
        ("cpu", "CIFAR-10", 500, "cpu"): 1, ("cpu", "CIFAR-10", 500, "NVIDIA H100"): 1}


def test_a_table_without_rows_says_so_in_its_one_cell():
    supervised = [full_record("supervised", 0, 40.0)]
    shown = {"per split": tables.per_split([]), "run times": tables.run_times([]),
             "progress": tables.pseudo_label_progress(supervised),
             "compare": tables.compare(supervised, "lp", "network")[0]}
    for what, table in shown.items():
        assert table.shape == (1, 1) and "not run yet" in table.iloc[0, 0], what  # not pandas' "Empty DataFrame"
    assert "Ours: diffusion (7) + weights" in shown["progress"].iloc[0, 0]


def test_time_split_adds_up_the_parts_of_both_stages_and_the_slow_first_epochs():
    stage1 = {"setup": 10.0, "train": 100.0, "eval": 20.0}
    stage2 = {"setup": 5.0, "train": 200.0, "eval": 20.0, "descriptors": 30.0, "pseudo_labels": 45.0,
              "pseudo_label_phases": {"order": 1.0, "knn": 9.0, "graph": 5.0, "cg": 20.0, "weights": 5.0}}
    history = ([{"stage": 1, "seconds": s} for s in (50.0, 10.0, 10.0, 10.0)]  # the first epoch compiles: 40 s more
               + [{"stage": 2, "seconds": s} for s in (20.0, 20.0, 29.0)])  # 29 s: under 1.5x the median
    rec = full_record("lp", 0, 30.0, base="b", history=history)
    rec["timings"] = {"stage1": stage1, **stage2}
    split = tables.time_split(rec, wall_seconds=500.0).set_index("part")
    assert split.loc["stage 1: training steps", "seconds"] == 100.0
    assert split.loc["stage 2: k-NN search and graph", "seconds"] == 15.0
    assert split.loc["stage 2: conjugate gradient and weights", "seconds"] == 25.0
    assert split.loc["stage 2: other pseudo-labelling", "seconds"] == 5.0
    assert split.loc["start-up and other", "seconds"] == 500.0 - 130.0 - 5.0 - 200.0 - 20.0 - 30.0 - 45.0
    assert split.loc["total", "seconds"] == 500.0 and split.loc["total", "share %"] == 100.0
    assert split.loc["of which slow epochs (compilation, warm-up)", "seconds"] == 40.0
    supervised = tables.time_split({**rec, "base_run": None, "timings": stage1}).set_index("part")
    assert list(supervised.index) == ["stage 1: set-up", "stage 1: training steps", "stage 1: test evaluation",
                                      "total", "of which slow epochs (compilation, warm-up)"]
    assert supervised.loc["total", "seconds"] == 130.0 and supervised.loc["total", "share %"] == 100.0
    stage2_only = tables.time_split(rec, wall_seconds=400.0, with_stage1=False).set_index("part")  # stage 1 before
    assert not any(part.startswith("stage 1") for part in stage2_only.index)
    assert stage2_only.loc["start-up and other", "seconds"] == 400.0 - 5.0 - 200.0 - 20.0 - 30.0 - 45.0
    assert "of which slow epochs (compilation, warm-up)" not in stage2_only.index  # stage 1's slow epoch left out
    with pytest.raises(ValueError, match=r"wall-clock given \(300.0 s\) is shorter than the parts .*stage 1 trained"):
        tables.time_split(rec, wall_seconds=300.0)
    del stage2["pseudo_label_phases"]  # a record made before propagate's phases were timed
    older = tables.time_split({**rec, "timings": {"stage1": stage1, **stage2}}).set_index("part")
    assert older.loc["stage 2: pseudo-labelling (its phases not recorded)", "seconds"] == 45.0
    assert not any("k-NN" in part or "other pseudo" in part for part in older.index)


def test_the_figure_findings_are_computed_from_the_record():
    history = [{"stage": 1, "epoch": 0}] + [{"stage": 2, "epoch": e, "pseudo_label_acc": d, "network_acc": n}
                                           for e, d, n in ((0, 40.0, 35.0), (1, 44.0, 45.0), (2, 50.0, 48.0))]
    histogram = {"epoch": 1, "edges": [0.0, 0.25, 0.5, 0.75, 1.0], "correct": [10, 20, 30, 40],
                 "incorrect": [40, 30, 20, 10]}
    mistakes = [{"pseudo_label": 1, "label": 9}] * 3 + [{"pseudo_label": 6, "label": 2}]
    rec = full_record("lp", 0, 30.0, base="b", history=history, omega_histograms=[histogram],
                      confident_mistakes=mistakes)
    table, text = tables.pseudo_label_accuracy(rec)
    assert table.index.tolist() == [0, 1, 2] and table["Network (1)"].tolist() == [35.0, 45.0, 48.0]
    assert text.startswith("Diffusion pseudo-labels are more accurate than the network's at 2 of 3 stage-2 epochs")
    table, text = tables.certainty_split(rec)
    assert table.loc[1].tolist() == [100, 70.0, 30.0]  # omega >= 0.5: 70 of 100 correct; below: 30 of 100
    counts, text = tables.confusions(rec)
    assert counts.iloc[0].tolist() == ["automobile", "truck", 3] and "3 are truck images taken for automobile" in text
    progress = tables.pseudo_label_progress([rec])
    assert progress.iloc[0].tolist() == [40.0, 50.0, 35.0, 48.0]


def test_figure4_names_the_run_s_pseudo_labeller_and_refuses_a_run_without_one():
    history = [{"stage": 2, "epoch": 0, "pseudo_label_acc": 40.0, "network_acc": 35.0}]
    table, text = tables.pseudo_label_accuracy({"method": "gtg", "history": history})
    assert table.columns.tolist() == ["GTG", "Network (1)"] and text.startswith("GTG pseudo-labels are more accurate")
    rec = full_record("network", 0, 30.0, history=history)  # its pseudo-labels are the network's predictions
    with pytest.raises(ValueError, match="run network-500-split0 is of method 'network'.*lp or mt\\+lp or gtg"):
        tables.pseudo_label_accuracy(rec)


def test_confusions_name_the_classes_of_the_record_s_dataset():
    mistakes = [{"pseudo_label": 42, "label": 3}]
    names = np.array([f"c{i}" for i in range(100)])  # as a dataset's classes may come
    assert tables.confusions({"dataset": "cifar100", "confident_mistakes": mistakes}, names)[0].iloc[0].tolist() == [
        "c42", "c3", 1]
    named = tables.confusions({"dataset": "cifar100", "classes": [f"c{i}" for i in range(100)],
                               "confident_mistakes": mistakes})[0]
    assert named.iloc[0].tolist() == ["c42", "c3", 1]
    assert tables.confusions({"dataset": "cifar100", "confident_mistakes": mistakes})[0].iloc[0].tolist() == [
        "class 42", "class 3", 1]  # a record that does not name its classes


def test_the_figure_findings_count_before_rounding_and_name_ties():
    history = [{"stage": 2, "epoch": e, "pseudo_label_acc": d, "network_acc": n}
               for e, d, n in ((0, 40.0, 38.0), (1, 48.04, 47.96), (2, 50.0, 49.0))]  # epoch 1: 48.0 and 48.0 shown
    rec = {"method": "lp", "history": history}
    assert "at 3 of 3 stage-2 epochs" in tables.pseudo_label_accuracy(rec)[1]
    assert tables._figure4(rec) == ("diffusion ahead at 3 of 3 epochs; last epoch 50.0% correct against the "
                                    "network's 49.0%")
    mistakes = [{"pseudo_label": 6, "label": 2}] * 2 + [{"pseudo_label": 1, "label": 9}] * 2 + [
        {"pseudo_label": 3, "label": 5}]
    for order in (mistakes, mistakes[::-1]):  # the same words whatever the order of the records
        counts, text = tables.confusions({"dataset": "cifar10", "confident_mistakes": order})
        assert counts["images"].tolist() == [2, 2, 1] and text == (
            "Of the 5 wrong pseudo-labels with the highest ω, 2 each are bird images taken for frog and truck images "
            "taken for automobile, the most frequent confusions (tied).")
        assert tables._figure7({"dataset": "cifar10", "confident_mistakes": order}) == (
            "2 of 5 each: bird taken for frog and truck taken for automobile")


def test_one_confident_mistake_is_said_as_one():
    rec = {"dataset": "cifar10", "confident_mistakes": [{"pseudo_label": 1, "label": 9}]}
    assert tables.confusions(rec)[1] == "The one wrong pseudo-label with the highest ω is a truck image taken for " \
        "automobile."


def test_confusions_say_which_pseudo_label_most_mistakes_carry_and_show_no_empty_table():
    mistakes = [{"pseudo_label": 1, "label": 9}] * 3 + [{"pseudo_label": 1, "label": 3}] * 2 + [
        {"pseudo_label": 6, "label": 2}]
    text = tables.confusions({"dataset": "cifar10", "confident_mistakes": mistakes})[1]
    assert text.endswith("3 are truck images taken for automobile, the most frequent confusion. In all, 5 of the 6 "
                         "are taken for automobile.")
    mistakes[3:5] = [{"pseudo_label": 6, "label": 3}] * 2  # frog: 3, automobile: 3, as many as the top pair
    assert tables.confusions({"dataset": "cifar10", "confident_mistakes": mistakes})[1].endswith("confusion.")
    table, text = tables.confusions({"dataset": "cifar10", "confident_mistakes": []})
    assert text == "The run's last epoch has no wrong pseudo-label." and table.equals(tables._says(text))


def test_certainty_split_takes_only_a_bin_edge_as_threshold():
    histogram = {"epoch": 0, "edges": [0.0, 0.25, 0.5, 0.75, 1.0], "correct": [10, 20, 30, 40],
                 "incorrect": [40, 30, 20, 10]}
    assert tables.certainty_split({"omega_histograms": [histogram]}, 0.75)[0].loc[0].tolist() == [50, 80.0, 40.0]
    with pytest.raises(ValueError, match="threshold must be an edge of the recorded ω histogram bins"):
        tables.certainty_split({"omega_histograms": [histogram]}, 0.6)


def test_the_readme_status_table_is_the_one_the_records_give():
    readme = (REPO / "README.md").read_text()
    assert tables.readme_with_status(readme) == readme, "the README's status table is stale: lpnb status --readme"


def test_the_status_table_reads_the_results_it_is_given(tmp_path):
    table = tables.status_table(tmp_path)
    assert table.count("not run") == 2 * len(tables.HEADLINES) + 6 and "32.40 ± 1.80" in table  # the paper's Table 1
    with pytest.raises(ValueError, match="no status block"):
        tables.readme_with_status("# a README without the markers\n")


def test_the_status_table_names_what_has_no_paper_scale_run(tmp_path):
    def write(run_id, use_omega=True, use_zeta=True, **fields):
        record = dict(run_id=run_id, labels=4000, split=0, test_error=20.0, history=[{"stage": 1, "epoch": 0}],
                      omega_histograms=[], confident_mistakes=[],
                      **{**RECORD_REST, "config": dict(use_omega=use_omega, use_zeta=use_zeta)}, **fields)
        tables.lpdata.atomic_write(tmp_path / "runs" / run_id / "record.json",
                                   lambda f: f.write(json.dumps(record).encode()))
    write("a", preset="paper", method="supervised", dataset="cifar10", device="NVIDIA H200")
    write("a2", preset="paper", method="supervised", dataset="cifar100", device="NVIDIA H100")
    write("b", preset="cpu", method="lp", dataset="cifar100", device="cpu (2 cores)")
    assert tables.status_table(tmp_path).endswith(
        "\nHardware: `paper` preset, NVIDIA H100 and NVIDIA H200; `cpu` preset, cpu (2 cores). "
        "Not yet run at the `paper` preset: Network prediction (1) + weights; Diffusion (7), no weights; "
        "Diffusion (7) + ζ; Diffusion (7) + ω; Ours: diffusion (7) + weights; GTG + weights; Mean Teacher; "
        "Mean Teacher + ours. No run yet on Mini-ImageNet (its loader is tested on generated stand-ins).\n")
    for method in ("network", "lp", "gtg", "mt", "mt+lp"):
        write(method, preset="paper", method=method, dataset="miniimagenet", device="NVIDIA H200")
    assert tables.status_table(tmp_path).endswith(  # Table 1's rows without a weight are still to run
        " cpu (2 cores). Not yet run at the `paper` preset: Diffusion (7), no weights; Diffusion (7) + ζ; "
        "Diffusion (7) + ω.\n")
    for omega, zeta in ((False, False), (False, True), (True, False)):
        write(f"lp-{omega}-{zeta}", omega, zeta, preset="paper", method="lp", dataset="cifar10", device="NVIDIA H200")
    assert tables.status_table(tmp_path).endswith(
        " cpu (2 cores). Every row of the paper's tables has a run at the `paper` preset.\n")


def test_lpnb_status_reads_the_folder_given_and_refuses_one_that_is_not_there(tmp_path, capsys, monkeypatch):
    from lpnb import cli
    monkeypatch.delenv("LPNB_RESULTS_DIR", raising=False)
    readme = (REPO / "README.md").read_bytes()
    for args, message in [(["--results-dir", str(tmp_path / "typo")], "the results folder .*typo does not exist: "
                                                                      "give the folder the runs were written to"),
                          (["--results-dir", str(tmp_path), "--readme"], "--readme writes the repository's README "
                                                                         "from its own results/, not ")]:
        with pytest.raises(SystemExit) as stop:
            cli.main(["status", *args])
        assert stop.value.code == 2 and re.search(message, capsys.readouterr().err)
    assert (REPO / "README.md").read_bytes() == readme
    cli.main(["status", "--results-dir", str(tmp_path)])  # no records there
    shown, err = capsys.readouterr()
    assert "| Ours: diffusion (7) + weights, CIFAR-10, 4000 labels | not run | not run |" in shown
    assert f"note: no run record at the paper or cpu preset in {tmp_path / 'runs'}/: is it the folder" in err
    smoke = tables.make_config("smoke", labels=50, method="supervised")
    record = dict(run_id=tables.run_id(smoke), preset="smoke", method="supervised", dataset="cifar10", labels=50,
                  split=0, test_error=90.0, history=[{"stage": 1, "epoch": 0}], device="cpu", omega_histograms=[],
                  confident_mistakes=[], **RECORD_REST)
    tables.lpdata.write_json(tmp_path / "runs" / record["run_id"] / "record.json", record)
    cli.main(["status", "--results-dir", str(tmp_path)])  # a smoke run only: not counted as the table's
    shown, err = capsys.readouterr()
    assert "1 run record(s), none at the paper or cpu preset" in err and "No run yet on CIFAR-10, CIFAR-100" in shown
    cli.main(["status"])  # the repository's
    assert capsys.readouterr().out == tables.status_table() != shown


@pytest.mark.parametrize("data, content, jpeg", [
    ("cifar10 from cifar10.tar.gz", "2ad0627943a0028a", True), ("cifar100 from cifar100", "0bffc2e9c65e4123", True),
    ("cifar10 from cifar10.tar.gz", "0123456789abcdef", False),  # one's own images, laid out as the project's copies
    ("cifar10 from cifar-10-batches-py", "fedcba9876543210", False), ("cifar10 from generated stand-ins", None, False)])
def test_provenance_says_what_made_the_records(data, content, jpeg):
    records = [{"preset": "cpu", "device": "cpu (2 cores)", "data": data, "data_content": content, "split": s}
               for s in (1, 0)]
    text = tables.provenance(records)
    assert text.startswith(f"2 runs, preset cpu, splits [0, 1], on cpu (2 cores); data: {data}.")
    assert ("JPEG (quality 95)" in text) == jpeg and "NOT the paper's protocol" in text
    assert "NOT the paper's" not in tables.provenance([{**records[0], "preset": "paper"}])
    assert tables.provenance([]).startswith("No runs recorded")
    assert tables.data_said(records[0]) == f"data: {data}" + " (the project CIFAR copies: JPEG, quality 95)" * jpeg
    assert tables.data_said({}) == ""


def test_standin_records_say_their_data_was_generated(tmp_path):
    root = lpdata.write_standin(tmp_path, "cifar100", n_classes=3, train_per_class=2, test_per_class=1)
    assert lpdata.describe_source(root / "cifar100") == "generated stand-ins"
    (root / "cifar100" / lpdata.STANDIN_MARKER).unlink()  # a class-folder copy of the user's own, in PNG
    assert lpdata.describe_source(root / "cifar100") == "cifar100 (PNG images)"
    for image in (root / "cifar100").rglob("*.png"):  # in JPEG, as a folder and as a tarball
        Image.open(image).save(image.with_suffix(".jpg"), quality=95)
        image.unlink()
    assert lpdata.describe_source(root / "cifar100") == "cifar100"
    with tarfile.open(tmp_path / "cifar100.tar.gz", "w:gz") as tar:
        tar.add(root / "cifar100", arcname=".")
    assert lpdata.describe_source(tmp_path / "cifar100.tar.gz") == "cifar100.tar.gz"
    assert lpdata.describe_source(tmp_path) == tmp_path.name  # not class folders


def test_labeled_exposure_counts_the_labeled_images_of_every_step_by_hand():
    """cpu-preset CIFAR-100 at 10000 labels: supervised, 10000 // 128 = 78 steps of 128 labeled images an epoch;
    Mean Teacher and stage 2, 5000 // (128 - 31) = 51 steps of 31 labeled images an epoch."""
    config = {"batch_size": 128, "labeled_batch_size": 31, "epochs_stage1": 60, "epochs_stage2": 15}

    def rec(method, split=0, base=None):
        return {"run_id": f"{method}-{split}", "method": method, "dataset": "cifar100", "labels": 10000,
                "preset": "cpu", "n_labeled": 10000, "n_unlabeled": 5000, "config": config, "base_run": base}
    records = [rec("supervised"), rec("supervised", 1), rec("mt"), rec("lp", base="s"), rec("mt+lp", base="m")]
    table, text = tables.labeled_exposure(records)
    assert table.loc[("CIFAR-100", 10000)].to_dict("index") == {
        "supervised": {"stage 1": 78 * 128 * 60, "stage 2": 0},
        "lp": {"stage 1": 78 * 128 * 60, "stage 2": 51 * 31 * 15},
        "mt": {"stage 1": 51 * 31 * 60, "stage 2": 0},
        "mt+lp": {"stage 1": 51 * 31 * 60, "stage 2": 51 * 31 * 15}}
    assert text.endswith(f": {51 * 31 / (78 * 128):.2f}x at CIFAR-100 10000 labels.") and "0.16x" in text
    table, text = tables.labeled_exposure(records[:2])
    assert text == "no Mean Teacher run beside a supervised run of the same cell here" and table.equals(
        tables._says(text))


def test_the_findings_refuse_records_of_two_presets_as_summarize_does():
    records = [full_record("lp", 0, 30.0), {**full_record("supervised", 0, 40.0), "preset": "paper"},
               {**full_record("supervised", 0, 45.0), "config": {"batch_size": 100, "labeled_batch_size": 50,
                                                                  "epochs_stage1": 1, "epochs_stage2": 1}}]
    for finding in (lambda r: tables.compare(r, "lp", "supervised"), tables.per_split, tables.labeled_exposure):
        with pytest.raises(ValueError, match=r"records of the presets \['cpu', 'paper'\]: .* one preset at a time"):
            finding(records)
    assert tables.compare(records[:1] + records[2:], "lp", "supervised")[1].endswith("(difference -15.00 points).")


def test_certainty_split_says_when_one_side_of_the_threshold_is_empty():
    histogram = {"epoch": 3, "edges": [0.0, 0.5, 1.0], "correct": [10, 0], "incorrect": [30, 0]}
    table, text = tables.certainty_split({"omega_histograms": [histogram]}, 0.5)
    assert table.loc[3].iloc[0] == 0 and pd.isna(table.loc[3].iloc[1]) and table.loc[3].iloc[2] == 25.0
    assert text == "At epoch 3, no pseudo-label has ω ≥ 0.5; 25.0% of them are correct."
    table, text = tables.certainty_split({"omega_histograms": [histogram]}, 0.0)
    assert text == "At epoch 3, all 40 pseudo-labels have ω ≥ 0.0; 25.0% are correct."


def test_a_run_without_stage_2_or_histograms_is_refused_by_name_and_the_status_says_so():
    rec = full_record("supervised", 0, 30.0, history=[{"stage": 1, "epoch": 0}], omega_histograms=[])
    with pytest.raises(ValueError, match="run supervised-500-split0 has no stage-2 epoch"):
        tables.pseudo_label_accuracy(rec)
    with pytest.raises(ValueError, match="run supervised-500-split0 recorded no ω histogram"):
        tables.certainty_split(rec)
    assert (tables._figure4(rec), tables._figure5(rec)) == ("no stage-2 epoch recorded", "no ω histogram recorded")


def test_records_without_the_optional_fields_are_shown_and_nan_is_no_split():
    rec = full_record("lp", 0, 30.0, base="b")
    del rec["timings"]
    assert "data: not named." in tables.provenance([rec]) and tables.run_times([rec])["stage 2 (min)"].iloc[0] == 0
    runs = [{**record(4000, "lp", e, dataset="miniimagenet", split=s), "test_error_top5": top5}
            for s, (e, top5) in enumerate([(40.0, 20.0), (42.0, float("nan"))])]  # split 1 has no top-5 error
    table = tables.summarize(runs).set_index("metric")
    assert table.loc["top1", "splits"] == 2 and (table.loc["top5", "splits"], table.loc["top5", "ours_mean"]) == (1, 20)


def test_the_status_block_needs_its_markers_in_order_and_names_datasets_without_runs(tmp_path):
    start, end = tables.README_MARKERS
    with pytest.raises(ValueError, match="no status block: .* in this order"):
        tables.readme_with_status(f"a\n{end}b\n{start}")
    assert tables.status_table(tmp_path).endswith(" No run yet on CIFAR-10, CIFAR-100 and Mini-ImageNet (its loader "
                                                  "is tested on generated stand-ins).\n")
