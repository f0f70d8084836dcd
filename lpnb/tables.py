"""The paper's tables from many runs: their cells, the runs' records gathered, ours beside the paper's.

    run_rows(rows, labels) / recorded(rows, labels)      the records of a table's cells (trained or loaded)
    summarize(records, paper_csv) -> side_by_side(...)   ours (mean ± std over splits) beside the paper's
    compare(records, row, baseline, paper_csv)           two rows split by split, and what that shows
    labeled_exposure(records)                            the labeled images each method trains on
    status_table()                                       the README's table, from the records

The tables and figures committed in results/ and figures/ are those of one preset, COMMITTED_PRESET
(what a notebook's parameters change: `lpnb.notebook`).
"""
import io
import math
import os
import warnings
from pathlib import Path

import pandas as pd

from lpnb import data as lpdata
from lpnb.config import METHODS, base_config, make_config, run_id
from lpnb.experiment import REPO, default_results_dir, load_record, read_record, run
from lpnb.train import epoch_batches

COMMITTED_PRESET = "cpu"  # the preset of the committed results/table*.csv and figures/
# paper: the paper's split counts; cpu: the three splits recorded under results/runs/, so that
# `make reproduce` on a CPU regenerates the committed tables; smoke: 1
DEFAULT_SPLITS = {"paper": {"cifar10": 10, "cifar100": 3, "miniimagenet": 3},
                  "cpu": {"cifar10": 3, "cifar100": 3, "miniimagenet": 3}, "smoke": {}}
TABLE_CELL = ["dataset", "labels", "method", "use_omega", "use_zeta", "metric", "preset"]  # one row of a table CSV
TABLES = {  # the cells of the paper's tables: datasets, label counts and rows (Config overrides)
    1: {"datasets": ["cifar10"], "labels": [500],
        "rows": [dict(method="lp", use_omega=False, use_zeta=False), dict(method="lp", use_omega=False, use_zeta=True),
                 dict(method="lp", use_omega=True, use_zeta=False), dict(method="lp", use_omega=True, use_zeta=True),
                 dict(method="gtg"), dict(method="network")]},
    2: {"datasets": ["cifar10"], "labels": [500, 1000, 2000, 4000],
        "rows": [dict(method=m) for m in ("supervised", "network", "lp", "mt", "mt+lp")]},
    3: {"datasets": ["cifar100", "miniimagenet"], "labels": [4000, 10000],
        "rows": [dict(method=m) for m in ("supervised", "lp", "mt", "mt+lp")]},
}
NO_RECORD = "no run recorded here of the cells selected (not run yet, or none selected)"
TABLES_DATASETS = list(dict.fromkeys(d for t in TABLES.values() for d in t["datasets"]))
DATASET_NAMES = {"cifar10": "CIFAR-10", "cifar100": "CIFAR-100", "miniimagenet": "Mini-ImageNet",
                 "fashion-mnist": "Fashion-MNIST"}
METRICS = {"top1": "top-1 error %", "top5": "top-5 error %"}
METHOD_NAMES = {"supervised": "Fully supervised", "network": "Network prediction (1) + weights",
                "lp": "Ours: diffusion (7) + weights", "gtg": "GTG + weights", "mt": "Mean Teacher",
                "mt+lp": "Mean Teacher + ours"}


def from_project_copy(record):
    """Whether a record was trained on the project's CIFAR copies, which are JPEG (quality 95), not CIFAR's
    original pixels: by the fingerprint of the data's pixels (`data.PROJECT_COPIES`), not by its name, which
    a user's own images laid out as CIFAR share."""
    return record.get("data_content") in lpdata.PROJECT_COPIES


def data_said(record):
    """"data: ..." for a line that reports a record's number: its data, with a note where it is the project's
    CIFAR copies (JPEG, quality 95); empty for a record without its data."""
    data = record.get("data")
    return f"data: {data}{' (the project CIFAR copies: JPEG, quality 95)' * from_project_copy(record)}" if data else ""


def provenance(records):
    """A sentence saying what produced these records, and whether it is the paper's protocol."""
    if not records:
        return "No runs recorded for these cells yet (or their data is missing)."
    presets = sorted({r["preset"] for r in records})
    devices = sorted({r["device"] for r in records})
    data = sorted({r.get("data") or "not named" for r in records})
    splits = sorted({r["split"] for r in records})
    text = (f"{len(records)} run{'s' if len(records) > 1 else ''}, preset {', '.join(presets)}, splits {splits}, "
            f"on {'; '.join(devices)}; data: {'; '.join(data)}.")
    if any(map(from_project_copy, records)):
        text += " CIFAR from the project's copies: JPEG (quality 95), not CIFAR's original pixels."
    if presets != ["paper"]:
        text += (" NOT the paper's protocol (smaller data, network and schedule): neither its numbers nor always "
                 "its ordering of methods stand for the paper's.")
    return text


WEIGHTED = {"lp": "Diffusion (7)", "network": "Network prediction (1)", "gtg": "GTG",  # pseudo-labels weighted by
            "mt+lp": "Mean Teacher + diffusion (7)"}                                # omega and zeta (eq. 12)


def row_name(method, use_omega=True, use_zeta=True):
    """The paper's name of a table row ("Fully supervised", "Mean Teacher + ours", Table 1's weight variants:
    a pseudo-labelling method with a weight switched off is named by the weights it keeps)."""
    if method in WEIGHTED and not (use_omega and use_zeta):
        weights = " + ".join(w for w, on in (("ω", use_omega), ("ζ", use_zeta)) if on)
        return f"{WEIGHTED[method]} + {weights}" if weights else f"{WEIGHTED[method]}, no weights"
    return METHOD_NAMES[method]


def weights_of(record):
    """(use_omega, use_zeta) of a record's table row: both True for a method that weighs no pseudo-label
    (supervised, mt), whatever its config says (`lpnb run --method supervised --use-omega false` is the same
    run, and so were the stage-1 runs of Table 1's variants before `base_config` reset the flags)."""
    if record["method"] not in WEIGHTED:
        return True, True
    return record["config"]["use_omega"], record["config"]["use_zeta"]


def mean_std(mean, std, splits):
    """'12.34 ± 0.56', or '12.34' from one split (no spread)."""
    return f"{mean:.2f}" + (f" ± {std:.2f}" if splits > 1 else "")


