"""The package builds clean: wheel and sdist without warnings, metadata twine accepts, an SPDX license."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
COPY_IGNORED = (
    ".git",
    ".venv*",
    "node_modules",
    "*cache*",
    ".hypothesis",
    "build",
    "dist",
    "site",
    "*.egg-info",
)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """``python -m build`` of a copy of the checkout (sdist, then the wheel from it): folder and output.

    A copy, so that the build writes no ``rxstore.egg-info`` into the checkout while another Python's
    ``pip install -e`` may be writing it (``.ci/run`` installs 3.12 and 3.13 during this suite).
    """
    out = tmp_path_factory.mktemp("dist")
    source = tmp_path_factory.mktemp("source") / "rxstore"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(*COPY_IGNORED))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    done = subprocess.run(
        [sys.executable, "-m", "build", "--outdir", str(out), str(source)],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return out, done.stdout + done.stderr


def test_the_build_prints_no_warning(built: tuple[Path, str]) -> None:
    _, output = built
    warnings = [line for line in output.splitlines() if "warning" in line.lower()]
    assert warnings == []


def test_twine_accepts_both_distributions(built: tuple[Path, str]) -> None:
    out, _ = built
    files = sorted(str(path) for path in out.iterdir())
    assert len(files) == 2
    done = subprocess.run(
        [sys.executable, "-m", "twine", "check", "--strict", *files],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_metadata_names_an_spdx_license_its_file_and_no_missing_extra(built: tuple[Path, str]) -> None:
    out, _ = built
    (wheel,) = out.glob("*.whl")
    with zipfile.ZipFile(wheel) as archive:
        metadata = archive.read("rxstore-0.1.0.dist-info/METADATA").decode()
        names = archive.namelist()
    assert "License-Expression: MIT" in metadata
    assert "License-File: LICENSE" in metadata and "rxstore-0.1.0.dist-info/licenses/LICENSE" in names
    assert "Classifier: Typing :: Typed" in metadata and "Classifier: Framework :: AsyncIO" in metadata
    assert "Requires-Dist: python-socketio>=" in metadata and "asyncio_client" not in metadata
    assert "rxstore/py.typed" in names


def test_the_classifiers_name_exactly_the_pythons_ci_runs() -> None:
    """``.ci/run`` tests 3.11 (its ``python3``) and its ``OTHER_PYTHONS``; the classifiers name those."""
    import re
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    classified = {
        c.rsplit(" :: ", 1)[1]
        for c in project["classifiers"]
        if re.fullmatch(r"Programming Language :: Python :: 3\.\d+", c)
    }
    ci = (ROOT / ".ci" / "run").read_text()
    (others,) = re.findall(r'^OTHER_PYTHONS="([^"]*)"', ci, flags=re.MULTILINE)
    assert project["requires-python"] == ">=3.11"
    assert classified == {"3.11", *others.split()}
