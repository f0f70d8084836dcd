"""What the notebooks call: their parameters checked, many runs gathered into the paper's tables.

    notebook_settings(preset, labels=..., methods=...)   checked parameters and where outputs go
    run_rows(rows, labels) / recorded(rows, labels)      the records of a table's cells (trained or loaded)
    summarize(records, paper_csv) -> side_by_side(...)   ours (mean ± std over splits) beside the paper's

The tables and figures committed in results/ and figures/ are those of one preset,
COMMITTED_PRESET. A notebook run at another preset writes its tables and figures apart
(build/<preset>/, or the smoke folder), so that they change only when regenerated at that
preset; run records always go to results_dir/runs/ (the smoke preset's to a cache folder).
"""
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch

from lpnb import data as lpdata
from lpnb.config import DATASET_DEFAULTS, METHODS, PRESETS, make_config, run_id
from lpnb.experiment import REPO, default_results_dir, load_record, run

COMMITTED_PRESET = "cpu"  # the preset of the committed results/table*.csv and figures/
# paper: the paper's split counts; cpu: the three splits recorded under results/runs/, so that
# `make reproduce` on a CPU regenerates the committed tables; smoke: 1
DEFAULT_SPLITS = {"paper": {"cifar10": 10, "cifar100": 3, "miniimagenet": 3},
                  "cpu": {"cifar10": 3, "cifar100": 3, "miniimagenet": 3}, "smoke": {}}
TABLE_CELL = ["dataset", "labels", "method", "use_omega", "use_zeta", "metric", "preset"]  # one row of a table CSV
DATASET_NAMES = {"cifar10": "CIFAR-10", "cifar100": "CIFAR-100", "miniimagenet": "Mini-ImageNet",
                 "fashion-mnist": "Fashion-MNIST"}
METHOD_NAMES = {"supervised": "Fully supervised", "network": "Network prediction (1) + weights",
                "lp": "Ours: diffusion (7) + weights", "gtg": "GTG + weights", "mt": "Mean Teacher",
                "mt+lp": "Mean Teacher + ours"}
# stand-ins for SMOKE_TEST runs: enough images for the largest labeled set of every table (4000, 10000)
STANDINS = {"cifar10": dict(n_classes=10, train_per_class=420, test_per_class=10),
            "cifar100": dict(n_classes=100, train_per_class=102, test_per_class=5)}


@dataclass
class NotebookSettings:
    """A notebook's checked parameters: where records, tables and figures go, and what to run."""
    preset: str
    results_dir: Path   # run records: results_dir/runs/<run-id>/
    tables_dir: Path    # table CSVs
    figures_dir: Path
    data_root: Path | None
    splits: int | None  # None: the preset's count for each dataset (DEFAULT_SPLITS)
    labels: list
    methods: list
    datasets: list
    train: bool


def output_dir(preset):
    """Where a notebook at a preset other than COMMITTED_PRESET writes its tables, figures and executed copy:
    build/<preset>/ (git-ignored), or for the smoke preset a cache folder outside the repository."""
    return default_results_dir("smoke").parent if preset == "smoke" else REPO / "build" / preset


def _as_list(value, name, check, what, required=True):
    """A notebook parameter as a list (`-p labels 1000` and `-p methods lp` mean one-element lists); every
    element must pass `check`."""
    values = list(value) if isinstance(value, (list, tuple)) else [value]
    bad = [v for v in values if not check(v)]
    if (required and not values) or bad:
        raise ValueError(f"notebook parameter {name} must be {what} (or a list of them), got {value!r}")
    return values


def _positive_int(v):
    return isinstance(v, int) and not isinstance(v, bool) and v > 0


