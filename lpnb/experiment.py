"""Experiments: `run(config)` trains one run (Algorithm 1) and returns its record.

A run is identified by its config (`lpnb.config.run_id`); its folder `results/runs/<run-id>/`
holds `record.json` once it has finished and `checkpoint.pt`, written atomically after every
epoch, from which a killed run resumes. A finished run that is trained again (--force, or a
stage-1 run whose checkpoint a stage-2 run needs) keeps its record until the new one replaces
it; the file `.retraining` beside them says that the checkpoint is of the new training (with no
checkpoint, the new training stopped before its first epoch, and the record stands). A
finished run is loaded, not recomputed, but only for the data it was made from: the record
names the data's source and a fingerprint of its pixels, labels and labeled split, and a
record or checkpoint made from other data is refused.

Stage 1 is shared: the stage-2 methods (`network`, `lp`, `gtg`) start from the finished
`supervised` run of the same config and `mt+lp` from the `mt` run (docs/method.md), so the
fully supervised baseline and Mean Teacher are exactly the stage 1 of the methods built on
them, and Table 1's six rows train stage 1 once.
"""
import contextlib
import functools
import hashlib
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from lpnb import data as lpdata
from lpnb.config import base_config, resolve, run_id
from lpnb.data import REPO, write_json
from lpnb.graph import visible_device
from lpnb.models import CNN13, build_model
from lpnb.train import Trainer, confident_mistakes, correct_pseudo_labels, omega_histogram

clock = time.monotonic  # the clock of time limits (a test may replace it)
PAPER_ON_CPU = ("training at the paper preset (the full protocol) on a CPU: a full run takes days here, against "
                "minutes on a GPU; the cpu preset (--preset cpu) is the small version for a CPU")


class TimeLimitReached(Exception):
    """A run stopped at an epoch boundary because the next epoch would not end within its time limit.
    Its checkpoint is written: the same call continues it; `forced`: a forced call that wrote a checkpoint of
    the run's new training, which the same call without force continues (with force it would start over)."""

    def __init__(self, run_id, stage, epoch, epochs, trained=True, forced=False, progressed=None, expected=0.0):
        done = ("while another process trained it (this call waited for its lock)" if stage is None else
                f"after {epoch} of {epochs} epochs of stage {stage}, its checkpoint written" if trained else
                f"before epoch {epoch} of {epochs} of stage {stage}: too little time was left to train it")
        again = "the same command without --force (in Python, force=False)" if forced else "the same command"
        super().__init__(f"{run_id}: stopped at the time limit {done}; run {again} again to continue")
        self.run_id, self.stage, self.epoch, self.epochs, self.trained = run_id, stage, epoch, epochs, trained
        self.where = done
        # this call trained an epoch (of any stage), or waited while another process trained one of its runs
        # (stage None: stopped waiting): either way the same call again gets further
        self.progressed = trained if progressed is None else progressed
        self.expected = expected  # seconds the epoch not started was expected to take (0: no epoch timed yet)

    def no_epoch_fits(self, limit, remedy):
        """The error to raise instead when this call trained no epoch: run again, it would stop at once again."""
        why = (f"an epoch of this run takes about {self.expected:.0f} s" if self.expected else
               "the time went before the first epoch: loading the data, building the model")
        return RuntimeError(f"{self.run_id}: stopped {self.where}. Not one epoch fits in {limit} minutes ({why}): "
                            f"{remedy}")


@dataclass
class TimeBudget:
    """The time limit of one call of `run`, shared by the stage-1 run it trains first."""
    deadline: float       # a `clock()` time
    epochs: list = field(default_factory=list)  # (seconds, steps) of each epoch trained so far in this call
    waited: bool = False  # this call waited for another process training one of its runs (which got further)


def default_results_dir(preset=None):
    """$LPNB_RESULTS_DIR, else the repository's results/; for the smoke preset, a folder in the cache
    (`lpnb.data.default_cache_dir()`), so that smoke runs never write into the repository."""
    if os.environ.get("LPNB_RESULTS_DIR"):
        return Path(os.environ["LPNB_RESULTS_DIR"]).expanduser()
    return lpdata.default_cache_dir() / "smoke" / "results" if preset == "smoke" else REPO / "results"


# --- files ------------------------------------------------------------------------------
RECORD_FIELDS = {"run_id": str, "method": str, "dataset": str, "preset": str, "labels": int, "split": int,
                 "test_error": (int, float), "history": list, "device": str, "omega_histograms": list,
                 "confident_mistakes": list, "config": dict, "n_labeled": int, "n_unlabeled": int,
                 "n_test": int}  # what the readers of a record (tables, figures, status, `lpnb run`) rely on
KIND_NAMES = {str: "a string", int: "an integer", (int, float): "a number", list: "a list", dict: "an object"}
ENTRY_FIELDS = {"history": ("stage", "epoch"), "omega_histograms": ("epoch", "edges", "correct", "incorrect"),
                "confident_mistakes": ("index", "pseudo_label", "label", "omega")}  # of each entry of these lists


