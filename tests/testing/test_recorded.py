"""rxstore.testing's recordings print as the diagrams were written: ticks as integers, values as ``repr``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from reactivex.notification import OnCompleted, OnError, OnNext
from reactivex.testing.recorded import Recorded

from rxstore.testing import marbles, on_next
from rxstore.testing.recorded import Marble

FAILING = """
from rxstore.testing import marbles


def test_late() -> None:
    with marbles() as m:
        seen = m.record(m.hot("-a-b", {"a": 1, "b": "two"}))
        m.run()
    assert seen == m.expected("-a--b", {"a": 1, "b": "two"})
"""


def test_a_recording_and_an_expectation_print_ticks_and_values_as_written() -> None:
    with marbles() as m:
        seen = m.record(m.hot("-a-b|", {"a": 1, "b": "two"}))
        m.run()
        expected = m.expected("-a--b", {"a": 1, "b": "two"})
    assert repr(seen) == "[OnNext(1)@1, OnNext('two')@3, OnCompleted()@4]"
    assert repr(expected) == "[OnNext(1)@1, OnNext('two')@4]"


def test_times_print_in_ticks_of_the_timespan() -> None:
    """With ``marbles(timespan=10)`` a recording at virtual time 30 is tick 3; 15 is tick 1.5."""
    with marbles(timespan=10) as m:
        seen = m.record(m.cold("-a-b"))
        m.scheduler.schedule_absolute(15, lambda *_: None)
        m.run()
    assert repr(seen) == "[OnNext('a')@1, OnNext('b')@3]"
    assert str(Marble(15, OnNext(None), 10)) == "OnNext(None)@1.5"
    assert str(Marble(2, OnError(ValueError("bad")))) == "OnError(ValueError('bad'))@2"


def test_marbles_equal_reactivex_recordings_of_the_same_time_and_notification() -> None:
    assert Marble(2.0, OnNext(1)) == Recorded(2, OnNext(1)) == on_next(2, 1)
    assert Marble(2, OnCompleted(), timespan=5) == Recorded(2, OnCompleted())
    assert Marble(2, OnNext(1)) != Marble(3, OnNext(1)) and Marble(2, OnNext(1)) != Marble(2, OnNext(2))


def test_a_failing_marble_assertion_shows_the_ticks_the_test_wrote(tmp_path: Path) -> None:
    """pytest's message for a value one tick late: ``OnNext('two')@3 != OnNext('two')@4``, not
    reactivex's floats (``OnNext(two)@3.0 != OnNext(two)@4``)."""
    test = tmp_path / "test_late.py"
    test.write_text(FAILING)
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:randomly", str(test)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert run.returncode == 1, run.stdout
    assert "At index 1 diff: OnNext('two')@3 != OnNext('two')@4" in run.stdout, run.stdout
    assert "@3.0" not in run.stdout and "OnNext(1.0)" not in run.stdout
