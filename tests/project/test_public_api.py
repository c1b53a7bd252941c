"""The public surface: __all__ sorted and complete, docstrings present and runnable."""

from __future__ import annotations

import doctest
import importlib
import inspect
import pkgutil

import pytest

import rxstore


def _has_examples(name: str) -> bool:
    return any(test.examples for test in doctest.DocTestFinder().find(importlib.import_module(name)))


MODULES = sorted(name for _, name, _ in pkgutil.walk_packages(rxstore.__path__, "rxstore."))
"""Every module of rxstore, the gateway's included (found, not listed by hand)."""
EXAMPLE_MODULES = [name for name in MODULES if _has_examples(name)]
"""The modules whose docstrings hold examples: each one's examples run below."""


def test_all_is_sorted_and_complete():
    assert rxstore.__all__ == sorted(rxstore.__all__)
    public = {
        name
        for name, value in vars(rxstore).items()
        if not name.startswith("_") and (inspect.isclass(value) or inspect.isfunction(value))
    }
    assert public == set(rxstore.__all__)
    for name in rxstore.__all__:
        assert getattr(rxstore, name) is not None


def test_design_names_are_exported():
    for name in ("RootStore", "DomainStore", "TableStore", "RealtimeStore", "Event", "Change"):
        assert name in rxstore.__all__


def test_every_error_derives_from_the_base_and_a_builtin():
    errors = [
        getattr(rxstore, n)
        for n in rxstore.__all__
        if n.endswith(("Error", "Refused", "Full", "Timeout", "Rejected", "NotConnected"))
    ]
    assert len(errors) >= 8
    for error in errors:
        assert issubclass(error, rxstore.RxStoreError)
        if error is not rxstore.RxStoreError:
            builtin_bases = [
                b
                for b in error.__mro__
                if b.__module__ == "builtins" and b not in (Exception, BaseException, object)
            ]
            assert builtin_bases, f"{error.__name__} should also inherit a fitting builtin"


@pytest.mark.parametrize("module_name", EXAMPLE_MODULES)
def test_module_doctests_pass(module_name):
    """The examples in a module's docstrings run and print what they show."""
    module = importlib.import_module(module_name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


def test_examples_are_found_in_every_part():
    """The finder sees examples in each package (a finder that saw none would run nothing)."""
    parts = {name.split(".")[1] if name.count(".") else name for name in EXAMPLE_MODULES}
    assert {"protocol", "stores", "client", "testing", "gateway", "operators"} <= parts
    assert {"rxstore.gateway.log.subset_sql", "rxstore.protocol.subsets"} <= set(EXAMPLE_MODULES)


def test_every_public_name_has_a_docstring():
    missing = [n for n in rxstore.__all__ if not inspect.getdoc(getattr(rxstore, n))]
    assert missing == []
