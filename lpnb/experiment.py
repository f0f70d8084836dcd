"""Experiments: a config dataclass with presets, and `run(config)` -> a JSON record.

A run is identified by its config (`run_id`); its directory `results/runs/<run-id>/`
holds `record.json` once it has finished and `checkpoint.pt`, written atomically after
every epoch, from which a killed run resumes. A finished run is loaded, not recomputed.

Stage 1 is shared: the stage-2 methods (`network`, `lp`, `gtg`) start from the finished
`supervised` run of the same config and `mt+lp` from the `mt` run (DESIGN.md, "The
method"), so the fully supervised baseline and Mean Teacher are exactly the stage 1 of
the methods built on them, and Table 1's six rows train stage 1 once.
"""
import dataclasses
import hashlib
import json
import numbers
import os
import platform
import subprocess
import sys
import time
import typing
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from lpnb import data as lpdata
from lpnb.models import build_model
from lpnb.train import METHODS, Trainer, confident_mistakes, omega_histogram

REPO = Path(__file__).resolve().parent.parent
DATASET_DEFAULTS = {  # lr, B, B_L, arch (sec. 5.2)
    "cifar10": (0.05, 100, 50, "cnn13"),
    "fashion-mnist": (0.05, 100, 50, "cnn13"),
    "cifar100": (0.2, 128, 31, "cnn13"),
    "miniimagenet": (0.2, 128, 31, "resnet18"),
}
RUNTIME_FIELDS = ("device", "amp", "channels_last", "compile")
STAGE2_FIELDS = ("epochs_stage2", "k", "gamma", "alpha", "cg_iters", "knn", "use_omega", "use_zeta", "hist_epochs")
MT_FIELDS = ("ema_decay", "consistency", "consistency_rampup", "logit_distance_cost")


@dataclass
class Config:
    """Every knob of one run. None means "the paper's value for this dataset" (filled by `resolve`)."""
    dataset: str = "cifar10"
    labels: int = 4000             # number of labeled training images
    split: int = 0                 # labeled split i (the paper's file 10+i.txt when available)
    method: str = "lp"             # supervised | network | lp | gtg | mt | mt+lp
    preset: str = "paper"
    use_omega: bool = True         # Table 1: per-image weights omega_i (eq. 11)
    use_zeta: bool = True          # Table 1: per-class weights zeta_j
    # data
    unlabeled_size: int | None = None   # keep only this many unlabeled training images (None: all)
    test_size: int | None = None        # evaluate on this many test images (None: all)
    # network
    arch: str | None = None
    width: float = 1.0
    # optimisation (sec. 5.2)
    epochs_stage1: int = 180
    epochs_stage2: int = 180
    lr: float | None = None
    lr_rampdown_epochs: float | None = None   # None: 210/180 of the stage's epochs
    batch_size: int | None = None
    labeled_batch_size: int | None = None
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 2e-4
    seed: int = 0
    # graph and diffusion (sec. 4)
    k: int = 50
    gamma: float = 3.0
    alpha: float = 0.99
    cg_iters: int = 20
    knn: str = "exact"
    # Mean Teacher
    ema_decay: float = 0.97
    consistency: float = 100.0
    consistency_rampup: float = 5.0
    logit_distance_cost: float = 0.01
    # records
    eval_every: int = 1                 # test error every this many epochs (0: only at the end of each stage)
    hist_epochs: tuple | None = None    # stage-2 epochs whose omega histogram is kept (Figure 5); None: (0, T'/2)
    # runtime (not part of the run id): None means on for CUDA, off otherwise
    device: str = "auto"
    amp: bool | None = None
    channels_last: bool | None = None
    compile: bool | str | None = None   # True, or a torch.compile mode (CUDA default: "reduce-overhead", CUDA graphs)


