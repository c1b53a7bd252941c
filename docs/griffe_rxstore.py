"""Griffe extension used by the API reference (mkdocs.yml): rxstore's docstrings, as Markdown.

The docstrings are Google style with two habits of Sphinx projects, read
here without changing the source:

- ``Example:`` (singular) becomes an ``Examples:`` section, so its ``>>>``
  lines render as code (griffe would otherwise read it as an admonition),
  and ``Class attributes:`` an ``Attributes:`` section (a table).
- ``:class:`~rxstore.client.root.RootStore``` and friends become links to the
  reference when the target is documented (public, with a docstring), and
  inline code otherwise.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import griffe

_EXAMPLE = re.compile(r"^(\s*)Example:[ \t]*$", re.MULTILINE)
_CLASS_ATTRIBUTES = re.compile(r"^(\s*)Class attributes:[ \t]*$", re.MULTILINE)
_ROLE = re.compile(r":(?:class|meth|attr|func|data|mod|exc|obj):`(~?)([\w.]+)`")


class RxstoreDocstrings(griffe.Extension):
    """Rewrites every docstring of the loaded package once it is loaded."""

    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        for obj in _walk(pkg):
            docstring = obj.docstring
            if docstring is not None:
                docstring.value = markdown_docstring(docstring.value, obj)


def markdown_docstring(text: str, obj: griffe.Object) -> str:
    """Return ``text`` with the sections renamed and Sphinx roles as autorefs."""
    text = _EXAMPLE.sub(r"\1Examples:", text)
    text = _CLASS_ATTRIBUTES.sub(r"\1Attributes:", text)

    def replace(match: re.Match[str]) -> str:
        short, target = match.group(1) == "~", match.group(2)
        label = target.rsplit(".", 1)[-1] if short else target
        path = _resolve(target, obj)
        return f"[`{label}`][{path}]" if path else f"`{label}`"

    return _ROLE.sub(replace, text)


def _walk(obj: griffe.Object) -> Iterator[griffe.Object]:
    yield obj
    for member in obj.members.values():
        if not member.is_alias:
            yield from _walk(member)  # type: ignore[arg-type]


def _resolve(target: str, obj: griffe.Object) -> str | None:
    """The documented object ``target`` names, seen from ``obj``; ``None`` if there is none."""
    candidates = [target] if target.startswith("rxstore.") else []
    scope: Any = obj
    while scope is not None:
        if scope.is_class or scope.is_module:
            candidates.append(f"{scope.path}.{target}")
        scope = scope.parent
    for path in candidates:
        try:
            found: Any = obj.modules_collection[path]
        except (KeyError, ValueError, griffe.AliasResolutionError, griffe.CyclicAliasError):
            continue
        if found.is_alias:
            try:
                found = found.final_target
            except (griffe.AliasResolutionError, griffe.CyclicAliasError):
                continue
        public = not any(part.startswith("_") for part in found.path.split("."))
        return str(found.path) if public and found.docstring is not None else None
    return None
