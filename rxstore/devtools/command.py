"""What ``rxstore inspect`` and ``rxstore top`` run: an app, until it is quit.

Textual is imported here only when a command runs: without it (``pip install
"rxstore[devtools]"``) the command line says so in one line.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import attrs

from rxstore.devtools.follower import Follower
from rxstore.devtools.table_spec import TableSpec

__all__ = ["run_inspect", "run_top"]


def run_inspect(
    url: str,
    *,
    token: str,
    tables: Iterable[TableSpec],
    keys: Mapping[str, str],
    frames: int,
    rows: int,
    interval: float,
) -> int:
    """Run the inspector on ``url`` until it is quit; returns the exit status (the app's: 1 if it failed).

    Args:
        url: The gateway.
        token: A token for it.
        tables: The tables and subsets to follow.
        keys: Table -> the column that identifies its rows, where it is not ``id``.
        frames: Most frames kept in the last-frames panel.
        rows: Most rows shown of the highlighted table.
        interval: Seconds between refreshes.

    Example:
        ``run_inspect("http://127.0.0.1:8080", token=t, tables=[TableSpec("posts")], keys={}, frames=200,
        rows=100, interval=0.5)``
    """
    from rxstore.devtools.inspect_app import InspectApp  # Textual: only for this command

    specs = [attrs.evolve(spec, key=keys.get(spec.table, spec.key)) for spec in tables]
    follower = Follower(url, token=token, tables=specs, frames=frames)
    app = InspectApp(follower, rows=rows, interval=interval)
    app.run()
    return app.return_code or 0


def run_top(urls: Iterable[str], *, interval: float, timeout: float) -> int:
    """Run ``top`` over the nodes ``urls`` until it is quit; returns the exit status (the app's).

    Example:
        ``run_top(["http://127.0.0.1:8080"], interval=1.0, timeout=2.0)``
    """
    from rxstore.devtools.top_app import TopApp  # Textual: only for this command

    app = TopApp(urls, interval=interval, timeout=timeout)
    app.run()
    return app.return_code or 0
