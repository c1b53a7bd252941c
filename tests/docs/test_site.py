"""The documentation site builds with ``mkdocs build --strict`` and shows what it promises."""

from __future__ import annotations

import importlib.util
import inspect
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

import rxstore
from tests.docs import DOCS, PROJECT, load_example
from tests.docs.includes import MARKED
from tests.services import require_or_skip

marble_examples = load_example("test_marbles")
MARBLE_TESTS = sorted(
    name
    for name, value in vars(marble_examples).items()
    if name.startswith("test_") and inspect.isfunction(value)
)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The site, built once for this module with ``mkdocs build --strict``."""
    if importlib.util.find_spec("mkdocs") is None or importlib.util.find_spec("mkdocstrings") is None:
        require_or_skip("mkdocs is not installed: pip install -e '.[docs]'")
    out = tmp_path_factory.mktemp("site")
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=PROJECT,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, f"mkdocs build --strict failed:\n{result.stdout}\n{result.stderr}"
    return out


def test_mkdocs_build_strict_passes(site: Path) -> None:
    assert (site / "index.html").is_file()
    for page in ("concepts", "stores", "testing", "gateway", "operations", "migrating", "protocol"):
        assert (site / page / "index.html").is_file(), page


def test_the_testing_page_includes_five_marble_examples_that_are_tests(site: Path) -> None:
    page = (DOCS / "testing.md").read_text()
    included = [m["section"] for m in MARKED.finditer(page) if m["file"] == "test_marbles.py"]
    source = (DOCS / "examples" / "test_marbles.py").read_text()
    tests_in = {
        section: re.findall(
            r"^def (test_\w+)", source.split(f"[start:{section}]")[1].split(f"[end:{section}]")[0], re.M
        )
        for section in included
    }
    shown = [name for names in tests_in.values() for name in names]
    assert len(shown) == 5 and sorted(shown) == MARBLE_TESTS
    html = (site / "testing" / "index.html").read_text()
    for name in shown:
        assert name in html, f"{name} is not on the built testing page"


@pytest.mark.parametrize("name", MARBLE_TESTS)
def test_marble_example_passes(name: str) -> None:
    test: Callable[[], None] = getattr(marble_examples, name)
    test()


def test_every_public_name_is_in_the_reference(site: Path) -> None:
    index = (DOCS / "reference" / "index.md").read_text()
    html = "".join(p.read_text() for p in (site / "reference").rglob("index.html"))
    for name in rxstore.__all__:
        target = f"{getattr(rxstore, name).__module__}.{name}"
        assert f"[`{name}`][{target}]" in index, f"{name} is missing from docs/reference/index.md"
        assert f'id="{target}"' in html, f"{target} has no entry in the built reference"