def read_record(path):
    """A record.json as a dict; a corrupt file, one without the fields every reader relies on
    (RECORD_FIELDS, a test error in [0, 100], an epoch, ENTRY_FIELDS), or a file named record.json in the folder
    of another run than its own raises an error that names it and the remedy."""
    try:
        record = json.loads(Path(path).read_text(encoding="utf-8"))
        if not isinstance(record, dict):
            raise ValueError(f"{json.dumps(record)[:40]}, not an object")
        for name, kind in RECORD_FIELDS.items():
            if not isinstance(record.get(name), kind) or isinstance(record[name], bool):
                raise ValueError(f"its field {name!r} is {record.get(name)!r}, not {KIND_NAMES[kind]}")
        if not 0 <= record["test_error"] <= 100:
            raise ValueError(f"its test_error {record['test_error']!r} is not a percentage")
        if not record["history"]:
            raise ValueError("its history has no epoch")
        for name, keys in ENTRY_FIELDS.items():
            for i, entry in enumerate(record[name]):
                if not isinstance(entry, dict) or (missing := [k for k in keys if k not in entry]):
                    raise ValueError(f"entry {i} of its {name!r} has no {', '.join(map(repr, missing or keys))}")
    except (ValueError, UnicodeDecodeError) as e:
        raise RuntimeError(f"record {path} is corrupt ({e}). Restore it (git checkout -- {path}, if it is "
                           "committed), or delete that file alone and run again: from the checkpoint.pt beside it, "
                           "if there is one, the run writes its record again without training.") from e
    folder = Path(path).absolute().parent
    if Path(path).name == "record.json" and folder.name != record["run_id"]:  # runs/<run-id>/record.json
        raise RuntimeError(f"{path} is the record of run {record['run_id']}, not of its folder's run {folder.name}: "
                           f"it would be read as that run's result. Move it to {folder.parent / record['run_id']}/, "
                           f"or delete the folder {folder} to run {folder.name} itself.")
    return record


def save_checkpoint(path, state):
    """Write a run's `state` (its trainer's, its history, the epoch reached) with torch.save, atomically."""
    lpdata.atomic_write(path, lambda f: torch.save(state, f))