def notebook_settings(preset=None, *, results_dir=None, figures_dir=None, data_root=None, splits=None,
                      labels=(4000,), methods=("lp",), datasets=(), train=True):
    """Check a notebook's parameters and decide where its outputs go.

    preset: None is COMMITTED_PRESET (the committed tables and figures); "auto" is paper on CUDA,
    else cpu. Tables and figures go to results/ and figures/ at COMMITTED_PRESET and apart otherwise
    (`output_dir(preset)`/results and /figures), unless
    results_dir or figures_dir say where. splits: a positive count, or None for the preset's count
    per dataset (10 for CIFAR-10 under paper, 3 otherwise; 3 under cpu, the splits recorded; 1 under
    smoke). labels, methods, datasets (those the notebook reads): one value or a list; a bad value
    raises ValueError naming it.

    SMOKE_TEST=1 (the CI convention) forces the smoke preset and train=True, reads small generated
    stand-ins of the datasets (`lpnb.data.write_standin`) and writes everything under $LPNB_SMOKE_DIR
    (a fresh temporary folder if unset), never into the repository: the code paths, not the numbers.
    """
    if isinstance(labels, str):  # `-p labels "500,1000"`
        labels = [int(v) if v.isdigit() else v for v in labels.replace(",", " ").split()]
    labels = _as_list(labels, "labels", _positive_int, "a positive integer")
    methods = _as_list(methods, "methods", lambda m: m in METHODS, f"one of {list(METHODS)}")
    datasets = _as_list(datasets, "datasets", lambda d: d in DATASET_DEFAULTS, f"one of {sorted(DATASET_DEFAULTS)}",
                        required=False)
    if splits is not None and not _positive_int(splits):
        raise ValueError(f"notebook parameter splits must be a positive integer (splits 0..splits-1) or None, "
                         f"got {splits!r}")
    if not isinstance(train, bool):
        raise ValueError(f"notebook parameter train must be True or False, got {train!r}")
    if os.environ.get("SMOKE_TEST"):
        smoke_dir = Path(os.environ.get("LPNB_SMOKE_DIR") or tempfile.mkdtemp(prefix="lpnb-smoke-"))
        data_root = smoke_dir / "data"
        for name in datasets:
            if name in STANDINS and not (data_root / name).is_dir():  # written apart, then moved in whole
                data_root.mkdir(parents=True, exist_ok=True)
                staging = lpdata.write_standin(tempfile.mkdtemp(dir=data_root), name, **STANDINS[name])
                os.replace(staging / name, data_root / name)
                staging.rmdir()
        return NotebookSettings("smoke", smoke_dir / "results", smoke_dir / "results", smoke_dir / "figures", data_root,
                                splits, labels, methods, datasets, True)
    preset = COMMITTED_PRESET if preset is None else preset
    if preset == "auto":
        preset = "paper" if torch.cuda.is_available() else "cpu"
    if preset not in PRESETS:
        raise ValueError(f"notebook parameter preset must be None, 'auto' or one of {sorted(PRESETS)}, got {preset!r}")
    apart = output_dir(preset)
    committed = preset == COMMITTED_PRESET
    tables_dir = Path(results_dir) if results_dir is not None else REPO / "results" if committed else apart / "results"
    figures_dir = Path(figures_dir) if figures_dir is not None else REPO / "figures" if committed else apart / "figures"
    results_dir = Path(results_dir) if results_dir is not None else default_results_dir(preset)
    return NotebookSettings(preset, results_dir, tables_dir, figures_dir, data_root, splits, labels, methods, datasets,
                            train)


def provenance(records):
    """A sentence saying what produced these records, and whether it is the paper's protocol."""
    if not records:
        return "No runs recorded for these cells yet (or their data is missing)."
    presets = sorted({r["preset"] for r in records})
    devices = sorted({r["device"] for r in records})
    data = sorted({r["data"] for r in records})
    splits = sorted({r["split"] for r in records})
    text = (f"{len(records)} runs, preset {', '.join(presets)}, splits {splits}, on {'; '.join(devices)}; "
            f"data: {'; '.join(data)}.")
    if any(d.endswith((".tar.gz", "cifar10", "cifar100")) for d in data):
        text += (" CIFAR from class-folder images: the project's copies are JPEG (quality 95), not the original "
                 "PNG pixels.")
    if presets != ["paper"]:
        text += (" NOT the paper's protocol (smaller data, network and schedule): compare the shape of the "
                 "results with the paper, not the numbers.")
    return text


def row_name(method, use_omega=True, use_zeta=True):
    """The paper's name of a table row ("Fully supervised", "Mean Teacher + ours", Table 1's weight variants)."""
    if method == "lp" and not (use_omega and use_zeta):
        weights = " + ".join(w for w, on in (("ω", use_omega), ("ζ", use_zeta)) if on)
        return "Diffusion (7) + " + weights if weights else "Diffusion (7), no weights"
    return METHOD_NAMES[method]


def side_by_side(table):
    """The paper's layout: a row per method (the paper's names), a column per (dataset, labels, metric),
    'ours ± std (paper)' (the std only over two or more splits); a cell with no record reads 'not run'."""
    if table.empty:
        return table

    def cell(r):
        ours = f"{r.ours_mean:.2f}" + (f" ± {r.ours_std:.2f}" if r.splits > 1 else "")  # no spread from one split
        paper = "" if "paper_mean" not in r or r.paper_mean != r.paper_mean else f" ({r.paper_mean:.2f})"
        return ours + paper
    t = table.assign(cell=table.apply(cell, axis=1),
                     row=[row_name(*r) for r in table[["method", "use_omega", "use_zeta"]].itertuples(index=False)],
                     Dataset=table.dataset.map(DATASET_NAMES), labeled=table.labels,
                     error=table.metric.map({"top1": "top-1 error %", "top5": "top-5 error %"}))
    t = t.pivot_table(index="row", columns=["Dataset", "labeled", "error"], values="cell", aggfunc="first", sort=False)
    t.index.name, t.columns.names = None, ["Dataset", "Nb. labeled images", ""]
    return t.fillna("not run")


