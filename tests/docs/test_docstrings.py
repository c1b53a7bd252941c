"""Every public name has a Google-style docstring with an example, as the API reference shows it."""

from __future__ import annotations

import inspect
import re

import pytest

import rxstore
import rxstore.gateway

SECTION = re.compile(r"^(?P<title>[A-Z][A-Za-z ]*):[ \t]*$")
GOOGLE_SECTIONS = {
    "Args",
    "Arguments",
    "Attributes",
    "Example",
    "Examples",
    "Marble",
    "Note",
    "Raises",
    "Returns",
    "Class attributes",
    "Yields",
}


def sections(doc: str) -> dict[str, list[str]]:
    """The docstring's top-level sections: title -> its (indented) lines."""
    found: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in doc.splitlines()[1:]:
        match = SECTION.match(line)
        if match:
            current = found.setdefault(match["title"], [])
        elif current is not None and (line.startswith("    ") or not line.strip()):
            current.append(line)
        elif line.strip():
            current = None
    return found


def problems(name: str) -> list[str]:
    doc = inspect.getdoc(getattr(rxstore, name))
    if not doc:
        return ["no docstring"]
    found: list[str] = []
    summary = doc.splitlines()[0]
    if not summary.strip() or not summary.rstrip().endswith("."):
        found.append(f"the summary line should be one sentence ending with '.': {summary!r}")
    if len(doc.splitlines()) > 1 and doc.splitlines()[1].strip():
        found.append("a blank line should follow the summary")
    parsed = sections(doc)
    unknown = set(parsed) - GOOGLE_SECTIONS
    if unknown:
        found.append(f"unknown sections {sorted(unknown)}")
    example = parsed.get("Example", []) + parsed.get("Examples", [])
    if not any(line.strip() for line in example):
        found.append("no 'Example:' section with an indented example under it")
    return found


@pytest.mark.parametrize("name", rxstore.__all__)
def test_public_name_has_a_google_docstring_with_an_example(name: str) -> None:
    assert problems(name) == []


def test_the_check_fails_without_an_example() -> None:
    class Undocumented:
        """Summary line.

        Args:
            x: Something.
        """

    rxstore.Undocumented = Undocumented  # type: ignore[attr-defined]
    try:
        assert problems("Undocumented") == ["no 'Example:' section with an indented example under it"]
    finally:
        del rxstore.Undocumented  # type: ignore[attr-defined]


def test_the_reference_renders_each_example_as_an_examples_section() -> None:
    """With the docs' griffe extension, each public docstring parses to an examples section."""
    griffe = pytest.importorskip("griffe", reason="griffe comes with mkdocstrings: pip install -e '.[docs]'")
    from tests.docs import DOCS, PROJECT, load_from

    extension = load_from(DOCS / "griffe_rxstore.py").RxstoreDocstrings
    package = griffe.load(
        "rxstore", search_paths=[str(PROJECT)], extensions=griffe.load_extensions(extension)
    )
    missing = []
    for name in rxstore.__all__:
        parsed = package[name].docstring.parse("google")
        if not any(section.kind.value == "examples" for section in parsed):
            missing.append(name)
    assert missing == []
