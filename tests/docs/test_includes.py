"""Each page's copy of an example section is current, and no page leaves one to a build step."""

from __future__ import annotations

import pytest

from tests.docs import DOCS
from tests.docs.includes import MARKED, pages, rewritten, section

FIX = "python -m tests.docs.includes"
PAGES = [str(page.relative_to(DOCS)) for page in pages()]


@pytest.mark.parametrize("name", PAGES)
def test_every_included_block_equals_its_section(name: str) -> None:
    """A page reads on a code host as on the site: each marked block is its section, as it is now."""
    text = (DOCS / name).read_text()
    assert "--8<--" not in text, f"docs/{name} includes a snippet at build time: {FIX}"
    assert rewritten(text) == text, f"docs/{name} shows an old copy of an example: {FIX}"


def test_the_pages_include_sections_of_the_examples() -> None:
    """The examples are shown (the quickstart's store at least), so the check above checks something."""
    included = {(m["file"], m["section"]) for page in pages() for m in MARKED.finditer(page.read_text())}
    assert ("quickstart.py", "store") in included
    assert all(section(file, name) for file, name in included)


def test_a_stale_copy_is_rewritten_from_its_section() -> None:
    stale = '<!-- include: quickstart.py:store -->\n```python\nprint("old")\n```'
    fresh = rewritten(stale)
    assert 'print("old")' not in fresh and section("quickstart.py", "store") in fresh
    assert rewritten('```python\n--8<-- "quickstart.py:store"\n```') == fresh
