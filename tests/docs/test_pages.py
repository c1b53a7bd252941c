"""The Python on each documentation page runs as shown, in order, one namespace per page.

Blocks copied from docs/examples are shown inline (tests/docs/includes.py). Functions
named ``test_*`` that a block defines are called after the block (async ones
awaited, with a fresh ``tmp_path`` if they ask for one), so a page's example
tests pass.
"""

from __future__ import annotations

import importlib
import inspect
import logging
import re
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.docs import DOCS

BLOCK = re.compile(r"^(?P<indent> *)```python\n(?P<code>.*?)^(?P=indent)```", re.MULTILINE | re.DOTALL)
PAGES = sorted(str(page.relative_to(DOCS)) for page in DOCS.rglob("*.md") if BLOCK.search(page.read_text()))


def python_of(page: Path) -> list[str]:
    blocks = []
    for match in BLOCK.finditer(page.read_text()):
        indent = len(match["indent"])
        code = "\n".join(line[indent:] for line in match["code"].splitlines())
        blocks.append(code)
    return blocks


def test_the_guide_pages_have_python_to_run() -> None:
    for page in ("index.md", "concepts.md", "stores.md", "testing.md", "gateway.md", "migrating.md"):
        assert page in PAGES


@pytest.fixture
def logging_as_before() -> Iterator[None]:
    """Every logger's level and the root's handlers put back after a page that sets them."""
    loggers = [
        logging.getLogger(),
        *(each for each in logging.Logger.manager.loggerDict.values() if isinstance(each, logging.Logger)),
    ]
    levels = {logger: logger.level for logger in loggers}
    handlers = list(logging.getLogger().handlers)
    yield
    for logger in logging.Logger.manager.loggerDict.values():
        if isinstance(logger, logging.Logger):
            logger.setLevel(levels.get(logger, logging.NOTSET))
    logging.getLogger().setLevel(levels[logging.getLogger()])
    logging.getLogger().handlers[:] = handlers


@pytest.mark.parametrize("page", PAGES)
@pytest.mark.usefixtures("logging_as_before")
async def test_python_on_the_page_runs(page: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A real module, so that attrs and cattrs can resolve the page's annotations.
    module = types.ModuleType(f"docs_page_{Path(page).stem}")
    namespace: dict[str, Any] = module.__dict__
    monkeypatch.setitem(sys.modules, module.__name__, module)
    for number, code in enumerate(python_of(DOCS / page), 1):
        before = set(namespace)
        exec(compile(code, f"{page}#python-block-{number}", "exec", dont_inherit=True), namespace)
        for name in sorted(set(namespace) - before):  # run the block's tests before the next block
            value = namespace[name]
            if not name.startswith("test_") or not inspect.isfunction(value):
                continue
            kwargs = {}
            if "tmp_path" in inspect.signature(value).parameters:
                kwargs["tmp_path"] = tmp_path / name
                kwargs["tmp_path"].mkdir()
            result = value(**kwargs)
            if inspect.isawaitable(result):
                await result


def documented_default(page: str, option: str) -> str:
    """The default column of the ``| `option` | default | ... |`` row of a page's table."""
    match = re.search(rf"^\| `{option}` \| (?P<default>[^|]+) \|", (DOCS / page).read_text(), re.MULTILINE)
    assert match, f"{page} has no table row for {option!r}"
    return match["default"].strip()


@pytest.mark.parametrize(
    ("cls", "option"),
    [
        ("rxstore.gateway.server.RealtimeGateway", "batch_size"),
        ("rxstore.gateway.server.RealtimeGateway", "client_queue_limit"),
        ("rxstore.gateway.server.RealtimeGateway", "serializer"),
        ("rxstore.gateway.server.RealtimeGateway", "cors_allowed_origins"),
        ("rxstore.client.root.RootStore", "outbox_limit"),
        ("rxstore.client.root.RootStore", "call_timeout"),
        ("rxstore.client.root.RootStore", "settle_after"),
    ],
)
def test_operations_tuning_tables_show_the_defaults_of_the_code(cls: str, option: str) -> None:
    module, name = cls.rsplit(".", 1)
    default = inspect.signature(getattr(importlib.import_module(module), name)).parameters[option].default
    shown = documented_default("operations.md", option)
    if isinstance(default, str):
        assert shown == f'`"{default}"`'
    else:
        assert float(shown.removesuffix(" s").replace(" ", "")) == default
