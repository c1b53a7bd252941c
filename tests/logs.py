"""Helpers for tests of the DEBUG lines: the lines a logger wrote, the records made, what was formatted."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any

import pytest


def debug_lines(caplog: pytest.LogCaptureFixture, logger: str) -> list[str]:
    """The DEBUG messages of ``logger`` and of the loggers below it, caught so far, in order."""
    below = logger + "."
    return [
        record.getMessage()
        for record in caplog.records
        if record.levelno == logging.DEBUG and (record.name == logger or record.name.startswith(below))
    ]


@contextlib.contextmanager
def debug_records_made(logger: str = "rxstore") -> Iterator[list[logging.LogRecord]]:
    """The DEBUG records made inside the block by ``logger`` and below (the record factory sees each)."""
    made: list[logging.LogRecord] = []
    factory = logging.getLogRecordFactory()
    below = logger + "."

    def counting(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = factory(*args, **kwargs)
        if record.levelno == logging.DEBUG and (record.name == logger or record.name.startswith(below)):
            made.append(record)
        return record

    logging.setLogRecordFactory(counting)
    try:
        yield made
    finally:
        logging.setLogRecordFactory(factory)


class Counted(str):
    """A string that counts how often it is formatted into text (``%s``, ``str()``)."""

    formatted = 0

    def __str__(self) -> str:
        Counted.formatted += 1
        return str.__str__(self)