def load_checkpoint(path, expected_run_id, data_fingerprint=None):
    """The checkpoint's dict; a file unreadable, of another run or of other data raises instead of being used."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated, corrupt, not a checkpoint: torch.load raises many types
        if (stop := lpdata.interruption(e)) is not None:  # a signal handler's during the load (JobOutOfTime)
            raise stop from None
        raise RuntimeError(f"checkpoint {path} is corrupt or incomplete ({type(e).__name__}: {e}). "
                           "Delete it to restart this run from scratch.") from e
    if not isinstance(state, dict) or state.get("run_id") != expected_run_id or "trainer" not in state:
        raise RuntimeError(f"checkpoint {path} does not belong to run {expected_run_id}. "
                           "Delete it to restart this run from scratch.")
    if data_fingerprint is not None and state.get("data_fingerprint") != data_fingerprint:
        made_from = ("names no data (an older lpnb wrote it)" if "data_fingerprint" not in state else
                     f"was trained on other data (fingerprint {state['data_fingerprint']}, this data "
                     f"{data_fingerprint})")
        raise RuntimeError(f"checkpoint {path} {made_from}. Delete it to restart this run, or use another "
                           "results_dir for this data.")
    return state


def load_record(cfg, results_dir=None):
    """The record of a finished run, or None (whatever data it was made from: the record names it)."""
    cfg = resolve(cfg)
    results_dir = Path(results_dir) if results_dir is not None else default_results_dir(cfg.preset)
    path = results_dir / "runs" / run_id(cfg) / "record.json"
    return read_record(path) if path.exists() else None


# --- what a run reads -----------------------------------------------------------------------
@dataclass
class RunData:
    """The dataset, the labeled split and the images one run uses.

    train_index: the training images the run uses (dataset indices, sorted); labeled: a bool per
    entry of train_index; test_index: the test images it evaluates on; fingerprint: sha1 of the
    dataset's pixels and labels and of the labeled indices, the same on any machine for the same data;
    split_name: the split file relative to the data's folder or the results folder.
    """
    data: lpdata.ImageData
    split_name: str
    train_index: np.ndarray
    labeled: np.ndarray
    test_index: np.ndarray
    fingerprint: str


def select_training_images(n_train, labeled, unlabeled_size, seed):
    """Indices of the training images a run uses: all labeled ones plus `unlabeled_size` unlabeled (all if None)."""
    unlabeled = np.setdiff1d(np.arange(n_train), labeled)
    if unlabeled_size is not None and unlabeled_size < len(unlabeled):
        unlabeled = np.random.default_rng(seed).choice(unlabeled, unlabeled_size, replace=False)
    return np.sort(np.concatenate([labeled, unlabeled]))


def load_run_data(cfg, data_root=None, results_dir=None):
    """Load the dataset and the labeled split of `cfg` and pick the images it uses (a FileNotFoundError
    says where to put missing data). Checks, before anything trains, that the images fill the batches."""
    data = lpdata.load_dataset(cfg.dataset, data_root)
    results_dir = Path(results_dir) if results_dir is not None else default_results_dir(cfg.preset)
    split_file = lpdata.split_file(data, cfg.labels, cfg.split, root=data_root, results_dir=results_dir)
    labeled_all = lpdata.read_split(split_file, data, cfg.labels)
    train_index = select_training_images(len(data.train_labels), labeled_all, cfg.unlabeled_size, seed=1000 + cfg.split)
    test_index = np.arange(len(data.test_labels))
    if cfg.test_size is not None and cfg.test_size < len(test_index):
        test_index = np.sort(np.random.default_rng(0).choice(test_index, cfg.test_size, replace=False))
    labeled = np.isin(train_index, labeled_all)
    n_unlabeled, per_batch = int((~labeled).sum()), cfg.batch_size - cfg.labeled_batch_size
    if cfg.method != "supervised" and n_unlabeled < per_batch:  # stage 2 and Mean Teacher mix unlabeled images in
        raise ValueError(f"{n_unlabeled} unlabeled images cannot fill one batch of {per_batch} "
                         f"(batch_size {cfg.batch_size} - labeled_batch_size {cfg.labeled_batch_size}): use more "
                         "unlabeled images (unlabeled_size) or smaller batches")
    fingerprint = hashlib.sha1(f"{data.fingerprint}\n{labeled_all.tolist()}".encode()).hexdigest()[:16]
    split_name = _relative(split_file, Path(data.source).parent, results_dir)
    return RunData(data, split_name, train_index, labeled, test_index, fingerprint)


def _reusable_record(run_dir, run_data, require_checkpoint=False):
    """The finished record in `run_dir` if it was made from `run_data`'s data (and has its checkpoint, if
    required), else None; a record of other data raises. A record and a checkpoint side by side are of the
    same training, unless the run is being trained again (RETRAINING, `_train`): then None, so that the
    training continues."""
    path = run_dir / "record.json"
    if not path.exists() or being_retrained(run_dir):
        return None
    record = read_record(path)
    other_data = record.get("data_fingerprint") != run_data.fingerprint
    paper_split_then_drawn = "labels/" in record.get("split_file", "") and "splits/" in run_data.split_name
    if other_data and paper_split_then_drawn:
        raise RuntimeError(
            f"{path} was made with the paper's labeled split {record['split_file']}; this run drew a split of its "
            f"own ({run_dir.parent.parent / run_data.split_name}), as no such file is beside the data it reads "
            f"({run_data.data.source}). If that is the same data, copy the paper's labels/ folder beside it and "
            "delete the drawn file; else use another results_dir (--results-dir) for this data.")
    if other_data:
        raise RuntimeError(
            f"{path} was made from other data ({record.get('data_source')}, fingerprint "
            f"{record.get('data_fingerprint')}) than this run reads ({Path(run_data.data.source).name}, split file "
            f"{run_data.split_name}, fingerprint {run_data.fingerprint}): it is not this data's result. Use "
            f"another results_dir (--results-dir) for this data, or retrain run {run_dir.name} with force=True "
            "(`lpnb run` with its settings and --force) to replace it.")
    return None if require_checkpoint and not (run_dir / "checkpoint.pt").exists() else record


# --- the runner -------------------------------------------------------------------------------
def build_trainer(cfg, run_data, device):
    """The `Trainer` of a run: a fresh network (seeded by cfg.seed) and the run's images on `device`."""
    data = run_data.data
    if cfg.arch == "cnn13" and min(data.train_images.shape[1:3]) < CNN13.MIN_SIZE:
        raise ValueError(f"{cfg.dataset}: its images are {'x'.join(map(str, data.train_images.shape[1:3]))} pixels, "
                         f"and cnn13 needs {CNN13.MIN_SIZE}x{CNN13.MIN_SIZE} or more: resize them (32x32, as CIFAR's), "
                         "or use arch resnet18")
    torch.manual_seed(cfg.seed)  # the initial weights
    try:
        model = build_model(cfg.arch, len(data.classes), width=cfg.width, in_channels=data.train_images.shape[-1],
                            l2_normalize=not cfg.method.startswith("mt"), two_heads=cfg.method.startswith("mt"))
    except (MemoryError, RuntimeError) as e:  # torch's allocator: "can't allocate memory"
        if not isinstance(e, MemoryError) and "allocate" not in str(e):
            raise
        raise ValueError(f"config field width={cfg.width}: the network's weights do not fit in this machine's memory "
                         f"({str(e)[:200]}). The paper's network is width 1 (3.1M parameters); the parameters grow "
                         "as width squared.") from None
    labels = np.asarray(data.train_labels[run_data.train_index], dtype=np.int64)
    return Trainer(cfg, model, lpdata.to_device(data.train_images[run_data.train_index], device),
                   torch.as_tensor(labels, device=device), torch.as_tensor(run_data.labeled, device=device),
                   mean=data.mean, std=data.std, aug_kind="miniimagenet" if cfg.dataset == "miniimagenet" else "cifar",
                   num_classes=len(data.classes), device=device)


