"""`pytest --nbval notebooks/` runs the committed notebooks and compares their outputs. They load the recorded
runs and train nothing; one also shows CIFAR-10 images, and where that data is absent it is skipped, saying why.
(Under SMOKE_TEST=1 every notebook runs, on generated stand-in data, all under one temporary folder removed
at the end, or under $LPNB_SMOKE_DIR where set.)"""
import os
import shutil
import tempfile

import pytest

from lpnb import data

SHOWS_IMAGES = {"09_figure7.ipynb": "cifar10"}


def pytest_configure(config):
    if os.environ.get("SMOKE_TEST") and not os.environ.get("LPNB_SMOKE_DIR"):  # the kernels started later inherit it
        config.lpnb_smoke_dir = os.environ["LPNB_SMOKE_DIR"] = tempfile.mkdtemp(prefix="lpnb-smoke-")


def pytest_unconfigure(config):
    if hasattr(config, "lpnb_smoke_dir"):
        shutil.rmtree(config.lpnb_smoke_dir, ignore_errors=True)
        del os.environ["LPNB_SMOKE_DIR"]


def pytest_collection_modifyitems(config, items):
    if os.environ.get("SMOKE_TEST"):
        return
    for item in items:
        dataset = SHOWS_IMAGES.get(item.path.name)
        if dataset and data.find_dataset(dataset) is None:
            searched = " or ".join(map(str, data.data_roots()))
            item.add_marker(pytest.mark.skip(reason=f"{item.path.name} shows {dataset} images; no {dataset} data "
                                                    f"under {searched} (see lpnb.data.load_dataset)"))