PRESETS = {
    # the full protocol of the paper
    "paper": {},
    # minutes per run on a 2-core CPU: all labeled images, 5000 unlabeled, a quarter-width network
    "cpu": dict(unlabeled_size=5000, width=0.25, epochs_stage1=60, epochs_stage2=15, eval_every=0),
    # seconds per run, for CI: the code paths, not the numbers
    "smoke": dict(unlabeled_size=200, test_size=500, width=0.125, epochs_stage1=2, epochs_stage2=2,
                  batch_size=64, labeled_batch_size=32, k=10),
}


def make_config(preset="paper", **overrides):
    """A Config from a named preset, with any field overridden (papermill parameters and CLI flags land here)."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}: choose one of {sorted(PRESETS)}")
    unknown = set(overrides) - {f.name for f in dataclasses.fields(Config)}
    if unknown:
        raise ValueError(f"unknown config field(s) {sorted(unknown)}; fields are {[f.name for f in dataclasses.fields(Config)]}")
    preset_fields = dict(PRESETS[preset])
    arch = overrides.get("arch") or DATASET_DEFAULTS.get(overrides.get("dataset", Config.dataset), (None,) * 4)[3]
    if arch == "resnet18":  # a preset's width multiplier is for the 13-layer network; ResNet-18 has none
        preset_fields.pop("width", None)
    return resolve(Config(preset=preset, **{**preset_fields, **overrides}))


def _check_types(cfg):
    """Each field must hold its annotated type (a string "False" for a bool would silently mean True).
    Numpy integers and ints in float fields are converted, so equal configs get equal run ids."""
    fixed = {}
    for name, hint in typing.get_type_hints(Config).items():
        allowed = typing.get_args(hint) or (hint,)
        value = getattr(cfg, name)
        if isinstance(value, bool):  # bool is an int to isinstance: not for int or float fields
            ok = bool in allowed
        elif isinstance(value, allowed):  # NoneType is in allowed for the optional fields
            ok = True
        elif int in allowed and isinstance(value, numbers.Integral):
            ok, fixed[name] = True, int(value)
        elif float in allowed and isinstance(value, numbers.Real):
            ok, fixed[name] = True, float(value)
        else:
            ok = tuple in allowed and isinstance(value, list)
        if not ok:
            names = " or ".join("None" if t is type(None) else t.__name__ for t in allowed)
            raise ValueError(f"config field {name} must be {names}, got {value!r} ({type(value).__name__})")
    return replace(cfg, **fixed)


def resolve(cfg):
    """Fill the dataset-dependent defaults and check the values."""
    cfg = _check_types(cfg)
    if cfg.dataset not in DATASET_DEFAULTS:
        raise ValueError(f"unknown dataset {cfg.dataset!r}: choose one of {sorted(DATASET_DEFAULTS)}")
    if cfg.method not in METHODS:
        raise ValueError(f"unknown method {cfg.method!r}: choose one of {list(METHODS)}")
    lr, batch, labeled_batch, arch = DATASET_DEFAULTS[cfg.dataset]
    cfg = replace(cfg, lr=cfg.lr or lr, batch_size=cfg.batch_size or batch,
                  labeled_batch_size=cfg.labeled_batch_size or labeled_batch, arch=cfg.arch or arch,
                  hist_epochs=tuple(cfg.hist_epochs) if cfg.hist_epochs is not None else (0, cfg.epochs_stage2 // 2))
    if not 0 < cfg.labeled_batch_size < cfg.batch_size:
        raise ValueError(f"labeled_batch_size must be in (0, batch_size); got {cfg.labeled_batch_size} and {cfg.batch_size}")
    if cfg.labels <= 0 or cfg.epochs_stage1 < 0 or cfg.epochs_stage2 < 0:
        raise ValueError("labels must be positive and epoch counts non-negative")
    return cfg


def run_id(cfg):
    """`<dataset>-<labels>-<method>[-noomega][-nozeta]-split<i>-<preset>-<hash of the fields that matter>`."""
    fields = {k: v for k, v in asdict(cfg).items() if k not in RUNTIME_FIELDS}
    if cfg.method in ("supervised", "mt"):
        fields = {k: v for k, v in fields.items() if k not in STAGE2_FIELDS}
    if not cfg.method.startswith("mt"):
        fields = {k: v for k, v in fields.items() if k not in MT_FIELDS}
    digest = hashlib.sha1(json.dumps(fields, sort_keys=True, default=list).encode()).hexdigest()[:8]
    variant = cfg.method.replace("+", "") + ("" if cfg.use_omega else "-noomega") + ("" if cfg.use_zeta else "-nozeta")
    if cfg.method in ("supervised", "mt"):
        variant = cfg.method
    return f"{cfg.dataset}-{cfg.labels}-{variant}-split{cfg.split}-{cfg.preset}-{digest}"


def default_results_dir():
    return Path(os.environ.get("LPNB_RESULTS_DIR", REPO / "results"))


# --- files ------------------------------------------------------------------------------
def write_json(path, obj):
    lpdata.atomic_write(path, lambda f: f.write(json.dumps(obj, indent=1).encode()))


def save_checkpoint(path, state):
    lpdata.atomic_write(path, lambda f: torch.save(state, f))


def load_checkpoint(path, expected_run_id):
    """The checkpoint's dict; an unreadable or foreign file raises instead of being used."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated, corrupt, not a checkpoint
        raise RuntimeError(f"checkpoint {path} is corrupt or incomplete ({type(e).__name__}: {e}). "
                           "Delete it to restart this run from scratch.") from e
    if not isinstance(state, dict) or state.get("run_id") != expected_run_id or "trainer" not in state:
        raise RuntimeError(f"checkpoint {path} does not belong to run {expected_run_id}. "
                           "Delete it to restart this run from scratch.")
    return state