def _device(cfg):
    """The device to train on; a CUDA device asked for that torch cannot see raises, saying what is there."""
    device = ("cuda" if torch.cuda.is_available() else "cpu") if cfg.device == "auto" else cfg.device
    return visible_device(device, "use device 'auto' (a GPU if there is one) or 'cpu'")


def trains_on_cpu(cfg):
    """Whether `cfg` would train on the CPU here (device "cpu", or "auto" without CUDA)."""
    return cfg.device == "cpu" or (cfg.device == "auto" and not torch.cuda.is_available())


def _progress_enabled(progress):
    if progress is not None:
        return progress
    return sys.stderr.isatty() or "ipykernel" in sys.modules


def run(cfg, *, data_root=None, results_dir=None, progress=None, force=False, time_limit=None,
        require_checkpoint=False):
    """Train one configuration (Algorithm 1) and return its record.

    Parameters
    ----------
    cfg : Config
        From `make_config`; checked again here, every value before anything trains.
    data_root : path, optional
        Where the dataset is (`lpnb.data.load_dataset`); default $LPNB_DATA_ROOT, else <repo>/data or
        <repo>/../shared/data, whichever holds it.
    results_dir : path, optional
        Where runs/<run-id>/ goes; default $LPNB_RESULTS_DIR, else the repository's results/ (smoke: a cache
        folder).
    progress : bool, optional
        Progress bars; default on in a terminal or notebook.
    force : bool
        Retrain even if a record or checkpoint exists (replacing them).
    time_limit : float, optional
        Minutes this call may take (a runtime setting, not part of the run): it stops at the last
        epoch boundary that fits, judged by the epochs this call has trained (`train_stage`; a new
        run's first epoch, not yet timed, always starts), with the checkpoint written, and raises
        `TimeLimitReached`; the same call again continues the run and ends with the record an
        uninterrupted run writes. A wait for another process that trains the run (or its stage-1
        run) ends at the limit too.
    require_checkpoint : bool
        Retrain a finished run that has no checkpoint (a stage-2 run starts from its stage-1 run's
        checkpoint; committed records carry none).

    Returns
    -------
    dict
        The record, also written as results_dir/runs/<run-id>/record.json: the final test error
        (`test_error`, %; Mean Teacher's teacher for the MT methods), the stage-1 error, the history
        of every epoch (with its seconds), omega histograms, the most confident mistakes, sizes, the
        seconds of each part (`timings`: set-up, training steps, evaluation, descriptor passes,
        pseudo-labelling and its phases; a stage-2 record nests its stage-1 run's), the data's
        source and fingerprint, and the software and hardware that ran it. A finished run is read,
        not retrained; a record of other data raises. A stage-2 method first runs (or reuses) the
        stage-1 run it continues (`base_run`); its checkpoint keeps that run's record, so a stopped
        run names the training it began from even if the stage-1 run is retrained meanwhile. One
        process at a time trains a run (a lock in its folder): another that asks for it meanwhile
        waits, then reads its record. Training at the paper preset on a CPU warns that it takes days.

    Examples
    --------
    >>> import lpnb, tempfile
    >>> root = lpnb.data.write_standin(tempfile.mkdtemp(), train_per_class=12, test_per_class=2)
    >>> cfg = lpnb.make_config("smoke", method="lp", labels=20, unlabeled_size=100, k=5, device="cpu")
    >>> record = lpnb.run(cfg, data_root=root, results_dir=tempfile.mkdtemp(), progress=False)
    >>> record["base_run"].startswith("cifar10-20-supervised-split0-smoke"), [h["stage"] for h in record["history"]]
    (True, [1, 1, 2, 2])
    >>> record["n_labeled"], record["n_unlabeled"], record["n_test"], 0 <= record["test_error"] <= 100
    (20, 100, 20, True)
    """
    cfg = resolve(cfg)
    if time_limit is not None and (isinstance(time_limit, bool) or not isinstance(time_limit, (int, float))
                                   or not time_limit > 0):
        raise ValueError(f"time_limit must be a positive number of minutes, got {time_limit!r}")
    budget = None if time_limit is None else TimeBudget(clock() + 60 * time_limit)
    results_dir = Path(results_dir) if results_dir is not None else default_results_dir(cfg.preset)
    recorded = (results_dir / "runs" / run_id(cfg) / "record.json").exists()
    if cfg.preset == "paper" and (force or not recorded) and trains_on_cpu(cfg):
        warnings.warn(PAPER_ON_CPU, stacklevel=2)
    return _load_or_train(cfg, data_root=data_root, results_dir=results_dir, progress=progress, force=force,
                          budget=budget, require_checkpoint=require_checkpoint)


