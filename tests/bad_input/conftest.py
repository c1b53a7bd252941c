"""Prints how many cases each bad-input property ran (and writes them as JSON on request)."""

from __future__ import annotations

from typing import Any

from tests.bad_input.cases import summary_lines, write_results


def pytest_terminal_summary(terminalreporter: Any) -> None:
    lines = list(summary_lines())
    if not lines:
        return
    terminalreporter.section("bad-input cases")
    for line in lines:
        terminalreporter.write_line(line)
    path = write_results()
    if path is not None:
        terminalreporter.write_line(f"written to {path}")
