"""Shared fixtures: a small generated CIFAR-like dataset, so that no test needs the real CIFAR files."""
import json

import numpy as np
import pytest

from lpnb import experiment
from lpnb.config import make_config, run_id
from lpnb.data import write_standin


@pytest.fixture(scope="session")
def data_root(tmp_path_factory):
    """cifar10/{train,test}/<class>/<n>.png: 30 train and 10 test 32x32 images for each of 10 classes."""
    return write_standin(tmp_path_factory.mktemp("data"), "cifar10", train_per_class=30, test_per_class=10)


@pytest.fixture()
def env(tmp_path, monkeypatch, data_root):
    """(data root, a fresh results folder), with a cache of decoded data private to the test."""
    monkeypatch.setenv("LPNB_CACHE_DIR", str(tmp_path / "cache"))
    return data_root, tmp_path / "results"


def smoke(method, **kw):
    """A seconds-long config on the `data_root` stand-in: 50 labeled, 200 unlabeled, 100 test images."""
    return make_config("smoke", **{"method": method, "labels": 50, "unlabeled_size": 200, "test_size": 100,
                                   "device": "cpu", **kw})


RECORD_REST = {"config": {"use_omega": True, "use_zeta": True}, "n_labeled": 50, "n_unlabeled": 200, "n_test": 100}
"""The fields a record needs besides those a test sets (`lpnb.experiment.read_record` checks them)."""


def write_timed_record(results_dir, cfg, minutes, device="cpu (2 cores, x86_64)"):
    """A record of `cfg` under results_dir/runs/ whose own stage took `minutes` (a stage-1 run it nests aside)."""
    folder = results_dir / "runs" / run_id(cfg)
    folder.mkdir(parents=True)
    (folder / "record.json").write_text(json.dumps({
        "run_id": run_id(cfg), "method": cfg.method, "dataset": cfg.dataset, "preset": cfg.preset,
        "labels": cfg.labels, "split": cfg.split, "test_error": 50.0, "history": [{"stage": 1, "epoch": 1}],
        "device": device, "omega_histograms": [], "confident_mistakes": [], **RECORD_REST,
        "timings": {"stage1": {"train": 999.0}, "train": 60.0 * minutes - 30, "eval": 30.0}}))


@pytest.fixture()
def minute_epochs(monkeypatch):
    """A clock that every epoch advances by one minute per training step: a minute for a supervised stage-1
    epoch of the smoke configs here (50 labeled images, one batch), six for a stage-2 or Mean Teacher epoch
    (200 unlabeled images, 32 a batch), as a stage-2 epoch at the paper's protocol is ~20 stage-1 epochs."""
    now = [0.0]
    monkeypatch.setattr(experiment, "clock", lambda: now[0])
    train_epoch = experiment.Trainer.train_epoch

    def a_minute_a_step(self, stage, *args, **kwargs):
        now[0] += 60 * self.steps_per_epoch(stage)
        return train_epoch(self, stage, *args, **kwargs)
    monkeypatch.setattr(experiment.Trainer, "train_epoch", a_minute_a_step)
    return now  # seconds: a test may add to it


def same_run(a, b):
    """Two records of one run agree epoch by epoch (an interrupted and resumed run against an uninterrupted one)."""
    assert [(h["stage"], h["epoch"]) for h in a["history"]] == [(h["stage"], h["epoch"]) for h in b["history"]]
    for key in ("loss", "test_error", "teacher_test_error", "pseudo_label_acc"):  # the teacher's too (Mean Teacher)
        values = [[h.get(key, np.nan) for h in run["history"]] for run in (a, b)]
        np.testing.assert_allclose(*values, rtol=1e-5, err_msg=key)
    assert a["test_error"] == pytest.approx(b["test_error"]) and a["run_id"] == b["run_id"]