def _load_or_train(cfg, *, data_root, results_dir, progress, force, budget, require_checkpoint):
    """`run` after its arguments are checked; `budget` is the call's `TimeBudget` (None: no time limit)."""
    run_dir = results_dir / "runs" / run_id(cfg)
    started = time.perf_counter()
    try:
        run_data = load_run_data(cfg, data_root, results_dir)
        loading = time.perf_counter() - started  # not the wait for another process's lock below
    except FileNotFoundError:
        if data_root is None and not force and not require_checkpoint and (run_dir / "record.json").exists():
            return read_record(run_dir / "record.json")  # no data here to check it against: as recorded
        raise
    if not force and (record := _reusable_record(run_dir, run_data, require_checkpoint)):
        return record
    lpdata.make_folder(run_dir)
    with _locked(run_dir / ".lock", run_id(cfg), budget):
        if not force and (record := _reusable_record(run_dir, run_data, require_checkpoint)):
            return record  # trained by another process while this one waited
        try:
            return _train(cfg, run_data, data_root=data_root, results_dir=results_dir, progress=progress, force=force,
                          budget=budget, loading=loading)
        except TimeLimitReached as stop:
            if not force:
                raise
            own = stop.run_id == run_id(cfg) and stop.trained  # this run's new training has its checkpoint
            raise TimeLimitReached(stop.run_id, stop.stage, stop.epoch, stop.epochs, stop.trained,
                                   forced=own, progressed=stop.progressed, expected=stop.expected) from None


# in a run's folder: its record is of an earlier training, its checkpoint of a new one (or, a forced retraining
# stopped before its first epoch, still of the earlier one: continued, it writes that record again)
RETRAINING = ".retraining"


def being_retrained(run_dir):
    """Whether the checkpoint in a finished run's folder is of a new training of it (RETRAINING beside it): not
    when RETRAINING has no checkpoint beside it (that training stopped before its first epoch)."""
    return (Path(run_dir) / RETRAINING).exists() and (Path(run_dir) / "checkpoint.pt").exists()


@contextlib.contextmanager
def _locked(path, rid, budget=None):
    """Hold an exclusive lock on `path` while a run trains, waiting for another process's: with a time
    budget, until its deadline (then TimeLimitReached). A wait counts as progress of the call (`TimeBudget`)."""
    timeout = None if budget is None else max(0.0, budget.deadline - clock())
    with contextlib.ExitStack() as stack:
        try:
            waited = stack.enter_context(lpdata.locked(path, f"{rid}: another process is training this run; "
                                                             "waiting for it", timeout))
        except TimeoutError:
            raise TimeLimitReached(rid, None, 0, 0, trained=False, progressed=True) from None
        if waited and budget is not None:
            budget.waited = True
        yield


