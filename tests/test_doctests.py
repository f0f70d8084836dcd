"""The Examples sections of the package's docstrings (doctest) and the README's Python example run as written."""
import doctest
import importlib

import pytest

MODULES = [  # add a module here once its docstrings have Examples
    "lpnb.diffusion",
    "lpnb.config",
    "lpnb.experiment",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0, f"{name} has no docstring examples"
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples of {name} failed (output above)"


def test_the_readmes_python_example_runs_as_written():
    import re

    import numpy as np

    from lpnb.experiment import REPO

    [example] = re.findall(r"```python\n(.*?)```", (REPO / "README.md").read_text(), re.S)
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(3), 40)
    features = rng.normal(size=(120, 8)) + 4 * np.eye(8)[labels]  # three separated classes
    labeled = np.r_[0, 40, 80]
    y = np.where(np.isin(np.arange(120), labeled), labels, -1)
    names = {"features": features, "labels": labels, "labeled": labeled, "X": features, "y": y,
             "X_new": features[:5]}
    exec(example, names)
    assert (names["res"].pseudo_labels == labels).mean() > 0.9
    assert (names["est"].predict(features[:5]) == labels[:5]).all()