def load_record(cfg, results_dir=None):
    """The record of a finished run, or None."""
    path = Path(results_dir or default_results_dir()) / "runs" / run_id(resolve(cfg)) / "record.json"
    return json.loads(path.read_text()) if path.exists() else None


# --- the runner ---------------------------------------------------------------------------
def _progress_enabled(progress):
    if progress is not None:
        return progress
    return sys.stderr.isatty() or "ipykernel" in sys.modules


def _environment(device):
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, timeout=10).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        commit = None
    versions = {"python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__}
    for name in ("torchvision", "faiss", "scipy"):
        try:
            versions[name] = __import__(name).__version__
        except ImportError:
            pass
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({os.cpu_count()} cores, {platform.processor() or platform.machine()})"
    return {"device": name, "versions": versions, "git_commit": commit, "host": platform.node()}


def select_training_images(n_train, labeled, unlabeled_size, seed):
    """Indices of the training images a run uses: all labeled ones plus `unlabeled_size` unlabeled (all if None)."""
    unlabeled = np.setdiff1d(np.arange(n_train), labeled)
    if unlabeled_size is not None and unlabeled_size < len(unlabeled):
        unlabeled = np.random.default_rng(seed).choice(unlabeled, unlabeled_size, replace=False)
    return np.sort(np.concatenate([labeled, unlabeled]))


def run(cfg, *, data_root=None, results_dir=None, progress=None, force=False):
    """Train one configuration (Algorithm 1) and return its record (a dict, also written as record.json)."""
    cfg = resolve(cfg)
    results_dir = Path(results_dir or default_results_dir())
    rid = run_id(cfg)
    run_dir = results_dir / "runs" / rid
    if (run_dir / "record.json").exists() and not force:
        return json.loads((run_dir / "record.json").read_text())

    base = None
    if cfg.method not in ("supervised", "mt"):
        base_cfg = replace(cfg, method="mt" if cfg.method == "mt+lp" else "supervised")
        base_dir = results_dir / "runs" / run_id(base_cfg)
        resuming = (run_dir / "checkpoint.pt").exists() and not force  # then stage 1's record is enough
        rerun = not resuming and (base_dir / "record.json").exists() and not (base_dir / "checkpoint.pt").exists()
        base = run(base_cfg, data_root=data_root, results_dir=results_dir, progress=progress, force=rerun)

    device = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if cfg.device == "auto" else cfg.device)

    data = lpdata.load_dataset(cfg.dataset, data_root)
    labeled_all = lpdata.labeled_indices(data, cfg.labels, cfg.split, root=data_root, results_dir=results_dir)
    train_index = select_training_images(len(data.train_labels), labeled_all, cfg.unlabeled_size, seed=1000 + cfg.split)
    test_index = np.arange(len(data.test_labels))
    if cfg.test_size is not None and cfg.test_size < len(test_index):
        test_index = np.sort(np.random.default_rng(0).choice(test_index, cfg.test_size, replace=False))
    labels_np = np.asarray(data.train_labels[train_index], dtype=np.int64)
    labeled_np = np.isin(train_index, labeled_all)
    num_classes = len(data.classes)

    torch.manual_seed(cfg.seed)  # the initial weights
    model = build_model(cfg.arch, num_classes, width=cfg.width, in_channels=data.train_images.shape[-1],
                        l2_normalize=not cfg.method.startswith("mt"), two_heads=cfg.method.startswith("mt"))
    trainer = Trainer(cfg, model, lpdata.to_device(data.train_images[train_index], device),
                      torch.as_tensor(labels_np, device=device), torch.as_tensor(labeled_np, device=device),
                      mean=data.mean, std=data.std, aug="miniimagenet" if cfg.dataset == "miniimagenet" else "cifar",
                      num_classes=num_classes, device=device)
    test_images = lpdata.to_device(data.test_images[test_index], device)
    test_labels = torch.as_tensor(np.asarray(data.test_labels[test_index], dtype=np.int64), device=device)

    stage = 1 if base is None else 2
    state = {"run_id": rid, "stage": stage, "epoch": 0, "history": [], "extras": {"omega_histograms": []},
             "timings": {"train": 0.0, "eval": 0.0, "descriptors": 0.0, "pseudo_labels": 0.0}}
    ckpt = run_dir / "checkpoint.pt"
    run_dir.mkdir(parents=True, exist_ok=True)
    if ckpt.exists() and not force:
        state = load_checkpoint(ckpt, rid)
        trainer.load_state_dict(state["trainer"])
    elif base is not None:  # stage 2 starts from stage 1's weights and optimiser state; the lr schedule restarts
        trainer.load_state_dict(load_checkpoint(results_dir / "runs" / base["run_id"] / "checkpoint.pt", base["run_id"])["trainer"])

    def evaluate(entry):
        entry["test_error"], entry["test_error_top5"] = trainer.test_error(test_images, test_labels)
        if trainer.teacher is not None:
            entry["teacher_test_error"], entry["teacher_test_error_top5"] = trainer.test_error(test_images, test_labels, trainer.teacher)

    show = _progress_enabled(progress)
    epochs = cfg.epochs_stage1 if stage == 1 else cfg.epochs_stage2
    unl = ~labeled_np
    bar = tqdm(range(state["epoch"], epochs), desc=f"{rid} stage {stage}", disable=not show, mininterval=10,
               initial=state["epoch"], total=epochs, file=sys.stderr)
    for epoch in bar:
        entry = {"stage": stage, "epoch": epoch}
        if stage == 2:
            pl, probs, t_desc, t_pl = trainer.refresh_pseudo_labels()
            state["timings"]["descriptors"] += t_desc
            state["timings"]["pseudo_labels"] += t_pl
            entry.update(pseudo_label_acc=float((pl.pseudo_labels[unl] == labels_np[unl]).mean() * 100),
                         network_acc=float((probs.argmax(1).cpu().numpy()[unl] == labels_np[unl]).mean() * 100),
                         cg_iters=pl.n_iter, cg_residual=pl.residual)
            if epoch in cfg.hist_epochs:
                state["extras"]["omega_histograms"].append({"epoch": epoch, **omega_histogram(pl, labels_np, labeled_np)})
            if epoch == epochs - 1:
                state["extras"]["confident_mistakes"] = confident_mistakes(pl, labels_np, labeled_np, train_index)
        t0 = time.perf_counter()
        # a bar per step only in a terminal; notebooks get the epoch bar alone
        step_bar = (lambda b: tqdm(b, leave=False, disable=not (show and sys.stderr.isatty()), mininterval=1, desc=f"epoch {epoch}"))
        entry["loss"] = trainer.train_epoch(stage, epoch, progress=step_bar)
        t1 = time.perf_counter()
        state["timings"]["train"] += t1 - t0
        if (cfg.eval_every and (epoch + 1) % cfg.eval_every == 0) or epoch == epochs - 1:
            evaluate(entry)
            state["timings"]["eval"] += time.perf_counter() - t1
            bar.set_postfix(test_error=f"{entry['test_error']:.2f}")
        state["history"].append(entry)
        state["epoch"] = epoch + 1
        state["trainer"] = trainer.state_dict()
        save_checkpoint(ckpt, state)
    if epochs == 0:  # a zero-epoch stage still gets its final test error
        entry = {"stage": stage, "epoch": -1}
        evaluate(entry)
        state["history"].append(entry)
        state["trainer"] = trainer.state_dict()
        save_checkpoint(ckpt, state)

    final = state["history"][-1]
    mt = cfg.method.startswith("mt")  # Mean Teacher reports its EMA teacher
    record = {
        "run_id": rid, "method": cfg.method, "dataset": cfg.dataset, "labels": cfg.labels, "split": cfg.split,
        "preset": cfg.preset, "config": asdict(trainer.cfg),
        "test_error": final["teacher_test_error" if mt else "test_error"],
        "test_error_top5": final["teacher_test_error_top5" if mt else "test_error_top5"],
        "student_test_error": final["test_error"],
        "stage1_test_error": (base or {}).get("test_error", final["teacher_test_error" if mt else "test_error"]),
        "history": (base["history"] if base else []) + state["history"],
        "omega_histograms": state["extras"]["omega_histograms"],
        "confident_mistakes": state["extras"].get("confident_mistakes", []),
        "n_train": len(train_index), "n_labeled": int(labeled_np.sum()), "n_unlabeled": int(unl.sum()),
        "n_test": len(test_index), "data": f"{cfg.dataset} from {Path(data.source).name}",
        "timings": {**({"stage1": base["timings"]} if base else {}), **state["timings"]},
        "base_run": base["run_id"] if base else None,
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        **_environment(device),
    }
    write_json(run_dir / "record.json", record)
    return json.loads((run_dir / "record.json").read_text())  # exactly what a later call will load