def _train(cfg, run_data, *, data_root, results_dir, progress, force, budget, loading=0.0):
    """The steps of a run: its stage-1 run first (for a stage-2 method), the trainer, resume, train, record.
    Called with the run's lock held. A finished record it trains again stays until the new one replaces it,
    marked RETRAINING meanwhile, so that it is never taken for the result of the unfinished checkpoint beside
    it and a kill loses no result; force starts over, the checkpoint there kept until the new training's first
    replaces it (a stage-2 run may need it). `loading`: seconds this call took to load the data, counted with
    the trainer's set-up as "setup"."""
    run_dir = results_dir / "runs" / run_id(cfg)
    ckpt, retraining = run_dir / "checkpoint.pt", run_dir / RETRAINING
    if (run_dir / "record.json").exists():
        retraining.touch()
    for stale in run_dir.glob(".*.tmp"):
        stale.unlink(missing_ok=True)  # the temporary file of a write that was killed (atomic_write)
    resumed = load_checkpoint(ckpt, run_id(cfg), run_data.fingerprint) if ckpt.exists() and not force else None
    if resumed is not None and "base" in resumed:  # the stage-1 record it began from, whatever record.json says now
        base = resumed["base"]
    else:
        base = _stage1(cfg, data_root=data_root, results_dir=results_dir, progress=progress,
                       resuming=resumed is not None, budget=budget)
    started = time.perf_counter()
    device = _device(cfg)
    trainer = build_trainer(cfg, run_data, device)
    state = {"run_id": run_id(cfg), "data_fingerprint": run_data.fingerprint, "stage": 1 if base is None else 2,
             "epoch": 0, "history": [], "extras": {"omega_histograms": []}, "base": base,
             "timings": {"train": 0.0, "eval": 0.0, "descriptors": 0.0, "pseudo_labels": 0.0}}
    if resumed is not None:
        state = {"base": base, **resumed}
        if state.get("amp", trainer.cfg.amp) != trainer.cfg.amp:  # bf16 or fp32 steps: not mixed in one run
            raise ValueError(f"{run_id(cfg)}: its checkpoint was trained with amp={state['amp']}, this call would "
                             f"continue with amp={trainer.cfg.amp}: resume it with --amp {str(state['amp']).lower()}"
                             " (in Python, amp=...), or start over with --force")
        trainer.load_state_dict(state["trainer"])
        print(f"{run_id(cfg)}: resuming from its checkpoint after {state['epoch']} epoch{'s' * (state['epoch'] != 1)} "
              f"of stage {state['stage']}",
              file=sys.stderr, flush=True)
    elif base is not None:  # stage 2 starts from stage 1's weights and optimiser state; the lr schedule restarts
        state["base"], base_state = _finished_stage1(base_config(cfg), base["run_id"], results_dir, run_data, budget)
        trainer.load_state_dict(base_state["trainer"])
    state["amp"], devices, name = trainer.cfg.amp, state.setdefault("devices", []), _device_name(device)
    if name not in devices:  # each device a call of this run trained on (the record names them)
        devices.append(name)
    state["timings"]["setup"] = state["timings"].get("setup", 0.0) + loading + time.perf_counter() - started
    train_stage(trainer, state, run_data, device, ckpt, progress, budget)
    record = make_record(cfg, trainer, state, run_data, state["base"])
    write_json(run_dir / "record.json", record)
    retraining.unlink(missing_ok=True)
    return read_record(run_dir / "record.json")  # exactly what a later call will load


def _stage1(cfg, *, data_root, results_dir, progress, resuming, budget=None):
    """The record of the stage-1 run that a stage-2 method continues (None for a stage-1 method).
    Stage 2 starts from that run's checkpoint: a stage-1 record without one (committed records carry
    none) is retrained, unless this run resumes from its own checkpoint and needs only the record
    (an older checkpoint: a checkpoint now keeps the stage-1 record it began from, and `_train` uses that).
    It shares this call's time budget."""
    base_cfg = base_config(cfg)
    if base_cfg is None:
        return None
    return _load_or_train(resolve(base_cfg), data_root=data_root, results_dir=results_dir, progress=progress,
                          force=False, budget=budget, require_checkpoint=not resuming)


def _finished_stage1(base_cfg, base_id, results_dir, run_data, budget=None):
    """(record, checkpoint) of the finished stage-1 run that stage 2 starts from, read together under that run's
    lock: a process training it again meanwhile (force) is waited for, and its record is the one the stage-2
    record names."""
    base_dir = results_dir / "runs" / base_id
    with _locked(base_dir / ".lock", base_id, budget):
        base = _reusable_record(base_dir, run_data, require_checkpoint=True)
        if base is None:
            raise RuntimeError(f"run {base_id}, the stage-1 run this one continues, was being trained again, or lost "
                               "its checkpoint, as this run started: run this again, and it finishes that run first")
        ckpt = base_dir / "checkpoint.pt"
        state = load_checkpoint(ckpt, base_id, run_data.fingerprint)
    if state["epoch"] != base_cfg.epochs_stage1:
        raise RuntimeError(f"checkpoint {ckpt} holds {state['epoch']} of the {base_cfg.epochs_stage1} epochs of run "
                           f"{base_id}, not its finished training: delete its record.json and run again to finish it")
    return base, state


