"""`pytest --nbval notebooks/` runs the committed notebooks and compares their outputs. They load the recorded
runs and train nothing; one also shows CIFAR-10 images, and where that data is absent it is skipped, saying why.
(Under SMOKE_TEST=1 every notebook runs, on generated stand-in data.)"""
import os

import pytest

from lpnb import data

SHOWS_IMAGES = {"09_figure7.ipynb": "cifar10"}


def pytest_collection_modifyitems(config, items):
    if os.environ.get("SMOKE_TEST"):
        return
    for item in items:
        dataset = SHOWS_IMAGES.get(item.path.name)
        if dataset and data.find_dataset(dataset) is None:
            searched = " or ".join(map(str, data.data_roots()))
            item.add_marker(pytest.mark.skip(reason=f"{item.path.name} shows {dataset} images; no {dataset} data "
                                                    f"under {searched} (see lpnb.data.load_dataset)"))
