"""What a notebook's parameters mean: checked, and where its records, tables and figures go.

    settings = notebook_settings(preset, labels=..., methods=..., table=2)   the checked parameters
    figure_dir(settings, notebook, **drawn)                                  where a figure goes
    figure_run(settings)                                                     the run Figures 4, 5 and 7 show

The tables and figures committed in results/ and figures/ are those of one preset, COMMITTED_PRESET.
A notebook run at another preset writes its tables and figures apart (build/<preset>/, or the smoke
folder), so that they change only when regenerated at that preset, and so does a figure notebook given
other cells than its defaults (`figure_dir`); run records always go to results_dir/runs/ (the smoke
preset's to a cache folder).
"""
import ast
import json
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch

from lpnb import data as lpdata
from lpnb.config import DATASET_DEFAULTS, METHODS, PRESETS, make_config, run_id
from lpnb.experiment import REPO, default_results_dir, load_record, run
from lpnb.tables import COMMITTED_PRESET, DEFAULT_SPLITS, TABLES, announce_training, check_selection, table_methods

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
    workers: int = 1    # runs trained at a time (lpnb.sweep), each in its own process
    preset_defaulted: bool = False  # the notebook left preset at None: the committed tables and figures

    @property
    def columns(self):
        """The (dataset, labels) of a table's columns selected, for `lpnb.tables.side_by_side`."""
        return [(dataset, labels) for dataset in self.datasets for labels in self.labels]


def output_dir(preset):
    """Where a notebook at a preset other than COMMITTED_PRESET writes its tables, figures and executed copy:
    build/<preset>/ (git-ignored), or for the smoke preset a cache folder outside the repository."""
    return lpdata.default_cache_dir() / "smoke" if preset == "smoke" else REPO / "build" / preset


def _as_list(value, name, check, what, required=True, convert=str):
    """A notebook parameter as a list: one value, a list, or text as `papermill -p` passes it ("lp",
    "supervised,lp", "[500, 1000]"), each item of the text read with `convert` where it can be; every element
    must pass `check`, else ValueError naming the parameter and the value as given."""
    values = value
    if isinstance(value, str):
        values = [_converted(v, convert) for v in value.strip("[]() ").replace(",", " ").split()]
    values = list(values) if isinstance(values, (list, tuple)) else [values]
    bad = [v for v in values if not check(v)]
    if ((required or isinstance(value, str)) and not values) or bad:  # "" (`-p datasets ""`) is no selection
        which = f" ({', '.join(map(repr, bad))} not)" if bad and len(values) > 1 else ""
        raise ValueError(f"notebook parameter {name} must be {what} (or a list of them), got {value!r}{which}")
    return list(dict.fromkeys(values))  # a value given twice is one cell


def _converted(text, convert):
    try:
        return convert(text.strip("'\""))
    except ValueError:
        return text


def _positive_int(v):
    return isinstance(v, int) and not isinstance(v, bool) and v > 0


def positive_ints(value, name):
    """A notebook parameter of positive integers as a list: 1000, [500, 1000], "500,1000" or "[500, 1000]"
    (as `papermill -p` passes them); anything else raises ValueError naming the parameter."""
    return _as_list(value, name, _positive_int, "a positive integer", convert=int)


