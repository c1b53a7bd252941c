"""Where the pilot tests save their screenshots: docs/img with RXSTORE_SCREENSHOTS=1, else a temp folder.

``RXSTORE_SCREENSHOTS=1 pytest tests/devtools -p no:randomly`` makes the pictures of docs/devtools.md again.
"""

from __future__ import annotations

import os
from pathlib import Path

DOCS_IMG = Path(__file__).parents[2] / "docs" / "img"


def screenshot_dir(tmp_path: Path) -> Path:
    """docs/img when ``RXSTORE_SCREENSHOTS=1`` is set, else ``tmp_path`` (the test still saves one)."""
    return DOCS_IMG if os.environ.get("RXSTORE_SCREENSHOTS") == "1" else tmp_path
