"""The package layout keeps its rules: import-linter's contracts hold, folders stay small, tests mirror."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import rxstore

PACKAGE = Path(rxstore.__file__).parent
TESTS = Path(__file__).parents[1]
MAX_MODULES = 12


def packages() -> list[Path]:
    return sorted(path.parent for path in PACKAGE.rglob("__init__.py"))


def test_import_linter_keeps_every_contract() -> None:
    """`lint-imports` (configured in pyproject.toml): the floors, the gateway on the protocol, no cycle."""
    command = shutil.which("lint-imports") or str(Path(sys.executable).parent / "lint-imports")
    done = subprocess.run([command], cwd=PACKAGE.parent, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-3000:]
    assert "BROKEN" not in done.stdout and "4 kept, 0 broken" in done.stdout


@pytest.mark.parametrize("package", packages(), ids=lambda path: str(path.relative_to(PACKAGE.parent)))
def test_no_folder_holds_more_than_twelve_modules(package: Path) -> None:
    modules = [path for path in package.glob("*.py")]
    assert len(modules) <= MAX_MODULES, sorted(path.name for path in modules)


@pytest.mark.parametrize(
    "package",
    [path for path in packages() if path != PACKAGE],
    ids=lambda path: str(path.relative_to(PACKAGE.parent)),
)
def test_every_package_has_its_tests_folder(package: Path) -> None:
    """rxstore/a/b.py is tested in tests/a/test_b.py: each package's folder exists under tests/."""
    mirror = TESTS.joinpath(*package.relative_to(PACKAGE).parts)
    assert mirror.is_dir() and any(mirror.glob("test_*.py")), f"no tests in {mirror}"
