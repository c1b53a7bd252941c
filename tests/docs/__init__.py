"""Tests of the documentation: its examples run for real, its site builds, its API has examples."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

PROJECT = Path(__file__).resolve().parent.parent.parent
DOCS = PROJECT / "docs"
EXAMPLES = DOCS / "examples"


def load_from(path: Path) -> ModuleType:
    """Import the file ``path`` as the module ``docs_<dir>_<stem>`` (once)."""
    module_name = f"docs_{path.parent.name}_{path.stem}"
    if module_name in sys.modules:
        return sys.modules[module_name]
    spec = importlib.util.spec_from_file_location(module_name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module


def load_example(name: str) -> ModuleType:
    """Import ``docs/examples/<name>.py``."""
    return load_from(EXAMPLES / f"{name}.py")