def notebook_settings(preset=None, *, results_dir=None, figures_dir=None, data_root=None, splits=None,
                      labels=(4000,), methods=("lp",), datasets=(), train=None, workers=1, table=None):
    """Check a notebook's parameters and decide where its outputs go.

    preset: None is COMMITTED_PRESET (the committed tables and figures); "auto" is paper on CUDA,
    else cpu. Tables and figures go to results/ and figures/ at COMMITTED_PRESET with its split count,
    and apart otherwise (`output_dir(preset)`/results and /figures). A results folder of the user's (results_dir, else
    $LPNB_RESULTS_DIR) holds the records and the tables, and its figures/ the figures, unless figures_dir
    says where: a notebook given one never writes into the repository. splits: a positive count, split
    numbers ([0, 2], "0,2"; their tables and figures go apart), or None for the preset's count per dataset
    (DEFAULT_SPLITS: 10 for CIFAR-10 under paper, 3 for CIFAR-100 and Mini-ImageNet; 3 under cpu, the splits
    recorded; 1 under smoke and for other datasets). labels, methods,
    datasets (those the notebook reads): one value, a list or a comma-separated string (checked against the
    paper's Table `table` when one is given: `check_selection`); train: train the
    missing runs (None: yes, unless that means the paper preset without CUDA, minutes per run on a GPU and days
    on a CPU; False: show what is recorded); workers: runs trained at a time (`lpnb.sweep`); a bad value
    raises ValueError naming it.

    SMOKE_TEST=1 (the CI convention) forces the smoke preset and train=True, reads small generated
    stand-ins of the datasets (`lpnb.data.write_standin`) and writes everything under $LPNB_SMOKE_DIR
    (a fresh temporary folder if unset), never into the repository: the code paths, not the numbers.

    Sets pandas' display.max_colwidth to None: the notebook's tables show their text whole.
    """
    unknown, known = unknown_parameters()
    if unknown:
        raise ValueError(f"unknown notebook parameter(s) {', '.join(unknown)} (papermill -p): this notebook's "
                         f"parameters are {', '.join(known)}")
    pd.set_option("display.max_colwidth", None)  # tables' text shown whole: what a one-cell table says, the data
    for name, folder in (("results_dir", results_dir), ("figures_dir", figures_dir), ("data_root", data_root)):
        if isinstance(folder, str) and not folder.strip():  # Path("") is the current folder
            raise ValueError(f"notebook parameter {name} is empty: give a folder, or None for the usual one")
    results_dir = results_dir if results_dir is not None else os.environ.get("LPNB_RESULTS_DIR") or None
    labels = positive_ints(labels, "labels")
    known = table_methods(table) if table is not None else list(METHODS)
    methods = _as_list(methods, "methods", lambda m: m in METHODS, f"one of {known}")  # a table's: its own rows
    datasets = _as_list(datasets, "datasets", lambda d: d in DATASET_DEFAULTS, f"one of {sorted(DATASET_DEFAULTS)}",
                        required=False)
    if table is not None:
        check_selection(table, labels, methods, datasets or None)
    if isinstance(splits, str) and "," not in splits:  # "3", as `papermill -r` passes it: a count, as in lpnb sweep
        splits = _converted(splits, int)
    if isinstance(splits, (str, list, tuple)):  # split numbers: [0, 2], "0,2", "4," (split 4 alone)
        splits = _as_list(splits, "splits", lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 0,
                          "a split number >= 0", convert=int)
        splits = len(splits) if sorted(splits) == list(range(len(splits))) else splits  # "0,1,2": the first 3, as 3
    elif splits is not None and not _positive_int(splits):
        raise ValueError(f"notebook parameter splits must be a positive count (splits 0..splits-1), split numbers "
                         f"([0, 2] or \"0,2\"; \"0,\" for split 0 alone) or None, got {splits!r}")
    if train is not None and not isinstance(train, bool):
        raise ValueError(f"notebook parameter train must be None, True or False, got {train!r}"
                         + " (Python's spelling: -p train False)" * isinstance(train, str))
    if not _positive_int(workers):
        raise ValueError(f"notebook parameter workers must be a positive integer, got {workers!r}")
    if data_root is not None and not Path(data_root).is_dir():
        raise ValueError(f"notebook parameter data_root: {data_root} is not a folder; give the folder that holds "
                         "the datasets, or None to search the usual places")
    if os.environ.get("SMOKE_TEST"):
        return _smoke_settings(splits, labels, methods, datasets, workers)
    preset_defaulted = preset is None
    preset = COMMITTED_PRESET if preset is None else preset
    if preset == "auto":
        preset = "paper" if torch.cuda.is_available() else "cpu"
    if preset not in PRESETS:
        raise ValueError(f"notebook parameter preset must be None, 'auto' or one of {sorted(PRESETS)}, got {preset!r}")
    if train is None:
        train = preset != "paper" or torch.cuda.is_available()
        if not train:
            print("The paper preset without CUDA: showing the recorded runs only (a paper-scale run takes minutes "
                  "on a GPU, days on a CPU); train=True trains the missing ones here anyway.")
    if results_dir is not None:
        results_dir = tables_dir = Path(results_dir)
        if (results_dir.exists() and not results_dir.is_dir()) or (not train and not results_dir.exists()):
            raise ValueError(f"notebook parameter results_dir: {results_dir} is "
                             f"{'not a folder' if results_dir.exists() else 'no folder, and train=False reads runs'}: "
                             "give the folder the runs are recorded in (or None: the repository's results/)")
        figures_dir = Path(figures_dir) if figures_dir is not None else results_dir / "figures"
        print(f"records and tables go to {results_dir}, figures to {figures_dir}")
    else:
        usual_splits = splits is None or all(splits == DEFAULT_SPLITS[preset].get(d, 1) for d in datasets)
        usual_labels = table is None or set(labels) <= set(TABLES[table]["labels"])  # the paper's columns
        committed = preset == COMMITTED_PRESET and usual_splits and usual_labels  # the committed cells
        if not committed:
            other = (f"preset {preset}, not the {COMMITTED_PRESET}" if preset != COMMITTED_PRESET else
                     f"splits={splits}, not the {DEFAULT_SPLITS[preset].get(datasets[0], 1)}" if not usual_splits else
                     f"labels={labels}, not only the paper's columns")
            print(f"{other} of the committed tables: tables and figures go to {output_dir(preset)}")
        outputs = REPO if committed else output_dir(preset)
        results_dir, tables_dir = default_results_dir(preset), outputs / "results"
        figures_dir = Path(figures_dir) if figures_dir is not None else outputs / "figures"
    return NotebookSettings(preset, results_dir, tables_dir, figures_dir, data_root, splits, labels, methods, datasets,
                            train, workers, preset_defaulted)


