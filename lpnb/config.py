"""The settings of one run: `Config`, the presets, their validation and the run id.

    make_config("cpu", labels=500, method="lp")   a checked Config (papermill parameters and CLI flags land here)
    run_id(cfg)                                   the name of the run's folder under results/runs/

A run is identified by its config: two configs that differ only in runtime switches (device,
amp, channels_last, compile), in the stage-2 settings of a stage-1 run or in Mean Teacher's
outside Mean Teacher get the same run id; any other difference, even one the method does not
use (a supervised run's labeled_batch_size), gives another. Every value is checked here, before
anything trains (docs/method.md).
"""
import dataclasses
import hashlib
import json
import math
import numbers
import typing
from dataclasses import asdict, dataclass, replace

import torch

METHODS = ("supervised", "network", "lp", "gtg", "mt", "mt+lp")
DATASET_DEFAULTS = {  # the paper's values of the fields a Config leaves None (sec. 5.2)
    "cifar10": dict(lr=0.05, batch_size=100, labeled_batch_size=50, arch="cnn13"),
    "fashion-mnist": dict(lr=0.05, batch_size=100, labeled_batch_size=50, arch="cnn13"),
    "cifar100": dict(lr=0.2, batch_size=128, labeled_batch_size=31, arch="cnn13"),
    "miniimagenet": dict(lr=0.2, batch_size=128, labeled_batch_size=31, arch="resnet18"),
}
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
RUNTIME_FIELDS = ("device", "amp", "channels_last", "compile")
STAGE2_FIELDS = ("epochs_stage2", "k", "gamma", "alpha", "cg_iters", "knn", "use_omega", "use_zeta", "hist_epochs")
MT_FIELDS = ("ema_decay", "consistency", "consistency_rampup", "logit_distance_cost")


@dataclass
class Config:
    """Every knob of one run. None means a default: the paper's value for this dataset (lr, the batch sizes,
    arch and hist_epochs, filled by `resolve`), or, for the other fields, what the field's comment says."""
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
    """A checked `Config` from a named preset, with any field overridden.

    Parameters
    ----------
    preset : {"paper", "cpu", "smoke"}
        "paper" is the full protocol of the paper (sec. 5.2); "cpu" a small version for a
        2-core CPU (5,000 unlabeled images, a quarter-width network, 60 + 15 epochs);
        "smoke" a seconds-long one that exercises the code paths, not the numbers.
    **overrides
        Any field of `Config`. A value given is the value used, zero included; None keeps
        the paper's value for the dataset where the field allows None.

    Returns
    -------
    Config
        With the dataset's defaults filled in (lr, batch sizes, network) and every value
        checked: a bad value raises ValueError naming the field.

    Examples
    --------
    >>> cfg = make_config("cpu", dataset="cifar100", labels=4000, method="lp")
    >>> cfg.lr, cfg.batch_size, cfg.labeled_batch_size, cfg.width, cfg.epochs_stage2
    (0.2, 128, 31, 0.25, 15)
    >>> make_config("smoke", cg_iters=0)
    Traceback (most recent call last):
    ...
    ValueError: config field cg_iters must be a positive integer, got 0
    """
    if not isinstance(preset, str) or preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}: choose one of {sorted(PRESETS)}")
    unknown = set(overrides) - {f.name for f in dataclasses.fields(Config)}
    if unknown:
        fields = [f.name for f in dataclasses.fields(Config)]
        raise ValueError(f"unknown config field(s) {sorted(unknown)}; fields are {fields}")
    preset_fields = dict(PRESETS[preset])
    dataset = overrides.get("dataset", Config.dataset)  # not a string: `resolve` says so
    arch = overrides.get("arch") or DATASET_DEFAULTS.get(dataset if isinstance(dataset, str) else "", {}).get("arch")
    if arch == "resnet18":  # a preset's width multiplier is for the 13-layer network; ResNet-18 has none
        preset_fields.pop("width", None)
    return resolve(Config(preset=preset, **{**preset_fields, **overrides}))