def _cells(rows, labels, splits, dataset, preset, overrides):
    """The Config of every row x label count x split 0..splits-1 of a table (splits None: the preset's count)."""
    splits = splits or DEFAULT_SPLITS.get(preset, {}).get(dataset, 1)
    for n_labels in [labels] if isinstance(labels, int) else labels:
        for row in rows:
            for split in range(splits):
                yield make_config(preset, dataset=dataset, labels=n_labels, split=split, **{**overrides, **row})


def recorded(rows, labels, splits=None, *, dataset="cifar10", preset="paper", results_dir=None, **overrides):
    """The records already on disk for every row, label count and split 0..splits-1 (default: the
    preset's split count for this dataset), and the run ids of the cells not run yet. Trains nothing."""
    records, missing = [], []
    for cfg in _cells(rows, labels, splits, dataset, preset, overrides):
        record = load_record(cfg, results_dir)
        records += [record] if record else []
        missing += [] if record else [run_id(cfg)]
    return records, missing


def run_rows(rows, labels, splits=None, *, dataset="cifar10", preset="paper", data_root=None, results_dir=None,
             progress=None, train=True, **overrides):
    """Run every row (a dict of Config overrides, e.g. {"method": "lp", "use_omega": False}) for every
    label count and split 0..splits-1; returns the records. `labels` may be an int or a list.
    train=False only loads the runs already recorded and lists the missing ones. A dataset that is
    not on disk is reported once and skipped, so the rest of a table still builds."""
    if not train:
        records, missing = recorded(rows, labels, splits, dataset=dataset, preset=preset, results_dir=results_dir,
                                    **overrides)
        if missing:
            print(f"not run yet ({len(missing)}): " + ", ".join(missing))
        return records
    records = []
    for cfg in _cells(rows, labels, splits, dataset, preset, overrides):
        try:
            records.append(run(cfg, data_root=data_root, results_dir=results_dir, progress=progress))
        except FileNotFoundError:
            print(f"skipped {dataset}: its data is not under the data root (lpnb.data.load_dataset('{dataset}') "
                  "says where to put it)")
            break
    return records


def summarize(records, paper_csv=None):
    """One row per (dataset, labels, method, weights, metric): our mean +/- std over splits, the number
    of splits, and the paper's number for the same cell when `paper_csv` is given."""
    rows = []
    for r in records:
        base = {"dataset": r["dataset"], "labels": r["labels"], "method": r["method"],
                "use_omega": r["config"]["use_omega"], "use_zeta": r["config"]["use_zeta"],
                "preset": r["preset"], "device": r["device"]}
        rows.append({**base, "metric": "top1", "error": r["test_error"]})
        if r["dataset"] == "miniimagenet":
            rows.append({**base, "metric": "top5", "error": r["test_error_top5"]})
    keys = ["dataset", "labels", "method", "use_omega", "use_zeta", "metric"]
    if not rows:
        columns = keys + ["ours_mean", "ours_std", "splits", "preset", "device", "paper_mean", "paper_std"]
        return pd.DataFrame(columns=columns)
    df = pd.DataFrame(rows)
    out = (df.groupby(keys, sort=False)
             .agg(ours_mean=("error", "mean"), ours_std=("error", lambda e: e.std(ddof=0)), splits=("error", "size"),
                  preset=("preset", "first"), device=("device", "first"))
             .reset_index())
    if paper_csv is not None:
        paper = pd.read_csv(paper_csv)
        for col in ("use_omega", "use_zeta"):
            paper[col] = paper[col].astype(bool) if col in paper else True
        paper = paper.rename(columns={"error": "paper_mean", "std": "paper_std"})[keys + ["paper_mean", "paper_std"]]
        out = out.merge(paper, on=keys, how="left")
    return out.round(2)


def write_table(df, path):
    """Write a `summarize` table to CSV, atomically, updating the file's cells rather than replacing it:
    a row of the existing file for a cell that `df` also has (same dataset, labels, method, weights,
    metric and preset) is replaced in place, the others are kept, and new cells are appended. So a
    notebook run on part of a table (`-p labels 1000`) updates that column and leaves the rest."""
    path = Path(path)
    if path.exists():
        old = pd.read_csv(path)
        both = pd.concat([old, df], ignore_index=True) if len(df) else old
        latest = {}  # cell -> position of its newest row, in the order the cells first appear
        for i, cell in enumerate(both[TABLE_CELL].astype(str).itertuples(index=False)):
            latest[cell] = i
        df = both.iloc[list(latest.values())]
    lpdata.atomic_write(path, lambda f: f.write(df.to_csv(index=False).encode()))
    return path
