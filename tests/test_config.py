"""Config (lpnb.config): every value checked before anything trains, a value set is the value used, and
the run id changes with every field that changes what a run computes."""
import dataclasses
import json
import math
import re

import numpy as np
import pytest

from lpnb.config import Config, base_config, make_config, run_id
from lpnb.data import REPO


def test_unknown_names_are_rejected():
    with pytest.raises(ValueError, match="unknown method"):
        make_config("smoke", method="fixmatch")
    for preset in ("huge", ["smoke"]):
        with pytest.raises(ValueError, match="unknown preset"):
            make_config(preset)
    with pytest.raises(ValueError, match="unknown config field"):
        make_config("smoke", learning_rate=0.1)
    with pytest.raises(ValueError, match="unknown dataset"):
        make_config("smoke", dataset="svhn")


@pytest.mark.parametrize("field, value", [("use_omega", "False"), ("labels", 2.5), ("labels", True), ("width", "x"),
                                          ("amp", "no"), ("labels", None), ("k", 2.0), ("cg_iters", "20"),
                                          ("dataset", ["cifar10"]), ("method", ["lp"])])
def test_wrong_types_are_rejected(field, value):
    with pytest.raises(ValueError, match=f"config field {field} must be"):
        make_config("smoke", **{field: value})


@pytest.mark.parametrize("field, value", [
    ("labels", 0), ("epochs_stage1", 0), ("epochs_stage2", 0), ("epochs_stage2", -3), ("batch_size", 0),
    ("labeled_batch_size", 0), ("labeled_batch_size", 64), ("k", 0), ("k", -1), ("cg_iters", 0),
    ("unlabeled_size", 0), ("test_size", -5), ("split", -1), ("seed", -1), ("seed", 2**64 - 1), ("eval_every", -1),
    ("width", 0.0), ("width", -0.5), ("width", math.inf), ("gamma", 0.0), ("gamma", math.nan),
    ("alpha", 1.0), ("alpha", -0.1), ("alpha", math.nan), ("lr", -0.1), ("lr", math.inf), ("momentum", 1.0),
    ("weight_decay", -1e-4), ("ema_decay", 1.5), ("consistency", -1.0), ("consistency_rampup", math.nan),
    ("logit_distance_cost", -0.01), ("lr_rampdown_epochs", 0.0), ("hist_epochs", (0, 2)), ("hist_epochs", (-1,)),
    ("arch", "vgg"), ("knn", "fast"), ("compile", "fast"), ("device", "tpu0"), ("device", "mps"),
    ("device", "meta"), ("momentum", 0.0),
])
def test_degenerate_settings_are_refused_naming_the_field(field, value):
    with pytest.raises(ValueError, match=f"config field {field} must be"):
        make_config("smoke", **{field: value})  # smoke: epochs_stage2 = 2, batch_size 64


def test_resnet18_with_a_width_is_refused_with_the_config():
    with pytest.raises(ValueError, match="config field width must be 1.0 with arch 'resnet18'"):
        make_config("smoke", arch="resnet18", width=0.5)  # before any data is decoded or folder made


def test_stage2_settings_are_checked_for_a_stage1_method_too():
    # a supervised run is the stage 1 of the stage-2 runs: their settings are refused before it trains
    with pytest.raises(ValueError, match="cg_iters"):
        make_config("smoke", method="supervised", cg_iters=0)


def test_a_value_set_is_the_value_used():
    cfg = make_config("smoke", lr=0.0, weight_decay=0.0, momentum=0.0, nesterov=False, consistency=0.0, eval_every=0)
    assert (cfg.lr, cfg.weight_decay, cfg.momentum, cfg.consistency, cfg.eval_every) == (0.0, 0.0, 0.0, 0.0, 0)
    assert run_id(cfg) != run_id(make_config("smoke"))
    assert make_config("paper", dataset="cifar100").lr == 0.2
    assert make_config("paper", lr=None).lr == 0.05  # None: the paper's value


def test_numpy_values_and_ints_in_float_fields_give_the_same_run_id():
    cfg = make_config("smoke", labels=np.int64(50), lr=1, hist_epochs=[0, np.int64(1)], amp=None)
    assert (cfg.labels, cfg.lr, cfg.hist_epochs) == (50, 1, (0, 1)) and (type(cfg.labels), type(cfg.lr)) == (int, float)
    assert type(cfg.hist_epochs[1]) is int
    assert run_id(cfg) == run_id(make_config("smoke", labels=50, lr=1.0, hist_epochs=(0, 1)))


def test_spellings_of_one_setting_give_one_run_id():
    cfg = make_config("smoke", method="lp", epochs_stage2=3, hist_epochs=(0, 1), weight_decay=0.0)
    for same in (dict(hist_epochs=(1, 0)), dict(hist_epochs=[0, 0, 1]), dict(weight_decay=-0.0)):
        other = make_config("smoke", method="lp", epochs_stage2=3, **{**dict(hist_epochs=(0, 1), weight_decay=0.0),
                                                                      **same})
        assert (run_id(other), other.hist_epochs, str(other.weight_decay)) == (run_id(cfg), (0, 1), "0.0")