KINDS = {bool: "a bool (true or false)", int: "an integer", float: "a number", str: "a string",
         tuple: "a list (e.g. [0, 90])", type(None): "None"}


def _check_types(cfg):
    """Each field must hold its annotated type (a string "False" for a bool would silently mean True).
    Numpy integers and ints in float fields are converted, so equal configs get equal run ids."""
    fixed = {}
    for name, hint in typing.get_type_hints(Config).items():
        allowed = typing.get_args(hint) or (hint,)
        value = getattr(cfg, name)
        if isinstance(value, bool):  # bool is an int to isinstance: not for int or float fields
            ok = bool in allowed
        elif isinstance(value, float) and float in allowed:
            ok, fixed[name] = True, value + 0.0  # -0.0 as 0.0: json writes the sign into the run id
        elif isinstance(value, allowed):  # NoneType is in allowed for the optional fields
            ok = True
        elif int in allowed and isinstance(value, numbers.Integral):
            ok, fixed[name] = True, int(value)
        elif float in allowed and isinstance(value, numbers.Real):
            ok, fixed[name] = True, float(value) + 0.0
        else:
            ok = tuple in allowed and isinstance(value, list)
        if not ok:
            names = " or ".join(KINDS[t] for t in allowed)
            raise ValueError(f"config field {name} must be {names}, got {value!r} ({type(value).__name__})")
    return replace(cfg, **fixed)


def _check(ok, name, what, value):
    if not ok:
        raise ValueError(f"config field {name} must be {what}, got {value!r}")


def _check_values(cfg):
    """The ranges of every field, so that no degenerate setting trains (or is found) silently."""
    for name in ("labels", "epochs_stage1", "epochs_stage2", "batch_size", "labeled_batch_size", "k", "cg_iters"):
        _check(getattr(cfg, name) > 0, name, "a positive integer", getattr(cfg, name))
    for name in ("unlabeled_size", "test_size"):
        value = getattr(cfg, name)
        _check(value is None or value > 0, name, "a positive integer or None (all)", value)
    for name in ("split", "eval_every"):
        _check(getattr(cfg, name) >= 0, name, "an integer >= 0", getattr(cfg, name))
    _check(0 <= cfg.seed < 2**63, "seed", "an integer in [0, 2**63) (torch's generators take it and seed + 1)",
           cfg.seed)
    for name in ("width", "gamma"):
        value = getattr(cfg, name)
        _check(math.isfinite(value) and value > 0, name, "finite and positive", value)
    _check(cfg.lr_rampdown_epochs is None or (math.isfinite(cfg.lr_rampdown_epochs) and cfg.lr_rampdown_epochs > 0),
           "lr_rampdown_epochs", "finite and positive, or None (210/180 of the stage's epochs)", cfg.lr_rampdown_epochs)
    for name in ("lr", "weight_decay", "consistency", "consistency_rampup", "logit_distance_cost"):
        value = getattr(cfg, name)
        _check(math.isfinite(value) and value >= 0, name, "finite and >= 0", value)
    for name in ("alpha", "momentum"):
        value = getattr(cfg, name)
        _check(math.isfinite(value) and 0 <= value < 1, name, "finite and in [0, 1)", value)
    _check(math.isfinite(cfg.ema_decay) and 0 <= cfg.ema_decay <= 1, "ema_decay", "in [0, 1]", cfg.ema_decay)
    _check(cfg.momentum > 0 or not cfg.nesterov, "momentum", "> 0 with nesterov (or set nesterov false)",
           cfg.momentum)
    _check(cfg.labeled_batch_size < cfg.batch_size, "labeled_batch_size",
           f"smaller than batch_size ({cfg.batch_size}): a batch of stage 2 or Mean Teacher also holds unlabeled "
           "images (a supervised run is the stage 1 of those runs, which share its settings)", cfg.labeled_batch_size)
    per_batch = cfg.batch_size - cfg.labeled_batch_size  # stage 2 and Mean Teacher fill this much with unlabeled images
    _check(cfg.method == "supervised" or cfg.unlabeled_size is None or cfg.unlabeled_size >= per_batch,
           "unlabeled_size", f"at least the {per_batch} unlabeled images of one batch (batch_size - "
           f"labeled_batch_size) for method {cfg.method!r}, or None (all)", cfg.unlabeled_size)
    _check(cfg.arch in ("cnn13", "resnet18"), "arch", "'cnn13' or 'resnet18'", cfg.arch)
    _check(cfg.arch != "resnet18" or cfg.width == 1.0, "width", "1.0 with arch 'resnet18', which has no width "
           "multiplier (arch 'cnn13' for small runs)", cfg.width)
    _check(cfg.knn in ("exact", "approx"), "knn", "'exact' or 'approx'", cfg.knn)
    _check(all(isinstance(e, int) and not isinstance(e, bool) and 0 <= e < cfg.epochs_stage2 for e in cfg.hist_epochs),
           "hist_epochs", f"stage-2 epochs in [0, {cfg.epochs_stage2})", cfg.hist_epochs)
    _check(cfg.compile in (None, True, False) or cfg.compile in COMPILE_MODES, "compile",
           f"true, false, None (CUDA only) or a torch.compile mode {COMPILE_MODES}", cfg.compile)
    if cfg.device != "auto":
        try:
            kind = torch.device(cfg.device).type
        except RuntimeError:
            kind = None
        _check(kind in ("cpu", "cuda"), "device", "'auto', 'cpu', 'cuda' or 'cuda:<index>' (lpnb trains on those)",
               cfg.device)