# --- tables: many runs, aggregated beside the paper's numbers --------------------------------
# paper: the paper's split counts; cpu: the three splits recorded under results/runs/ and reported in the
# README, so that `make reproduce` on a CPU regenerates the published tables; smoke: 1
DEFAULT_SPLITS = {"paper": {"cifar10": 10, "cifar100": 3, "miniimagenet": 3},
                  "cpu": {"cifar10": 3, "cifar100": 3, "miniimagenet": 3}, "smoke": {}}
TABLE_CELL = ["dataset", "labels", "method", "use_omega", "use_zeta", "metric", "preset"]  # one row of a table CSV


@dataclass
class NotebookSettings:
    preset: str
    results_dir: Path
    figures_dir: Path
    splits: int
    train: bool


def notebook_settings(preset="auto", results_dir=None, figures_dir=None, splits=None, dataset="cifar10", train=True):
    """Resolve a notebook's parameters. "auto" is the paper preset on CUDA and cpu otherwise; splits
    default to the paper's count (10 for CIFAR-10, 3 otherwise) under the paper preset, 3 under the
    cpu preset (the splits recorded and reported), 1 under smoke.
    SMOKE_TEST=1 (the CI convention) forces the smoke preset and train=True (the point is to run
    every code path, whatever parameters the committed notebook was executed with) and writes
    results and figures under $LPNB_SMOKE_DIR (a fresh temporary folder if unset), never over
    the committed ones."""
    if os.environ.get("SMOKE_TEST"):
        import tempfile
        smoke_dir = Path(os.environ.get("LPNB_SMOKE_DIR") or tempfile.mkdtemp(prefix="lpnb-smoke-"))
        preset, results_dir, figures_dir, train = "smoke", smoke_dir / "results", smoke_dir / "figures", True
    elif preset == "auto":
        preset = "paper" if torch.cuda.is_available() else "cpu"
    splits = splits or DEFAULT_SPLITS.get(preset, {}).get(dataset, 1)
    return NotebookSettings(preset, Path(results_dir or default_results_dir()), Path(figures_dir or REPO / "figures"), splits, train)


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
        text += " CIFAR from class-folder images: the project's copies are JPEG (quality 95), not the original PNG pixels."
    if presets != ["paper"]:
        text += (" NOT the paper's protocol (smaller data, network and schedule): compare the shape of the "
                 "results with the paper, not the numbers.")
    return text