INJECTED = "# Parameters\n"  # the first line of the cell papermill injects after the parameters cell


def unknown_parameters():
    """(unknown, known): the names papermill's injected cell (its "# Parameters" comment first) assigns that no
    other cell executed before it assigns, parameters this notebook does not have, which papermill only logs (a
    misspelt `-p label 1000` would run the whole table); and the names of the parameters cell (the last cell
    before it made of assignments only). Read from the kernel's input history (IPython's `In`); both empty
    outside a kernel, without such a cell, or when no parameters cell ran before it (cells run out of order)."""
    shell = sys.modules["IPython"].get_ipython() if "IPython" in sys.modules else None
    history = list(shell.user_ns.get("In", [])) if shell is not None else []
    injected = [i for i, source in enumerate(history) if source.startswith(INJECTED)]
    if not injected:
        return [], []
    before = [_assignments(source) for source in history[:injected[-1]] if not source.startswith(INJECTED)]
    parameters = [names for names, only in before if only and names]
    if not parameters:
        return [], []
    known = {name for names, _ in before for name in names}
    given = _assignments(history[injected[-1]])[0]
    return [n for n in given if n not in known and not n.startswith("PAPERMILL_")], parameters[-1]  # --inject-paths


def _assignments(source):
    """(the names a cell's top-level assignments bind, in order; whether it holds nothing else than assignments of
    literals, as a parameters cell does)."""
    try:
        body = ast.parse(source).body
    except SyntaxError:  # IPython's magics
        return [], False
    names = [target.id for node in body if isinstance(node, (ast.Assign, ast.AnnAssign))
             for target in (node.targets if isinstance(node, ast.Assign) else [node.target])
             if isinstance(target, ast.Name)]
    return list(dict.fromkeys(names)), all(isinstance(node, (ast.Assign, ast.AnnAssign)) and _literal(node.value)
                                           for node in body)


def _literal(node):
    try:
        ast.literal_eval(node)
        return True
    except (ValueError, TypeError, SyntaxError, RecursionError):  # not a literal; {[]: 1}
        return False


def _smoke_settings(splits, labels, methods, datasets, workers):
    """A notebook's settings under SMOKE_TEST: the smoke preset on generated stand-ins of `datasets`, all
    under $LPNB_SMOKE_DIR (a fresh temporary folder if unset)."""
    smoke_dir = Path(os.environ.get("LPNB_SMOKE_DIR") or tempfile.mkdtemp(prefix="lpnb-smoke-"))
    print(f"SMOKE_TEST is set: the smoke preset on generated stand-in data, training what is missing, everything "
          f"under {smoke_dir} (the parameters preset, train, data_root, results_dir and figures_dir are not used)")
    data_root = smoke_dir / "data"
    for name in datasets:
        if name in STANDINS and not (data_root / name).is_dir():  # written apart, then moved in whole
            data_root.mkdir(parents=True, exist_ok=True)
            staging = lpdata.write_standin(tempfile.mkdtemp(dir=data_root), name, **STANDINS[name])
            try:
                os.replace(staging / name, data_root / name)
            except OSError:  # another notebook's, moved in meanwhile: the same stand-in
                if not (data_root / name).is_dir():
                    raise
                shutil.rmtree(staging / name)
            staging.rmdir()
    return NotebookSettings("smoke", smoke_dir / "results", smoke_dir / "results", smoke_dir / "figures", data_root,
                            splits, labels, methods, datasets, True, workers)