def train_stage(trainer, state, run_data, device, ckpt, progress=None, budget=None):
    """Train the epochs of `state["stage"]` left in `state`, checkpointing after each (Algorithm 1).

    Stage 2 refreshes the pseudo-labels before every epoch (lines 7-15) and keeps per-epoch
    pseudo-label accuracy, CG iterations, the omega histograms (Figure 5) and the last epoch's
    confident mistakes (Figure 7). A loss that is not finite stops the run with an error before
    its epoch is saved: the checkpoint keeps the last finite epoch and no record is written. With a
    `TimeBudget`, an epoch that would not end before its deadline is not started: `TimeLimitReached`
    is raised instead. An epoch is expected to take as long as the longest of this stage's epochs in
    this call after its first, which compiles the step, so a compilation does not stop later epochs a
    minute early; the first two, as long as the longest epoch yet of this call or of the run's history
    (its earlier calls and the stage-1 training it continues), so a resumed call judges its first too;
    until an epoch of this stage's steps is timed, an epoch of fewer steps (stage 1's: ~1/20 of a stage-2
    epoch's at the paper's 4000 labels) counts with its missing steps at the median seconds per step of
    those epochs, so that neither a stage's first epoch is judged by a shorter stage's nor a compilation
    is multiplied (`_expected_epoch`). Until a stage-2 epoch is timed, which includes the pseudo-label
    refresh before it, the refresh's time is unknown: the epoch is judged again once it is refreshed. With
    eval_every other than 1, an epoch with a test evaluation also counts one evaluation's seconds
    (`_evaluation_seconds`), which the epochs it is judged by may lack.
    """
    cfg, stage = trainer.cfg, state["stage"]
    labels = np.asarray(run_data.data.train_labels[run_data.train_index], dtype=np.int64)
    test_images = lpdata.to_device(run_data.data.test_images[run_data.test_index], device)
    test_labels = np.asarray(run_data.data.test_labels[run_data.test_index], dtype=np.int64)
    test_labels = torch.as_tensor(test_labels, device=device)

    def evaluate(entry):
        entry["test_error"], entry["test_error_top5"] = trainer.test_error(test_images, test_labels)
        if trainer.teacher is not None:
            errors = trainer.test_error(test_images, test_labels, trainer.teacher)
            entry["teacher_test_error"], entry["teacher_test_error_top5"] = errors

    show = _progress_enabled(progress)
    epochs = cfg.epochs_stage1 if stage == 1 else cfg.epochs_stage2
    bar = tqdm(range(state["epoch"], epochs), desc=f"{state['run_id']} stage {stage}", disable=not show,
               mininterval=10, initial=state["epoch"], total=epochs, file=sys.stderr)
    budget = budget or TimeBudget(math.inf)
    first, steady = state["epoch"], 0.0  # steady: the longest epoch of this stage in this call after its first
    steps = trainer.steps_per_epoch(stage)
    earlier = [(e["seconds"], e.get("steps", steps)) for e in [*(state["base"] or {}).get("history", []),
                                                                *state["history"]] if "seconds" in e]
    def stop_unless_it_fits(epoch, expected):
        if clock() + expected > budget.deadline:
            bar.close()
            raise TimeLimitReached(state["run_id"], stage, epoch, epochs, trained=epoch > first,
                                   progressed=bool(budget.epochs) or budget.waited, expected=expected)

    def evaluates(epoch):
        return (cfg.eval_every and (epoch + 1) % cfg.eval_every == 0) or epoch == epochs - 1

    for epoch in bar:
        expected = _expected_epoch(earlier + budget.epochs, steps) if epoch <= first + 1 else steady
        if evaluates(epoch) and cfg.eval_every != 1:  # the epochs it is judged by may have had no test evaluation
            expected += _evaluation_seconds(state)
        refresh_timed = any(e["stage"] == 2 and "seconds" in e for e in state["history"])  # in a stage-2 epoch
        stop_unless_it_fits(epoch, expected)
        started = clock()
        entry = {"stage": stage, "epoch": epoch}
        if stage == 2:
            _refresh_pseudo_labels(trainer, state, entry, labels, run_data, last=epoch == epochs - 1)
            if not refresh_timed:  # the refresh took time that `expected`, from stage 1's epochs, knew nothing of
                stop_unless_it_fits(epoch, expected)
        t0 = time.perf_counter()
        # a bar per step only in a terminal; notebooks get the epoch bar alone
        step_bar = functools.partial(tqdm, leave=False, disable=not (show and sys.stderr.isatty()), mininterval=1,
                                     desc=f"epoch {epoch}")
        entry["loss"] = trainer.train_epoch(stage, epoch, progress=step_bar)
        if not math.isfinite(entry["loss"]):
            raise RuntimeError(f"run {state['run_id']} diverged: the stage-{stage} training loss of epoch {epoch} is "
                               f"{entry['loss']}. Nothing of this epoch was saved (no record is written); lower the "
                               f"learning rate (lr = {cfg.lr}) or check the data, then run again.")
        t1 = time.perf_counter()
        state["timings"]["train"] += t1 - t0
        if evaluates(epoch):
            evaluate(entry)
            state["timings"]["eval"] += time.perf_counter() - t1
            bar.set_postfix(test_error=f"{entry.get('teacher_test_error', entry['test_error']):.2f}")  # as recorded
        entry["seconds"], entry["steps"] = clock() - started, steps  # refresh, training and evaluation
        state["history"].append(entry)
        state["epoch"] = epoch + 1
        state["trainer"] = trainer.state_dict()
        save_checkpoint(ckpt, state)
        took = clock() - started  # refresh, training, evaluation and checkpoint
        budget.epochs.append((took, steps))
        steady = max(steady, took) if epoch > first else steady