def side_by_side(table):
    """The paper's layout: a row per method, a column per (dataset, labels, metric), 'ours +- std (paper)'
    (the std only over two or more splits); a cell with no record reads 'not run'."""
    if table.empty:
        return table
    def cell(r):
        ours = f"{r.ours_mean:.2f}" + (f" ± {r.ours_std:.2f}" if r.splits > 1 else "")  # no spread from one split
        paper = "" if "paper_mean" not in r or r.paper_mean != r.paper_mean else f" ({r.paper_mean:.2f})"
        return ours + paper
    t = table.assign(cell=table.apply(cell, axis=1),
                     row=table.method + table.apply(lambda r: ("" if r.use_omega else " no ω") + ("" if r.use_zeta else " no ζ"), axis=1))
    t = t.pivot_table(index="row", columns=["dataset", "labels", "metric"], values="cell", aggfunc="first", sort=False)
    return t.fillna("not run")


def _cells(rows, labels, splits, dataset, preset, overrides):
    """The Config of every row x label count x split 0..splits-1 of a table."""
    for n_labels in [labels] if isinstance(labels, int) else labels:
        for row in rows:
            for split in range(splits):
                yield make_config(preset, dataset=dataset, labels=n_labels, split=split, **{**overrides, **row})


def recorded(rows, labels, splits=None, *, dataset="cifar10", preset="paper", results_dir=None, **overrides):
    """The records already on disk for every row, label count and split 0..splits-1 (default: the
    preset's split count for this dataset), and the run ids of the cells not run yet. Trains nothing."""
    splits = splits or DEFAULT_SPLITS.get(preset, {}).get(dataset, 1)
    records, missing = [], []
    for cfg in _cells(rows, labels, splits, dataset, preset, overrides):
        record = load_record(cfg, results_dir)
        records += [record] if record else []
        missing += [] if record else [run_id(cfg)]
    return records, missing


