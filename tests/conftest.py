"""Shared fixtures: a small generated CIFAR-like dataset, so that no test needs the real CIFAR files."""
import json

import pytest

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


def write_timed_record(results_dir, cfg, minutes, device="cpu (2 cores, x86_64)"):
    """A record of `cfg` under results_dir/runs/ whose own stage took `minutes` (a stage-1 run it nests aside)."""
    folder = results_dir / "runs" / run_id(cfg)
    folder.mkdir(parents=True)
    (folder / "record.json").write_text(json.dumps({
        "run_id": run_id(cfg), "method": cfg.method, "dataset": cfg.dataset, "preset": cfg.preset,
        "labels": cfg.labels, "split": cfg.split, "test_error": 50.0, "history": [{"stage": 1, "epoch": 1}],
        "device": device, "omega_histograms": [], "confident_mistakes": [],
        "timings": {"stage1": {"train": 999.0}, "train": 60.0 * minutes - 30, "eval": 30.0}}))