def notebook_defaults(notebook):
    """The values of the parameters cell of notebooks/<notebook>.ipynb: what the notebook runs with when
    given no parameters, as `lpnb reproduce` runs it at the committed preset."""
    cells = json.loads((REPO / "notebooks" / f"{notebook}.ipynb").read_text(encoding="utf-8"))["cells"]
    source = next("".join(c["source"]) for c in cells if "parameters" in c["metadata"].get("tags", []))
    return {node.targets[0].id: ast.literal_eval(node.value) for node in ast.parse(source).body
            if isinstance(node, ast.Assign)}


def figure_dir(settings, notebook, **drawn):
    """Where a figure notebook writes its figure: settings.figures_dir, except when that is the repository's
    figures/ and `drawn` (the parameters that decide what the figure shows) differs from the notebook's
    defaults, or a preset was given: the committed figure is drawn from the defaults, so such a figure goes to
    build/<preset>/figures/, in a folder named by the values that differ (e.g. labels-1000_split-2/), instead of
    writing over it or over the figure of other values."""
    defaults = notebook_defaults(notebook)
    changed = sorted(name for name, value in drawn.items() if value != defaults[name])
    apart = output_dir(settings.preset) / "figures"
    if changed:
        apart /= "_".join(f"{name}-{','.join(map(str, value)) if isinstance(value, list) else value}"
                          for name, value in sorted(drawn.items()) if name in changed)
    if not settings.preset_defaulted:  # a preset given, even the committed one: its run, not the figure committed
        changed.append("preset")       # (drawn from the paper-scale run once that is recorded)
    if settings.figures_dir != REPO / "figures" or not changed:
        return settings.figures_dir
    print(f"other {', '.join(changed)} than {notebook}'s defaults: the figure goes to {apart}, "
          f"and figures/ keeps the committed one")
    return apart


def figure_run(settings, labels=500, split=0, device="auto"):
    """The record of the LP run on CIFAR-10 that Figures 4, 5 and 7 are drawn from. For the committed figures
    (a notebook's preset left at None) it is the paper-scale run once that is recorded, as the paper draws
    these figures from its full protocol, else the committed preset's run; at a preset given, that preset's
    run. A recorded run is read as recorded; a missing one is trained (a paper-scale one only at preset "paper":
    it takes a GPU), unless settings.train is False: then a RuntimeError says how to train it."""
    if not _positive_int(labels):
        raise ValueError(f"notebook parameter labels must be one label count for a figure (e.g. 500), got {labels!r}")
    if isinstance(split, bool) or not isinstance(split, int) or split < 0:
        raise ValueError(f"notebook parameter split must be one split number >= 0 (e.g. 0), got {split!r}")
    if settings.preset_defaulted:
        paper_cfg = make_config("paper", dataset="cifar10", labels=labels, split=split, method="lp")
        paper = load_record(paper_cfg, settings.results_dir)
        if paper is not None:
            return paper
        print(f"The paper-scale run {run_id(paper_cfg)} is not recorded yet: this figure is drawn from the "
              f"{settings.preset} preset's run.")
    cfg = make_config(settings.preset, dataset="cifar10", labels=labels, split=split, method="lp", device=device)
    record = load_record(cfg, settings.results_dir)
    if record is not None:
        return record
    if not settings.train:
        where = "".join(f" --{flag} {value}" for flag, value in (
            ("results-dir", settings.results_dir if settings.results_dir != default_results_dir(cfg.preset) else None),
            ("data-root", settings.data_root)) if value is not None)  # the notebook's own, where not the defaults
        cpu_cfg = make_config("cpu", dataset="cifar10", labels=labels, split=split, method="lp")
        small = ("recorded" if load_record(cpu_cfg, settings.results_dir) is not None else
                 "not recorded here: the notebook trains it on this CPU")
        raise RuntimeError(f"no run {run_id(cfg)} recorded in {settings.results_dir}, and this notebook trains none: "
                           f"train it with `lpnb run --preset {cfg.preset} --dataset cifar10 --labels {labels} "
                           f"--method lp --split {split}{where}`{' on a GPU' if cfg.preset == 'paper' else ''}, "
                           "or pass "
                           + ("train=True to the notebook" if cfg.preset != "paper" or torch.cuda.is_available() else
                              f"preset='cpu' to the notebook (its small run, {small})"))
    announce_training([cfg], settings.results_dir)
    return run(cfg, data_root=settings.data_root, results_dir=settings.results_dir)
