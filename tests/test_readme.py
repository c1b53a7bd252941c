"""The README's examples run as written."""

from __future__ import annotations

import re
from pathlib import Path

README = (Path(__file__).parent.parent / "README.md").read_text()
BLOCKS = re.findall(r"```python\n(.*?)```", README, flags=re.S)


def test_readme_store_example_and_marble_test_run():
    assert len(BLOCKS) == 2
    namespace: dict = {}
    exec(compile(BLOCKS[0], "README.md#store", "exec"), namespace)
    exec(compile(BLOCKS[1], "README.md#marbles", "exec"), namespace)
    namespace["test_likes_count_each_like"]()
    assert namespace["PostStore"]().accepts == ("post_update",)


def test_readme_examples_are_short():
    assert len(BLOCKS[0].strip().splitlines()) <= 16
    assert len(BLOCKS[1].strip().splitlines()) <= 25
