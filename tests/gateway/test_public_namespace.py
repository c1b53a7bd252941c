"""The gateway's public namespace: ``rxstore.gateway`` exports what its users need, documented, cheaply."""

from __future__ import annotations

import ast
import importlib
import inspect
import itertools
import pkgutil
import subprocess
import sys
import textwrap
from types import ModuleType

import pytest

import rxstore.gateway


def attribute_docstring(module: ModuleType, name: str) -> str | None:
    """The string literal under a module-level ``name = ...`` (how a type alias is documented), if any."""
    body = ast.parse(inspect.getsource(module)).body
    for statement, following in itertools.pairwise(body):
        targets = statement.targets if isinstance(statement, ast.Assign) else []
        if isinstance(statement, ast.AnnAssign):
            targets = [statement.target]
        named = any(isinstance(target, ast.Name) and target.id == name for target in targets)
        if named and isinstance(following, ast.Expr) and isinstance(following.value, ast.Constant):
            return str(following.value.value)
    return None


def docstring(name: str) -> str | None:
    """The docstring of a public name: its object's own, or, for an alias, the one where it is defined."""
    value = getattr(rxstore.gateway, name)
    if inspect.isclass(value) or inspect.isfunction(value):
        return inspect.getdoc(value)
    for info in pkgutil.walk_packages(rxstore.gateway.__path__, "rxstore.gateway."):
        module = importlib.import_module(info.name)
        if vars(module).get(name) is value:
            found = attribute_docstring(module, name)
            if found:
                return found
    return None


def test_all_is_sorted():
    assert rxstore.gateway.__all__ == sorted(rxstore.gateway.__all__)


@pytest.mark.parametrize("name", rxstore.gateway.__all__)
def test_every_public_name_is_importable_and_documented(name: str) -> None:
    value = getattr(rxstore.gateway, name)
    assert value is not None
    assert docstring(name), f"rxstore.gateway.{name} has no docstring"


def test_the_names_users_need_are_public():
    """What the docs' examples import: the gateway, its options and hooks, tokens, logs, mounting."""
    needed = {
        "RealtimeGateway",
        "Topic",
        "Retention",
        "Writes",
        "RowFilter",
        "TopicFilter",
        "Handler",
        "MutationHandler",
        "TokenAuth",
        "User",
        "ChangeLog",
        "open_change_log",
        "SQLiteChangeLog",
        "PostgresChangeLog",
        "GatewayASGIApp",
        "GatewayUsageError",
        "create_demo_schema",
        "Post",
        "save_post",
    }
    assert needed <= set(rxstore.gateway.__all__)


def test_every_public_class_and_function_is_exported():
    """Each class or function the namespace holds (not a submodule) is in ``__all__``."""
    held = {
        name
        for name, value in vars(rxstore.gateway).items()
        if not name.startswith("_") and (inspect.isclass(value) or inspect.isfunction(value))
    }
    assert held <= set(rxstore.gateway.__all__)


def test_importing_the_gateway_imports_no_part_of_the_client():
    """A fresh interpreter imports ``rxstore.gateway`` (and what it imports) without the client or reactivex.

    The parent package ``rxstore`` is the client's public namespace, so it is made an empty
    package first: what is checked is everything the gateway itself imports.
    """
    code = textwrap.dedent(
        """
        import importlib.util, sys, types
        spec = importlib.util.find_spec("rxstore")
        parent = types.ModuleType("rxstore")
        parent.__path__ = list(spec.submodule_search_locations)
        sys.modules["rxstore"] = parent
        import rxstore.gateway
        print(rxstore.gateway.RealtimeGateway.__name__)
        client = ("rxstore.client", "rxstore.stores", "rxstore.operators", "rxstore.testing", "reactivex")
        print(sorted(m for m in sys.modules if m.startswith(client)))
        """
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["RealtimeGateway", "[]"]