def _one_preset(records, what):
    """ValueError unless the records are of one preset: the errors of two are not splits of one cell."""
    if len(presets := sorted({r["preset"] for r in records})) > 1:
        raise ValueError(f"records of the presets {presets}: {what} one preset at a time (their errors are not "
                         "splits of one cell)")


def _says(text):
    """A one-cell table holding `text`: what a notebook shows where a table has no row, instead of pandas'
    "Empty DataFrame" and its columns."""
    return pd.DataFrame({"": [text]}, index=[""])


def side_by_side(table, rows=None, columns=None, paper_csv=None):
    """The paper's layout: a row per method (the paper's names), a column per (dataset, labels, metric),
    'ours ± std (paper)' (the std only over two or more splits); a cell without a record reads 'not run', and
    'not run (paper)' given `paper_csv`. `rows` (the notebook's, dicts of method and weights) and `columns`
    (the (dataset, labels) selected; Mini-ImageNet's with top-1 and top-5) are shown even without any record;
    without them a method or a column with no record at all is not shown."""
    names = list(dict.fromkeys(row_name(**row) for row in rows or []))
    wanted = [(DATASET_NAMES[dataset], labels, METRICS[metric]) for dataset, labels in columns or []
              for metric in ("top1", "top5")[:1 + (dataset == "miniimagenet")]]
    if table.empty and not (names and wanted):
        return pd.DataFrame({"": ["not run"] * len(names)}, index=names) if names else \
            _says(f"not run: {NO_RECORD}")

    def cell(r):
        paper = "" if pd.isna(r.get("paper_mean")) else f" ({r.paper_mean:.2f})"
        return mean_std(r.ours_mean, r.ours_std, r.splits) + paper
    if table.empty:
        t = pd.DataFrame(index=names, columns=pd.MultiIndex.from_tuples(wanted))
    else:
        rows_named = [row_name(*r) for r in table[["method", "use_omega", "use_zeta"]].itertuples(index=False)]
        t = table.assign(cell=table.apply(cell, axis=1), row=rows_named, Dataset=table.dataset.map(DATASET_NAMES),
                         labeled=table.labels, error=table.metric.map(METRICS))
        t = t.pivot_table(index="row", columns=["Dataset", "labeled", "error"], values="cell", aggfunc="first",
                          sort=False)
        t = t.reindex(index=names + [name for name in t.index if name not in names],
                      columns=pd.MultiIndex.from_tuples(wanted + [c for c in t.columns if c not in wanted]))
    paper = {} if paper_csv is None else {
        (row_name(p.method, p.use_omega, p.use_zeta), DATASET_NAMES[p.dataset], p.labels, METRICS[p.metric]): p.error
        for p in read_paper(paper_csv).itertuples() if p.method in METHOD_NAMES}  # not the other papers' rows
    t = t.astype(object)
    for name in t.index:
        for column in t.columns:
            if pd.isna(t.loc[name, column]):
                key = (name, *column)
                t.loc[name, column] = "not run" + (f" ({paper[key]:.2f})" if key in paper else "")
    t.index.name, t.columns.names = None, ["Dataset", "Nb. labeled images", ""]
    return t


def table_methods(table):
    """The methods of the paper's Table `table`, in its row order (Table 1's weight variants once)."""
    return list(dict.fromkeys(row["method"] for row in TABLES[table]["rows"]))


def check_selection(table, labels=None, methods=None, datasets=None):
    """Refuse a method or dataset that is not in the paper's Table `table` (`TABLES`), naming the table's own;
    warn about a label count that is not one of its columns (it runs, with no paper number beside it)."""
    if table not in TABLES:
        raise ValueError(f"table must be one of {sorted(TABLES)}, got {table!r}")
    spec = TABLES[table]
    known = table_methods(table)
    if methods is not None and (unknown := [m for m in methods if m not in known]):
        raise ValueError(f"Table {table} has no method(s) {unknown}; its methods are {known} (`lpnb run --method "
                         f"...` trains any method on its own)")
    if datasets is not None and (unknown := [d for d in datasets if d not in spec["datasets"]]):
        raise ValueError(f"Table {table} has no dataset(s) {unknown}; its datasets are {spec['datasets']} (`lpnb run "
                         f"--dataset ...` trains on any dataset lpnb reads)")
    if labels is not None and (other := [n for n in labels if n not in spec["labels"]]):
        warnings.warn(f"Table {table} has no column of {', '.join(map(str, other))} labels (its columns: "
                      f"{', '.join(map(str, spec['labels']))}); running them anyway, with no paper number to "
                      "compare with", stacklevel=3)


def table_configs(rows, labels, splits, dataset, preset, overrides):
    """The Config of every row x label count x split of a table: `splits` a count (splits 0..splits-1), a list
    of split numbers, or None (the preset's count for the dataset). `overrides` are other Config fields."""
    if clash := sorted({"dataset", "labels", "split"} & set(overrides)):
        raise ValueError(f"{', '.join(clash)} given as a config override: the cells choose them (the dataset, the "
                         "label counts and `splits`, a count or a list of split numbers)")
    numbers = splits if isinstance(splits, (list, tuple)) else range(
        splits or DEFAULT_SPLITS.get(preset, {}).get(dataset, 1))
    for n_labels in [labels] if isinstance(labels, int) else labels:
        for row in rows:
            for split in numbers:
                yield make_config(preset, **{**overrides, **row, "dataset": dataset, "labels": n_labels,
                                             "split": split})


def recorded(rows, labels, splits=None, *, dataset="cifar10", preset="paper", results_dir=None, **overrides):
    """The records already on disk for every row, label count and split (`splits`: a count, splits 0..splits-1,
    or a list of split numbers; default: the preset's split count for this dataset), and the run ids of the
    cells not run yet. Trains nothing."""
    cells = list(table_configs(rows, labels, splits, dataset, preset, overrides))
    found = [load_record(cfg, results_dir) for cfg in cells]
    return [r for r in found if r], [run_id(cfg) for cfg, r in zip(cells, found) if not r]