def resolve(cfg):
    """Fill the dataset-dependent defaults (only where a field is None) and check every value."""
    cfg = _check_types(cfg)
    if cfg.preset not in PRESETS:
        raise ValueError(f"unknown preset {cfg.preset!r}: choose one of {sorted(PRESETS)}")
    if cfg.dataset not in DATASET_DEFAULTS:
        raise ValueError(f"unknown dataset {cfg.dataset!r}: choose one of {sorted(DATASET_DEFAULTS)}")
    if cfg.method not in METHODS:
        raise ValueError(f"unknown method {cfg.method!r}: choose one of {list(METHODS)}")
    paper = {k: v for k, v in DATASET_DEFAULTS[cfg.dataset].items() if getattr(cfg, k) is None}
    hist_epochs = (0, cfg.epochs_stage2 // 2) if cfg.hist_epochs is None else cfg.hist_epochs
    cfg = replace(cfg, **paper, hist_epochs=tuple(int(e) if isinstance(e, numbers.Integral) and not isinstance(e, bool)
                                                  else e for e in hist_epochs))
    _check_values(cfg)
    return replace(cfg, hist_epochs=tuple(sorted(set(cfg.hist_epochs))))  # a set of epochs: one run id per set


def run_id(cfg):
    """`<dataset>-<labels>-<method>[-noomega][-nozeta]-split<i>-<preset>-<hash of the fields that matter>`."""
    fields = {k: v for k, v in asdict(cfg).items() if k not in RUNTIME_FIELDS}
    if cfg.method in ("supervised", "mt"):
        fields = {k: v for k, v in fields.items() if k not in STAGE2_FIELDS}
    if not cfg.method.startswith("mt"):
        fields = {k: v for k, v in fields.items() if k not in MT_FIELDS}
    digest = hashlib.sha1(json.dumps(fields, sort_keys=True, default=list).encode()).hexdigest()[:8]
    variant = cfg.method if cfg.method in ("supervised", "mt") else (
        cfg.method.replace("+", "") + ("" if cfg.use_omega else "-noomega") + ("" if cfg.use_zeta else "-nozeta"))
    return f"{cfg.dataset}-{cfg.labels}-{variant}-split{cfg.split}-{cfg.preset}-{digest}"


def base_config(cfg):
    """The stage-1 run a stage-2 method continues (supervised, or Mean Teacher for mt+lp); None for a stage-1 method.
    Its pseudo-label weights are the defaults: it has none, and Table 1's variants share one stage 1."""
    if cfg.method in ("supervised", "mt"):
        return None
    return replace(cfg, method="mt" if cfg.method == "mt+lp" else "supervised", use_omega=True, use_zeta=True)