def _refresh_pseudo_labels(trainer, state, entry, labels, run_data, last):
    """Lines 7-15 of Algorithm 1 before a stage-2 epoch, and what the record keeps of them: the pseudo-label and
    network accuracy, CG iterations and residual (into `entry`), the timings, the omega histogram at
    cfg.hist_epochs (Figure 5) and, at the `last` epoch, the most confident mistakes (Figure 7)."""
    labeled, unl = run_data.labeled, ~run_data.labeled
    pl, probs, t_desc, t_pl = trainer.refresh_pseudo_labels()
    state["timings"]["descriptors"] += t_desc
    state["timings"]["pseudo_labels"] += t_pl
    phases = state["timings"].setdefault("pseudo_label_phases", {})  # propagate's: k-NN, graph, CG, ...
    for phase, seconds in pl.timings.items():
        phases[phase] = phases.get(phase, 0.0) + seconds
    entry.update(pseudo_label_acc=float(correct_pseudo_labels(pl, labels, unl).mean() * 100),
                 network_acc=float((probs.argmax(1).cpu().numpy()[unl] == labels[unl]).mean() * 100),
                 cg_iters=pl.n_iter, cg_residual=pl.residual)
    if entry["epoch"] in trainer.cfg.hist_epochs:
        state["extras"]["omega_histograms"].append({"epoch": entry["epoch"], **omega_histogram(pl, labels, labeled)})
    if last:
        state["extras"]["confident_mistakes"] = confident_mistakes(pl, labels, labeled, run_data.train_index)


def _evaluation_seconds(state):
    """Seconds of one test evaluation (the teacher's too) on average in this run so far, else in the stage-1 run
    it continues; 0 when neither has evaluated yet."""
    for run in (state, state["base"] or {}):
        if count := sum("test_error" in e for e in run.get("history", [])):
            return run.get("timings", {}).get("eval", 0.0) / count
    return 0.0


def _expected_epoch(epochs, steps):
    """Seconds an epoch of `steps` training steps is expected to take, from `epochs` (seconds, steps) timed
    before: the longest of those of as many steps; without one, the longest, each with the steps it lacks at
    their median seconds per step (an overestimate: their evaluation counts as steps)."""
    if same := [t for t, n in epochs if n == steps]:
        return max(same)
    if not epochs:
        return 0.0
    rate = statistics.median(t / n for t, n in epochs)
    return max(t + rate * max(0, steps - n) for t, n in epochs)


def _relative(path, *roots):
    """`path` relative to the first of `roots` that holds it (so a record names no machine's folders), as
    written or, failing that, with symbolic links resolved."""
    for place in (os.path.abspath, lambda p: Path(p).resolve()):
        for root in roots:
            try:
                return Path(place(path)).relative_to(place(root)).as_posix()
            except ValueError:
                continue
    return Path(path).name


def _environment():
    try:
        git = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, timeout=10)
        commit = git.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        commit = None
    versions = {"python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__}
    for name in ("torchvision", "faiss", "scipy"):
        try:
            versions[name] = __import__(name).__version__
        except ImportError:
            pass
    return {"versions": versions, "git_commit": commit, "host": platform.node(),
            "torch_threads": torch.get_num_threads()}  # CPU sums split over threads round differently


def _device_name(device):
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({os.cpu_count()} cores, {platform.processor() or platform.machine()})"


def make_record(cfg, trainer, state, run_data, base):
    """The record of a finished run (what `run` writes as record.json)."""
    final = state["history"][-1]
    reported = "teacher_test_error" if cfg.method.startswith("mt") else "test_error"  # MT: its EMA teacher's
    source = Path(run_data.data.source)
    return {
        "run_id": run_id(cfg), "method": cfg.method, "dataset": cfg.dataset, "labels": cfg.labels, "split": cfg.split,
        "preset": cfg.preset, "config": asdict(trainer.cfg),
        "test_error": final[reported], "test_error_top5": final[reported + "_top5"],
        "student_test_error": final["test_error"],
        "stage1_test_error": (base or {}).get("test_error", final[reported]),
        "history": (base["history"] if base else []) + state["history"],
        "omega_histograms": state["extras"]["omega_histograms"],
        "confident_mistakes": state["extras"].get("confident_mistakes", []),
        "classes": list(run_data.data.classes),  # the names of the labels above, by number
        "n_train": len(run_data.train_index), "n_labeled": int(run_data.labeled.sum()),
        "n_unlabeled": int((~run_data.labeled).sum()), "n_test": len(run_data.test_index),
        "data": f"{cfg.dataset} from {lpdata.describe_source(source)}", "data_source": source.name,
        "data_fingerprint": run_data.fingerprint,
        "data_content": run_data.data.fingerprint,  # of all the dataset's pixels and labels, e.g. PROJECT_COPIES
        "split_file": run_data.split_name,
        "timings": {**({"stage1": base["timings"]} if base else {}), **state["timings"]},
        "base_run": base["run_id"] if base else None,
        "base_run_finished": base["finished"] if base else None,  # which training of the stage-1 run it continued
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        **_environment(),
        "device": "; ".join(state["devices"]),  # of every call that trained it
    }