def run_rows(rows, labels, splits=None, *, dataset="cifar10", preset="paper", data_root=None, results_dir=None,
             progress=None, train=True, workers=1, **overrides):
    """The records of every row (a dict of Config overrides, e.g. {"method": "lp", "use_omega": False}) for
    every label count and split (`splits` as in `recorded`); `labels` may be an int or a list.

    A cell already recorded is read as recorded, without its data (the record and `provenance` name the
    data it was made from), unless others are to be trained: then every record must be of the data they
    train on (a record of other data raises, as in `run`). With train=True the missing cells are trained,
    workers > 1 of them at a time (`lpnb.sweep`, one process each, spread over the GPUs, several on one GPU
    when there are more workers than GPUs); with
    train=False they are listed as not run yet, and when the dataset is not on disk they are counted
    (once), so the rest of a table still builds.
    """
    cells = list(table_configs(rows, labels, splits, dataset, preset, overrides))
    records = [load_record(cfg, results_dir) for cfg in cells]
    todo = [cfg for cfg, record in zip(cells, records) if record is None]
    if train and todo:
        if lpdata.find_dataset(dataset, data_root) is None:
            given = f" in {data_root}" if data_root is not None else ""  # none: committed notebooks show the line
            print(f"not run yet ({len(todo)}), and not trained: no {dataset} data found{given}; give the folder that "
                  f"holds it as the notebook's data_root (lpnb.data.load_dataset('{dataset}') says where it looks "
                  "and what it reads)")
            return [record for record in records if record is not None]
        announce_training(todo, results_dir)
        # first the records checked against the data the missing cells will train on
        records = [record and run(cfg, data_root=data_root, results_dir=results_dir) for cfg, record in
                   zip(cells, records)]
        if workers > 1:
            import torch

            from lpnb.sweep import report, sweep

            per_gpu = -(-workers // max(1, torch.cuda.device_count()))  # the notebook asked for that many at a time
            if not report(sweep(todo, results_dir=results_dir, data_root=data_root, workers=workers, per_gpu=per_gpu)):
                raise RuntimeError("runs of this table failed (listed above, with why); those that finished are "
                                   "recorded, so running the notebook again trains only the others")
            records = [record or load_record(cfg, results_dir) for cfg, record in zip(cells, records)]
        else:
            records = [record or run(cfg, data_root=data_root, results_dir=results_dir, progress=progress)
                       for cfg, record in zip(cells, records)]
    missing = [cfg for cfg, record in zip(cells, records) if record is None]
    if missing:
        shown = ", ".join(map(run_id, missing[:10])) + (f" and {len(missing) - 10} more" if len(missing) > 10 else "")
        print(f"not run yet ({len(missing)}): {shown}{_held_in_the_repository(missing, results_dir)}")
    return [record for record in records if record is not None]


def announce_training(cfgs, results_dir=None):
    """Say, before training them, how many runs are missing from results_dir and at which preset; when
    results_dir is not the repository's results/ and that holds some of them, say so: a notebook given a
    results_dir (or $LPNB_RESULTS_DIR) reads its records there only."""
    cfgs = list(cfgs)
    results_dir = Path(results_dir) if results_dir is not None else default_results_dir(cfgs[0].preset)
    stage1 = ", with the stage-1 runs they continue where those have no checkpoint" * any(map(base_config, cfgs))
    line = (f"training {len(cfgs)} run(s) not recorded in {results_dir}{stage1} ({cfgs[0].preset} preset; "
            "train=False shows only what is recorded)")
    if estimate := training_time(cfgs, results_dir):
        line += f": {estimate}"
    print(line + _held_in_the_repository(cfgs, results_dir), flush=True)


def _held_in_the_repository(cfgs, results_dir=None):
    """"; <repo>/results holds N of them, which ... would read instead" when results_dir is another folder and
    the repository's results/ records some of `cfgs`; else "": a notebook given a results_dir reads only there."""
    results_dir = Path(results_dir) if results_dir is not None else default_results_dir(cfgs[0].preset)
    committed = REPO / "results"
    if results_dir.resolve() == committed.resolve():
        return ""
    if not (found := sum(load_record(cfg, committed) is not None for cfg in cfgs)):
        return ""
    how = "$LPNB_RESULTS_DIR unset and results_dir=None" if os.environ.get("LPNB_RESULTS_DIR") else "results_dir=None"
    return f"; {committed} holds {found} of them, which {how} would read instead"


def _minutes(timings):
    """The minutes of a record's timings: its own stage's parts (a stage-1 run's that it nests left out)."""
    return sum(v for v in timings.values() if isinstance(v, (int, float))) / 60


def training_time(cfgs, results_dir):
    """About how long training `cfgs` takes, with the stage-1 runs they continue that have no checkpoint in
    results_dir (trained first, each once), as a phrase: the sum of each run's median time over the runs
    recorded in results_dir and the repository's results/ of its preset, dataset and method, at its label count
    or else the nearest one recorded, and the hardware those ran on; None when no run has a recorded run like it.
    """
    like = {}  # (preset, dataset, method) -> {labels: {run id: (minutes, device)}}
    for path in {*Path(results_dir).glob("runs/*/record.json"), *(REPO / "results").glob("runs/*/record.json")}:
        try:
            r = read_record(path)
        except RuntimeError:
            continue  # a corrupt record: the run that reads it says so
        if not isinstance(timings := r.get("timings"), dict):
            continue
        like.setdefault((r["preset"], r["dataset"], r["method"]), {}).setdefault(r["labels"], {})[r["run_id"]] = (
            _minutes(timings), r["device"])
    runs = {run_id(cfg): cfg for cfg in cfgs}
    for base in filter(None, map(base_config, cfgs)):
        if not (Path(results_dir) / "runs" / run_id(base) / "checkpoint.pt").exists():
            runs.setdefault(run_id(base), base)
    total, devices, unknown = 0.0, set(), 0
    for cfg in runs.values():
        if not (by_labels := like.get((cfg.preset, cfg.dataset, cfg.method))):
            unknown += 1
            continue
        times = by_labels[min(by_labels, key=lambda n: (abs(n - cfg.labels), n))].values()
        total += pd.Series([minutes for minutes, _ in times]).median()
        devices.update(device for _, device in times)
    if unknown == len(runs):
        return None
    duration = "under a minute" if total < 0.5 else f"about {total:.0f} min" if total < 90 else \
        f"about {total / 60:.1f} h"
    which = f" for {len(runs) - unknown} of the {len(runs)} runs to train" if unknown else ""
    stage1 = " (the stage-1 runs included)" * (len(runs) > len(cfgs))
    return (f"{duration}{which}{stage1}, judged from like runs recorded on {' or '.join(sorted(devices))}"
            + (f"; no run like the other {unknown} is recorded" if unknown else ""))


def summarize(records, paper_csv=None):
    """One row per (dataset, labels, method, weights, metric): our mean +/- std over splits, the number
    of splits and which ("0 1 2": a table file that several selections updated says what each row averages),
    their preset, hardware and data (the project's CIFAR copies marked JPEG q95), and the paper's number for the
    same cell when `paper_csv` is given. Records of one preset: their splits are averaged."""
    _one_preset(records, "summarize")
    rows = []
    for r in records:
        use_omega, use_zeta = weights_of(r)
        data = r.get("data", "")
        base = {"dataset": r["dataset"], "labels": r["labels"], "method": r["method"], "use_omega": use_omega,
                "use_zeta": use_zeta, "preset": r["preset"], "device": r["device"],
                "data": data + " (JPEG q95)" * from_project_copy(r)}
        base["split"] = r["split"]
        rows.append({**base, "metric": "top1", "error": r["test_error"]})
        if r["dataset"] == "miniimagenet":
            rows.append({**base, "metric": "top5", "error": r["test_error_top5"]})
    keys = ["dataset", "labels", "method", "use_omega", "use_zeta", "metric"]
    df = pd.DataFrame(rows)
    df = df[df.error.notna()] if rows else df  # a run without this metric is no split of it
    if df.empty:
        columns = keys + ["ours_mean", "ours_std", "splits", "split_numbers", "preset", "device", "data", "paper_mean",
                          "paper_std"]
        return pd.DataFrame(columns=columns)
    out = (df.groupby(keys, sort=False)
             .agg(ours_mean=("error", "mean"),
                  ours_std=("error", lambda e: e.std(ddof=0) if len(e) > 1 else float("nan")),  # one split: none
                  splits=("error", "size"), split_numbers=("split", lambda n: " ".join(map(str, sorted(n)))),
                  preset=("preset", "first"),
                  device=("device", lambda d: "; ".join(sorted(set(d)))),
                  data=("data", lambda d: "; ".join(sorted(set(d)))))
             .reset_index())
    if paper_csv is not None:
        paper = read_paper(paper_csv).rename(columns={"error": "paper_mean", "std": "paper_std"})
        paper = paper[keys + ["paper_mean", "paper_std"]]
        out = out.merge(paper, on=keys, how="left")
    return out.round(2)


def write_table(df, path, rows=None, columns=None, preset=None):
    """Write a `summarize` table to CSV, atomically, updating the file's cells rather than replacing it:
    a row of the existing file for a cell that `df` also has (same dataset, labels, method, weights,
    metric and preset) is replaced in place, the others are kept, and new cells are appended. So a
    notebook run on part of a table (`-p labels 1000`) updates that column and leaves the rest. Given the
    notebook's selection, `rows` (dicts of method and weights), `columns` ((dataset, labels) pairs) and
    `preset`, a row of the file for a selected cell that `df` has no record of is dropped (its records were
    deleted), so that every number in the file is one that records give. The columns are `df`'s, in its
    order, then any others the file has. An empty `df` writes none where there is none (returns None then)."""
    path = Path(path)
    if df.empty and not path.exists():
        return None
    lpdata.make_folder(path.parent)
    with lpdata.locked(path.with_name(f".{path.name}.lock")):  # two notebooks writing at once keep both's rows
        if path.exists():
            old = _read_table(path)
            if rows is not None and columns is not None and preset is not None:
                chosen = {tuple(map(str, (d, n, row["method"], row.get("use_omega", True), row.get("use_zeta", True),
                                          preset))) for d, n in columns for row in rows}
                key = [c for c in TABLE_CELL if c != "metric"]
                has = set(df[key].astype(str).itertuples(index=False, name=None))
                cells = old[key].astype(str).itertuples(index=False, name=None)
                old = old[[c not in chosen or c in has for c in cells]]
            order = [*df.columns, *(c for c in old.columns if c not in df.columns)]
            both = pd.concat([old, df], ignore_index=True)[order] if len(df) else old
            latest = {}  # cell -> position of its newest row, in the order the cells first appear
            for i, cell in enumerate(both[TABLE_CELL].astype(str).itertuples(index=False)):
                latest[cell] = i
            df = both.iloc[list(latest.values())]
        lpdata.write_text(path, df.to_csv(index=False))
    return path


def _read_table(path):
    """A table CSV that `write_table` wrote; a damaged one (cut short, edited) raises ValueError naming it."""
    try:
        text = Path(path).read_text(encoding="utf-8")
        if not text.endswith("\n"):  # to_csv ends every line
            raise ValueError("it ends inside a line" if text else "it is empty")
        table = pd.read_csv(io.StringIO(text))
        if missing := [c for c in TABLE_CELL + ["ours_mean"] if c not in table]:
            raise ValueError(f"no column {', '.join(missing)}")
        if len(bad := table.index[table[TABLE_CELL + ["ours_mean"]].isna().any(axis=1)]):
            raise ValueError(f"row {bad[0] + 2} is incomplete")
    except (ValueError, pd.errors.ParserError, pd.errors.EmptyDataError) as e:
        raise ValueError(f"table {path} is damaged ({e}). Restore it (git checkout -- {path}, if it is committed) or "
                         "delete it: the notebook writes it again from the run records, the columns it is run for"
                         ) from e
    return table


# --- what we see: the findings of a notebook, computed from its records --------------------------------
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


def stage2_history(record):
    """The entries of a record's history for its stage-2 epochs (none for a stage-1 run)."""
    return [h for h in record["history"] if h["stage"] == 2]


def _name(record):
    return row_name(record["method"], *weights_of(record))


def per_split(records):
    """Test error (%) of every run: a row per (dataset, labels, method), a column per split."""
    if not records:
        return _says(NO_RECORD)
    _one_preset(records, "per_split")
    df = pd.DataFrame([{"dataset": DATASET_NAMES[r["dataset"]], "labels": r["labels"], "method": _name(r),
                        "split": r["split"], "error": r["test_error"]} for r in records])
    table = df.pivot_table(index=["dataset", "labels", "method"], columns="split", values="error", sort=False)
    return table.round(2).rename(columns=lambda s: f"split {s}")


def _row(row):
    """A table row as {"method": ..., "use_omega": ..., "use_zeta": ...}: a method name means both weights."""
    return {"use_omega": True, "use_zeta": True, **({"method": row} if isinstance(row, str) else row)}


def compare(records, row, baseline, paper_csv=None):
    """`row` minus `baseline` (test error, points) on every (dataset, labels, split) both ran, and a sentence
    that says what the differences show (negative: `row` has the lower error). A row is a method name (both
    weights) or a dict such as {"method": "lp", "use_omega": False}. Given the paper's numbers (`paper_csv`),
    the sentence also says where the mean difference orders the two as the paper's means do and where not."""
    _one_preset(records, "compare")

    def errors(row):
        row = _row(row)
        return {(r["dataset"], r["labels"], r["split"]): r["test_error"] for r in records
                if (r["method"], *weights_of(r)) == (row["method"], row["use_omega"], row["use_zeta"])}
    ours, theirs = errors(row), errors(baseline)
    name, other = row_name(**_row(row)), row_name(**_row(baseline))
    cells = sorted(set(ours) & set(theirs))
    if absent := [n for n, e in ((name, ours), (other, theirs)) if not e]:
        text = (f"No comparison of {name} with {other}: {' and '.join(absent)} "
                f"{'has' if len(absent) == 1 else 'have'} no run here (not selected, or not run yet).")
        return _says(text), text
    if not cells:
        return _says(text := f"{name} and {other} share no recorded split yet."), text
    diff = pd.DataFrame([{"dataset": DATASET_NAMES[d], "labels": n, "split": s,
                          "difference": ours[d, n, s] - theirs[d, n, s]} for d, n, s in cells])
    d = diff.difference
    many = diff.dataset.nunique() > 1  # counted per dataset and label count: pooled, a sign that flips would hide
    counts = [f"{int((e < 0).sum())} of {len(e)}{(' split' + 's' * (len(e) > 1)) * (i == 0)} at "
              f"{dataset + ' ' if many else ''}{labels}{' labels' * (i == 0)}" for i, ((dataset, labels), e)
              in enumerate(diff.groupby(["dataset", "labels"], sort=False).difference)]
    spread = f"mean difference {d.mean():+.2f} points, from {d.min():+.2f} to {d.max():+.2f}" if len(d) > 1 else \
        f"difference {d.iloc[0]:+.2f} points"
    text = f"{name} has a lower error than {other} on {_and(counts)} ({spread})."
    if paper_csv is not None:
        text += _paper_order(diff, _row(row), _row(baseline), paper_csv, many)
    table = diff.pivot_table(index=["dataset", "labels"], columns="split", values="difference", sort=False)
    return table.round(2).rename(columns=lambda s: f"split {s}"), text


def read_paper(paper_csv):
    """The paper's numbers (results/paper/tableN.csv), with use_omega and use_zeta (both True where the table
    has no such column: every row of Tables 2 and 3 weights by both)."""
    paper = pd.read_csv(paper_csv)
    for col in ("use_omega", "use_zeta"):
        paper[col] = paper[col].astype(bool) if col in paper else True
    return paper


def _paper_order(diff, row, baseline, paper_csv, many):
    """A sentence: at which (dataset,) label counts of `diff` our mean difference has the sign of the paper's."""
    paper = read_paper(paper_csv)

    def paper_error(r, dataset, labels):
        hit = paper[(paper.method == r["method"]) & (paper.use_omega == r["use_omega"]) & (paper.use_zeta ==
                    r["use_zeta"]) & (paper.dataset == dataset) & (paper.labels == labels) & (paper.metric == "top1")]
        return hit.error.iloc[0] if len(hit) else float("nan")
    same, reverse = [], []
    key = {name: code for code, name in DATASET_NAMES.items()}
    for (dataset, labels), d in diff.groupby(["dataset", "labels"], sort=False).difference:
        ours, theirs = paper_error(row, key[dataset], labels), paper_error(baseline, key[dataset], labels)
        if pd.notna(ours) and pd.notna(theirs) and ours != theirs and d.mean() != 0:
            (same if (d.mean() < 0) == (ours < theirs) else reverse).append(f"{dataset + ' ' if many else ''}{labels}")
    if not same and not reverse:
        return ""
    text = f"the reverse order at {_and(reverse)} labels" if reverse else f"the same order at {_and(same)} labels"
    return f" Against the paper's means: {text}{f', the same at {_and(same)}' if reverse and same else ''}."


def _and(items):
    """'a', 'a and b', 'a, b and c'."""
    return ", ".join(items[:-1]) + " and " + items[-1] if len(items) > 1 else items[0]


def labeled_exposure(records):
    """The labeled images each run trains on, counted each time a step uses one, in stage 1 and stage 2
    (`lpnb.train.epoch_batches`), a row per (dataset, labels, method); and a sentence: Mean Teacher's stage 1
    against supervised training's, per label count. An epoch of supervised training is one pass over the
    labeled images; one of Mean Teacher, or of stage 2, a pass over the unlabeled ones with B_L labeled images
    a step: with few unlabeled images (the cpu preset's 5,000) it sees the labels less often."""
    _one_preset(records, "labeled_exposure")
    rows = {}
    for r in records:
        c, mt = r["config"], r["method"] in ("mt", "mt+lp")
        batches = [epoch_batches(stage, mt, r["n_labeled"], r["n_unlabeled"], c["batch_size"],
                                 c["labeled_batch_size"]) for stage in (1, 2)]
        rows.setdefault((DATASET_NAMES[r["dataset"]], r["labels"], r["method"]), {
            "stage 1": math.prod(batches[0]) * c["epochs_stage1"],
            "stage 2": math.prod(batches[1]) * c["epochs_stage2"] if r["base_run"] else 0})
    rows = dict(sorted(rows.items(), key=lambda item: (item[0][:2], METHODS.index(item[0][2]))))
    ratios = [f"{rows[d, n, 'mt']['stage 1'] / rows[d, n, 'supervised']['stage 1']:.2f}x at {d} {n} labels"
              for d, n, m in rows if m == "mt" and (d, n, "supervised") in rows]
    if not ratios:
        return _says(text := "no Mean Teacher run beside a supervised run of the same cell here"), text
    text = ("Mean Teacher's stage 1 against supervised training, in labeled images trained on (each counted every "
            f"time a step uses it): {_and(ratios)}.")
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis(["dataset", "labels", "method"]), text


def pseudo_label_progress(records, method="lp"):
    """The accuracy (%) of the pseudo-labels on the unlabeled images at the first and the last stage-2 epoch of
    every run of `method` (from its history): its own pseudo-labels and the network's predictions."""
    rows = []
    for r in records:
        hist = stage2_history(r)
        if r["method"] == method and all(weights_of(r)) and hist:
            first, last = hist[0], hist[-1]
            rows.append({"dataset": DATASET_NAMES[r["dataset"]], "labels": r["labels"], "split": r["split"],
                         "ours, first epoch": first["pseudo_label_acc"], "ours, last epoch": last["pseudo_label_acc"],
                         "network, first epoch": first["network_acc"], "network, last epoch": last["network_acc"]})
    if not rows:
        return _says(f"no stage-2 run of {row_name(method)} recorded here (not selected, or not run yet)")
    return pd.DataFrame(rows).set_index(["dataset", "labels", "split"]).round(1)


PSEUDO_LABELLERS = {"lp": "Diffusion (7)", "mt+lp": "Diffusion (7)", "gtg": "GTG"}  # Figure 4's first line


def pseudo_labeller(record):
    """What made a stage-2 run's pseudo-labels, as Figure 4 names it: diffusion (eq. 7) unless the run says GTG.
    A run of method 'network' is refused: its pseudo-labels are the network's predictions (eq. 1) themselves."""
    method = record["method"]
    if method not in PSEUDO_LABELLERS:
        raise ValueError(f"run {record['run_id']} is of method {method!r}, whose pseudo-labels are not compared "
                         f"with the network's predictions: give a run of method {' or '.join(PSEUDO_LABELLERS)}")
    return PSEUDO_LABELLERS[method]


def pseudo_label_accuracy(record):
    """Accuracy (%) of the pseudo-labels on the unlabeled images at every stage-2 epoch of a run: from
    diffusion (eq. 7, or GTG in a GTG run) and from the network's predictions (eq. 1), the same descriptor
    pass; and a sentence that says how they compare (Figure 4)."""
    hist = stage2_history(record)
    if not hist:
        raise ValueError(f"run {record['run_id']} has no stage-2 epoch, so no pseudo-labels: give a run of method "
                         f"{' or '.join(PSEUDO_LABELLERS)}")
    labeller = pseudo_labeller(record)
    table = pd.DataFrame({"epoch": [h["epoch"] for h in hist], labeller: [h["pseudo_label_acc"] for h in hist],
                          "Network (1)": [h["network_acc"] for h in hist]}).set_index("epoch").round(1)
    ahead = _diffusion_ahead(record)
    text = (f"{labeller.split(' (')[0]} pseudo-labels are more accurate than the network's at {ahead} of {len(table)} "
            f"stage-2 epochs: {table.iloc[0, 0]:.1f}% against {table.iloc[0, 1]:.1f}% at the first, "
            f"{table.iloc[-1, 0]:.1f}% against {table.iloc[-1, 1]:.1f}% at the last.")
    return table, text


def _diffusion_ahead(record):
    """The stage-2 epochs whose pseudo-labels beat the network's predictions, before any rounding."""
    return sum(h["pseudo_label_acc"] > h["network_acc"] for h in stage2_history(record))


def certainty_split(record, threshold=0.5):
    """For every recorded omega histogram (Figure 5): the share of correct pseudo-labels among the unlabeled
    images with omega >= threshold and among those below, and a sentence. `threshold` must be a bin edge."""
    if not record["omega_histograms"]:
        raise ValueError(f"run {record['run_id']} recorded no ω histogram (a stage-1 run, or none of its stage-2 "
                         "epochs is in hist_epochs)")
    rows = []
    for h in record["omega_histograms"]:
        if not any(abs(e - threshold) < 1e-9 for e in h["edges"]):
            raise ValueError(f"threshold must be an edge of the recorded ω histogram bins {h['edges']}, "
                             f"got {threshold}")
        high = [e >= threshold - 1e-9 for e in h["edges"][:-1]]
        correct_hi = sum(c for c, hi in zip(h["correct"], high) if hi)
        wrong_hi = sum(c for c, hi in zip(h["incorrect"], high) if hi)
        correct_lo, wrong_lo = sum(h["correct"]) - correct_hi, sum(h["incorrect"]) - wrong_hi
        rows.append({"epoch": h["epoch"], f"images with ω ≥ {threshold}": correct_hi + wrong_hi,
                     f"correct among ω ≥ {threshold} (%)": _percent(correct_hi, correct_hi + wrong_hi),
                     f"correct among ω < {threshold} (%)": _percent(correct_lo, correct_lo + wrong_lo)})
    table = pd.DataFrame(rows).set_index("epoch").round(1)

    def sentence(epoch, count, high, low):
        if pd.isna(high):
            return f"At epoch {epoch}, no pseudo-label has ω ≥ {threshold}; {low:.1f}% of them are correct."
        if pd.isna(low):
            return f"At epoch {epoch}, all {count} pseudo-labels have ω ≥ {threshold}; {high:.1f}% are correct."
        return (f"At epoch {epoch}, {high:.1f}% of the {count} pseudo-labels with ω ≥ {threshold} are correct, "
                f"against {low:.1f}% of the others.")
    text = " ".join(sentence(epoch, int(row.iloc[0]), row.iloc[1], row.iloc[2]) for epoch, row in table.iterrows())
    return table, text


def _percent(part, whole):
    """100 part / whole, NaN of nothing."""
    return 100 * part / whole if whole else float("nan")


def confusions(record, classes=None):
    """The confident mistakes of a run (Figure 7) counted by (pseudo-label, true class), most frequent first,
    and a sentence: the most frequent pair, and the pseudo-label most of them carry where that says more.
    Classes are named by `classes`, else by the record's (CIFAR-10's for a CIFAR-10 record without them),
    else by number. No mistake: a one-cell table (`_says`)."""
    classes = next((list(c) for c in (classes, record.get("classes")) if c is not None and len(c)),
                   CIFAR10_CLASSES if record.get("dataset") == "cifar10" else None)  # a numpy array of names too

    def name(label):
        return classes[label] if classes else f"class {label}"
    pairs = pd.DataFrame([{"taken for": name(m["pseudo_label"]), "true class": name(m["label"])}
                          for m in record["confident_mistakes"]])
    if pairs.empty:
        text = "The run's last epoch has no wrong pseudo-label."
        return _says(text), text
    table = (pairs.value_counts().rename("images").reset_index()
             .sort_values(["images", "true class", "taken for"], ascending=[False, True, True], ignore_index=True))
    if len(pairs) == 1:
        text = f"The one wrong pseudo-label with the highest ω is a {table['true class'][0]} image taken for " \
               f"{table['taken for'][0]}."
        return table, text
    top = table[table.images == table.images[0]]
    names = " and ".join(f"{t} images taken for {p}" for t, p in zip(top["true class"], top["taken for"]))
    each = " each" if len(top) > 1 else ""
    text = (f"Of the {len(pairs)} wrong pseudo-labels with the highest ω, {top.images.iloc[0]}{each} are {names}, "
            f"the most frequent confusion{'s (tied)' if each else ''}.")
    taken = table.groupby("taken for")["images"].sum().reset_index().sort_values(
        ["images", "taken for"], ascending=[False, True], ignore_index=True)
    if taken.images[0] > top.images.iloc[0] and (len(taken) == 1 or taken.images[1] < taken.images[0]):
        text += f" In all, {taken.images[0]} of the {len(pairs)} are taken for {taken['taken for'][0]}."
    return table, text


def run_times(records):
    """Minutes per run, median over the runs of each (preset, dataset, labels, method, device): stage 1 and
    stage 2 (training, test evaluations, descriptor passes, k-NN + diffusion); runs on other hardware are
    other rows."""
    rows = []
    for r in {r["run_id"]: r for r in records}.values():  # each run once; a stage-2 record nests its stage-1's timings
        timings, base = r.get("timings", {}), r.get("base_run")
        rows.append({"preset": r["preset"], "dataset": DATASET_NAMES[r["dataset"]], "labels": r["labels"],
                     "method": _name(r), "stage 1 (min)": _minutes(timings.get("stage1", {}) if base else timings),
                     "stage 2 (min)": _minutes(timings) if base else 0.0, "device": r["device"]})
    if not rows:
        return _says(NO_RECORD)
    df = pd.DataFrame(rows)
    return (df.groupby(["preset", "dataset", "labels", "method", "device"], sort=False)
              .agg(**{"runs": ("labels", "size"), "stage 1 (min)": ("stage 1 (min)", "median"),
                      "stage 2 (min)": ("stage 2 (min)", "median")}).round(1))


def time_split(record, wall_seconds=None, with_stage1=True):
    """Where a run's time went, from its record: seconds and share of each part (stage 1, then stage 2:
    set-up (data loading, the network), training steps, descriptor passes, k-NN search and graph, conjugate
    gradient and weights, other pseudo-labelling, test evaluation). The first epoch of a call includes
    compilation and warm-up: the row "of which slow epochs" gives how much the epochs slower than 1.5x their
    stage's median took beyond that median (a part of the rows above, not added to the total). With
    `wall_seconds` (the processes' wall-clock), the rest of it is "start-up and other" (imports, the
    interpreter, writing checkpoints). with_stage1=False leaves out the stage-1 run a stage-2 record nests
    (trained before the processes timed); a wall-clock shorter than the parts raises ValueError."""
    def parts(t, stage):
        phases = t.get("pseudo_label_phases", {})
        knn = sum(phases.get(p, 0.0) for p in ("order", "knn", "graph"))
        cg = sum(phases.get(p, 0.0) for p in ("cg", "weights"))
        other = "other pseudo-labelling" if phases else "pseudo-labelling (its phases not recorded)"  # older records
        return [(f"stage {stage}: set-up", t.get("setup", 0.0)), (f"stage {stage}: training steps", t["train"]),
                (f"stage {stage}: descriptor passes", t.get("descriptors", 0.0)),
                (f"stage {stage}: k-NN search and graph", knn), (f"stage {stage}: conjugate gradient and weights", cg),
                (f"stage {stage}: {other}", t.get("pseudo_labels", 0.0) - knn - cg),
                (f"stage {stage}: test evaluation", t["eval"])]
    t = record["timings"]
    stages = {1: t["stage1"], 2: t} if record["base_run"] else {1: t}  # a stage-2 record nests its stage 1's
    if not with_stage1 and record["base_run"]:
        del stages[1]
    rows = [(part, seconds) for stage, timings in stages.items() for part, seconds in parts(timings, stage)
            if seconds > 0]
    total = sum(seconds for _, seconds in rows)
    if wall_seconds is not None:
        if wall_seconds < total:
            raise ValueError(f"the wall-clock given ({wall_seconds:.1f} s) is shorter than the parts of run "
                             f"{record['run_id']} ({total:.1f} s): it did not time all of them"
                             + (" (was its stage 1 trained before?)" if 1 in stages and record["base_run"] else ""))
        rows.append(("start-up and other", wall_seconds - total))
        total = wall_seconds
    slow = 0.0
    for stage in stages:
        seconds = pd.Series([h["seconds"] for h in record["history"] if h["stage"] == stage and "seconds" in h])
        slow += (seconds[seconds > 1.5 * seconds.median()] - seconds.median()).sum() if len(seconds) else 0.0
    df = pd.DataFrame(rows + [("total", total)], columns=["part", "seconds"])
    df["share %"] = 100 * df.seconds / total
    if slow > 0:
        df.loc[len(df)] = ["of which slow epochs (compilation, warm-up)", slow, 100 * slow / total]
    return df.round(1)


# --- the README's status table --------------------------------------------------------------------------
HEADLINES = [  # (paper item, notebook, dataset, labels, method): the cells the README shows
    ("Table 1", "01_table1", "cifar10", 500, "lp"),
    ("Table 2", "02_table2", "cifar10", 4000, "supervised"),
    ("Table 2", "02_table2", "cifar10", 4000, "lp"),
    ("Table 2", "02_table2", "cifar10", 500, "mt+lp"),
    ("Table 3", "03_table3", "cifar100", 10000, "supervised"),
    ("Table 3", "03_table3", "cifar100", 10000, "lp"),
]


def _test_errors(records):
    """Their test error %, as "mean ± std (runs)"."""
    errors = pd.Series([r["test_error"] for r in records])
    return mean_std(errors.mean(), errors.std(ddof=0), len(errors)) + f" ({len(errors)})"


def status_table(results_dir=None):
    """The README's status table, computed from the records (`lpnb status` prints it): one row per table
    cell of HEADLINES and per figure, test error % as mean ± std (splits run) under the paper's full
    protocol and under the cpu preset, beside the paper's mean ± std."""
    lines = ["| paper | notebook | cell or finding | ours, `paper` preset | ours, `cpu` preset | paper |",
             "| --- | --- | --- | --- | --- | --- |"]
    for item, notebook, dataset, labels, method in HEADLINES:
        paper = read_paper(REPO / "results" / "paper" / f"table{item[-1]}.csv")
        paper = paper[(paper.method == method) & (paper.dataset == dataset) & (paper.labels == labels)
                      & (paper.metric == "top1") & paper.use_omega & paper.use_zeta].iloc[0]
        ours = [_test_errors(found) if (found := recorded([{"method": method}], labels, dataset=dataset, preset=preset,
                                                        results_dir=results_dir)[0]) else "not run"
                for preset in ("paper", "cpu")]
        lines.append(f"| {item} | `{notebook}` | {METHOD_NAMES[method]}, {DATASET_NAMES[dataset]}, {labels} labels | "
                     f"{ours[0]} | {ours[1]} | {paper.error:.2f} ± {paper['std']:.2f} |")
    runs = [recorded([{"method": "lp"}], 500, 1, preset=preset, results_dir=results_dir)[0]
            for preset in ("paper", "cpu")]
    for item, notebook, finding, paper in (
            ("Figure 4", "06_figure4", _figure4, "diffusion ahead at every epoch"),
            ("Figure 5", "07_figure5", _figure5, "correct pseudo-labels at high ω, more so later"),
            ("Figure 7", "09_figure7", _figure7, "mostly trucks taken for automobiles, birds for frogs")):
        ours = [finding(found[0]) if found else "not run" for found in runs]
        lines.append(f"| {item} | `{notebook}` | CIFAR-10, 500 labels, split 0 | {ours[0]} | {ours[1]} | {paper} |")
    lines.append("| Figure 6 | `08_figure6` | the runs of Table 2, error against labels | as Table 2 | as Table 2 | "
                 "Table 2's numbers |")
    lines.append("| Figures 1, 3 | `04_figure1`, `05_figure3` | toy data of our own (3 spiral arms) | | regenerated | "
                 "no number to compare |")
    return "\n".join(lines) + "\n\n" + _not_run_yet(results_dir) + "\n"


def _not_run_yet(results_dir=None):
    """Sentences naming the hardware of each preset's runs, the rows of the paper's Tables 1-3 with no run at
    the paper preset and the datasets with no run at all."""
    runs = [record for p in sorted((Path(results_dir or default_results_dir()) / "runs").glob("*/record.json"))
            if (record := read_record(p))["preset"] in ("paper", "cpu")]  # the table's presets
    hardware = {preset: " and ".join(sorted({r["device"] for r in runs if r["preset"] == preset}))
                for preset in ("paper", "cpu")}
    ran = [f"`{preset}` preset, {devices}" for preset, devices in hardware.items() if devices]
    at_paper = {_name(r) for r in runs if r["preset"] == "paper"}
    papers = pd.concat([read_paper(REPO / "results" / "paper" / f"table{n}.csv") for n in (1, 2, 3)])
    rows = sorted({(METHODS.index(p.method), p.use_omega, p.use_zeta) for p in papers.itertuples()
                   if p.method in METHOD_NAMES})  # not the other papers' rows; Table 1's order of weights
    left = list(dict.fromkeys(name for m, omega, zeta in rows
                              if (name := row_name(METHODS[m], omega, zeta)) not in at_paper))
    datasets = [DATASET_NAMES[d] + " (its loader is tested on generated stand-ins)" * (d == "miniimagenet")
                for d in TABLES_DATASETS if d not in {r["dataset"] for r in runs}]
    text = f"Hardware: {'; '.join(ran)}. " if ran else ""
    text += (f"Not yet run at the `paper` preset: {'; '.join(left)}." if left else  # '; ': names hold commas
             "Every row of the paper's tables has a run at the `paper` preset.")
    if datasets:
        text += f" No run yet on {_and(datasets)}."
    return text


README_MARKERS = ("<!-- status table: written by `lpnb status --readme` from results/; do not edit -->\n",
                  "<!-- end of status table -->\n")


def readme_with_status(readme_text, results_dir=None):
    """`readme_text` with the block between README_MARKERS replaced by `status_table()`."""
    start, end = README_MARKERS
    if start not in readme_text or end not in readme_text.split(start, 1)[1]:
        raise ValueError(f"the README has no status block: put the lines {start.strip()!r} and {end.strip()!r}, "
                         "in this order, where the table goes")
    head, rest = readme_text.split(start, 1)
    return head + start + status_table(results_dir) + end + rest.split(end, 1)[1]


def _figure4(record):
    if not stage2_history(record):
        return "no stage-2 epoch recorded"
    table, ahead = pseudo_label_accuracy(record)[0], _diffusion_ahead(record)
    return (f"diffusion ahead at {ahead} of {len(table)} epochs; last epoch {table.iloc[-1, 0]:.1f}% correct "
            f"against the network's {table.iloc[-1, 1]:.1f}%")


def _figure5(record):
    if not record["omega_histograms"]:
        return "no ω histogram recorded"
    epoch, row = list(certainty_split(record)[0].iterrows())[-1]
    return f"epoch {epoch}: {row.iloc[1]:.1f}% correct at ω ≥ 0.5, {row.iloc[2]:.1f}% below"


def _figure7(record):
    if not record["confident_mistakes"]:
        return "no wrong pseudo-label"
    table = confusions(record)[0]
    top = table[table.images == table.images[0]]
    pairs = " and ".join(f"{t} taken for {p}" for t, p in zip(top["true class"], top["taken for"]))
    return f"{top.images.iloc[0]} of {table.images.sum()}{' each' if len(top) > 1 else ''}: {pairs}"
