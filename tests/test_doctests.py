"""The Examples sections of the package's docstrings run as written (doctest)."""
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
