"""Shared fixtures: a small generated CIFAR-like dataset, so that no test needs the real CIFAR files."""
import pytest

from lpnb.config import make_config
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
