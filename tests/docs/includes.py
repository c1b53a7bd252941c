"""Pages show the example files' sections inline, so that they read right on a code host too.

A page marks a code block as a copy of a section of ``docs/examples/<file>`` with an HTML comment
(invisible on the site and on a code host) on the line before it::

    <!-- include: quickstart.py:store -->
    ```python
    ...the lines between "# --8<-- [start:store]" and "# --8<-- [end:store]", dedented...
    ```

The example files are what runs (tests/docs); ``python -m tests.docs.includes`` copies every
marked section into its pages again after an example changed, and
tests/docs/test_includes.py fails while a copy differs.
"""

from __future__ import annotations

import re
import sys
import textwrap
from pathlib import Path

from tests.docs import DOCS, EXAMPLES

MARKED = re.compile(
    r"^<!-- include: (?P<file>[\w.]+):(?P<section>\w+) -->\n```(?P<language>\w+)\n(?P<code>.*?)^```$",
    re.MULTILINE | re.DOTALL,
)
"""A marked block: the comment naming file and section, then the fenced copy."""

SNIPPET = re.compile(r'^```(?P<language>\w+)\n--8<-- "(?P<file>[\w.]+):(?P<section>\w+)"\n```$', re.MULTILINE)
"""A block that only names its section (pymdownx.snippets' form): shown as is on a code host."""


def section(file: str, name: str) -> str:
    """The lines of section ``name`` of ``docs/examples/<file>``, dedented, ending in a newline."""
    source = (EXAMPLES / file).read_text()
    start, end = f"# --8<-- [start:{name}]\n", f"# --8<-- [end:{name}]"
    if start not in source or end not in source:
        raise LookupError(f"docs/examples/{file} has no section {name!r} (# --8<-- [start:{name}])")
    body = source.split(start, 1)[1].split(end, 1)[0]
    body = "\n".join(line for line in body.splitlines() if not line.lstrip().startswith("# --8<-- ["))
    return textwrap.dedent(body).rstrip("\n") + "\n"


def marked(match: re.Match[str]) -> str:
    """The marked block of ``match``'s file and section, with the section's current lines."""
    file, name, language = match["file"], match["section"], match["language"]
    return f"<!-- include: {file}:{name} -->\n```{language}\n{section(file, name)}```"


def rewritten(text: str) -> str:
    """``text`` with every marked or snippet-only block holding its section's current lines."""
    return MARKED.sub(marked, SNIPPET.sub(marked, text))


def pages() -> list[Path]:
    """Every Markdown page of the documentation."""
    return sorted(DOCS.rglob("*.md"))


def main() -> int:
    """Rewrite the pages whose copies differ from their sections; print each one."""
    changed = 0
    for page in pages():
        text = page.read_text()
        new = rewritten(text)
        if new != text:
            page.write_text(new)
            changed += 1
            print(f"updated {page.relative_to(DOCS.parent)}")
    print(f"{changed} page(s) updated" if changed else "every included block is up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