# a valid second value for every field (smoke preset, CIFAR-10)
OTHER = dict(dataset="cifar100", labels=1000, split=1, method="lp", preset="cpu", use_omega=False, use_zeta=False,
             unlabeled_size=300, test_size=100, arch="resnet18", width=0.25, epochs_stage1=3, epochs_stage2=3,
             lr=0.1, lr_rampdown_epochs=5.0, batch_size=50, labeled_batch_size=10, momentum=0.5, nesterov=False,
             weight_decay=1e-4, seed=3, k=20, gamma=2.0, alpha=0.9, cg_iters=5, knn="approx", ema_decay=0.9,
             consistency=10.0, consistency_rampup=1.0, logit_distance_cost=0.1, eval_every=2, hist_epochs=(1,),
             device="cpu", amp=True, channels_last=True, compile=True)


def test_every_field_has_a_second_value_here():
    assert set(OTHER) == {f.name for f in dataclasses.fields(Config)}


# which fields a run's id leaves out, written out here rather than read from lpnb.config: a field wrongly left out
# would let two different runs share one folder
RUNTIME = ("device", "amp", "channels_last", "compile")
STAGE2 = ("epochs_stage2", "k", "gamma", "alpha", "cg_iters", "knn", "use_omega", "use_zeta", "hist_epochs")
MEAN_TEACHER = ("ema_decay", "consistency", "consistency_rampup", "logit_distance_cost")


@pytest.mark.parametrize("field", sorted(OTHER))
def test_run_id_changes_with_every_field_a_method_uses(field):
    for method in ("supervised", "lp", "mt+lp"):
        base = dict(method=method) if field != "method" else dict(method="network")
        if field == "arch":
            base["width"] = 1.0  # ResNet-18 has no width multiplier
        a = make_config("smoke", **base)
        b = make_config("cpu", **base) if field == "preset" else make_config("smoke", **{**base, field: OTHER[field]})
        used = not (field in RUNTIME or (method == "supervised" and field in STAGE2)
                    or (not method.startswith("mt") and field in MEAN_TEACHER))
        assert (run_id(a) != run_id(b)) == used, (method, field)


def test_the_presets_still_make_the_committed_runs():
    """Every committed record is the run its preset gives for its cell: a preset changed by mistake would leave
    the notebooks unable to find them (and train again)."""
    records = [json.loads(p.read_text()) for p in sorted((REPO / "results" / "runs").glob("*/record.json"))]
    assert {r["preset"] for r in records} == {"cpu", "paper"}
    for r in records:
        cfg = make_config(r["preset"], **{f: r["config"][f] for f in ("dataset", "labels", "split", "method",
                                                                         "use_omega", "use_zeta")})
        assert run_id(cfg) == r["run_id"], r["run_id"]


def test_the_stage1_run_of_a_weight_variant_is_the_shared_one_with_default_weights():
    for method, base in (("lp", "supervised"), ("mt+lp", "mt"), ("network", "supervised")):
        variant = make_config("cpu", method=method, use_omega=False, use_zeta=False)
        stage1 = base_config(variant)
        assert stage1 == make_config("cpu", method=base) and (stage1.use_omega, stage1.use_zeta) == (True, True)
    assert base_config(make_config("cpu", method="mt")) is None


def test_every_flag_whose_default_is_none_says_what_none_means(capsys):
    from lpnb.cli import main
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps the help
    for f in dataclasses.fields(Config):
        if f.default is None:
            assert re.search(f"--{f.name.replace('_', '-')} {f.name.upper()} ([^;]*; )?default: the preset's, else "
                             r"None \(", text), f.name  # after the choices, for a field that has few


@pytest.mark.parametrize("dataset, lr, batch, labeled", [("cifar10", 0.05, 100, 50), ("cifar100", 0.2, 128, 31)])
def test_the_paper_preset_is_the_papers_protocol(dataset, lr, batch, labeled):
    """Sec. 5.2: 180 epochs, cosine to zero at 210, l0 0.05 (CIFAR-10) or 0.2, B = 100 or 128 with B_L = 50 or 31,
    k = 50, gamma = 3, alpha = 0.99, at most 20 CG iterations, MT's dual output coefficient 0.01; "all other
    learning parameters remain unchanged from MT implementation": SGD with Nesterov momentum 0.9, weight decay
    2e-4, EMA decay 0.97, consistency 100 ramped up over 5 epochs (docs/method.md)."""
    cfg = make_config("paper", dataset=dataset, method="mt+lp")
    assert (cfg.epochs_stage1, cfg.epochs_stage2, cfg.lr, cfg.batch_size, cfg.labeled_batch_size) == (
        180, 180, lr, batch, labeled)
    assert cfg.lr_rampdown_epochs in (None, 210)  # None: 210/180 of the stage's epochs
    assert (cfg.k, cfg.gamma, cfg.alpha, cfg.cg_iters, cfg.logit_distance_cost) == (50, 3.0, 0.99, 20, 0.01)
    assert (cfg.momentum, cfg.nesterov, cfg.weight_decay) == (0.9, True, 2e-4)
    assert (cfg.ema_decay, cfg.consistency, cfg.consistency_rampup) == (0.97, 100.0, 5.0)
    assert (cfg.unlabeled_size, cfg.width, cfg.arch) == (None, 1.0, "cnn13")