def run_rows(rows, labels, splits, *, dataset="cifar10", preset="paper", data_root=None, results_dir=None,
             progress=None, train=True, **overrides):
    """Run every row (a dict of Config overrides, e.g. {"method": "lp", "use_omega": False}) for every
    label count and split 0..splits-1; returns the records. `labels` may be an int or a list.
    train=False only loads the runs already recorded and lists the missing ones. A dataset that is
    not on disk is reported once and skipped, so the rest of a table still builds."""
    if not train:
        records, missing = recorded(rows, labels, splits, dataset=dataset, preset=preset, results_dir=results_dir, **overrides)
        if missing:
            print(f"not run yet ({len(missing)}): " + ", ".join(missing))
        return records
    records = []
    for cfg in _cells(rows, labels, splits, dataset, preset, overrides):
        try:
            records.append(run(cfg, data_root=data_root, results_dir=results_dir, progress=progress))
        except FileNotFoundError as e:
            print(f"skipped {dataset}: {e}")
            break
    return records


def summarize(records, paper_csv=None):
    """One row per (dataset, labels, method, weights, metric): our mean +/- std over splits, the number
    of splits, and the paper's number for the same cell when `paper_csv` is given."""
    import pandas as pd

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
        return pd.DataFrame(columns=keys + ["ours_mean", "ours_std", "splits", "preset", "device", "paper_mean", "paper_std"])
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
    import pandas as pd

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
