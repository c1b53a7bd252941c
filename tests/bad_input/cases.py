"""How many cases each bad-input property ran, and the hypothesis settings they use.

Each property calls :func:`ran` once per example (and may count the inputs it
threw, e.g. frames per example). ``conftest.py`` prints the table at the end of
the session and, when ``RXSTORE_BADINPUT_RESULTS`` is set, writes it as JSON:
``1``/``true`` writes ``tests/bad_input/cases.json``, any other value is a path.

``RXSTORE_HYPOTHESIS_EXAMPLES`` scales every property's example budget: it is
the budget of the largest property (the default run uses 200), the others keep
their proportion, and never fewer than their default.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, settings

__all__ = ["RESULTS", "examples", "ran", "results_path", "summary_lines", "write_results"]

_DEFAULT_LARGEST = 200


class _Results:
    """Per property: examples run and inputs thrown (thread-safe: the gateway runs on a loop thread)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.examples: dict[str, int] = {}
        self.inputs: dict[str, int] = {}
        self.started = time.monotonic()

    def add(self, prop: str, inputs: int) -> None:
        with self.lock:
            self.examples[prop] = self.examples.get(prop, 0) + 1
            self.inputs[prop] = self.inputs.get(prop, 0) + inputs

    def as_dict(self) -> dict[str, Any]:
        with self.lock:
            props = {
                name: {"examples": self.examples[name], "inputs": self.inputs[name]}
                for name in sorted(self.examples)
            }
        return {
            "properties": props,
            "total_examples": sum(p["examples"] for p in props.values()),
            "total_inputs": sum(p["inputs"] for p in props.values()),
            "seconds": round(time.monotonic() - self.started, 1),
            "hypothesis_examples_env": os.environ.get("RXSTORE_HYPOTHESIS_EXAMPLES"),
        }


RESULTS = _Results()


def ran(prop: str, inputs: int = 1) -> None:
    """Count one example of property ``prop`` that threw ``inputs`` bad or mixed inputs."""
    RESULTS.add(prop, inputs)


def _scale(default: int) -> int:
    raw = os.environ.get("RXSTORE_HYPOTHESIS_EXAMPLES")
    if not raw:
        return default
    try:
        largest = int(raw)
    except ValueError:
        raise ValueError(f"RXSTORE_HYPOTHESIS_EXAMPLES must be an integer, got {raw!r}") from None
    return max(default, default * largest // _DEFAULT_LARGEST)


def examples(default: int, **overrides: Any) -> settings:
    """Hypothesis settings for a property whose bounded default budget is ``default`` examples."""
    options: dict[str, Any] = {
        "max_examples": _scale(default),
        "deadline": None,
        "suppress_health_check": [
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.large_base_example,
            HealthCheck.function_scoped_fixture,
            HealthCheck.filter_too_much,
        ],
        "print_blob": True,
    }
    options.update(overrides)
    return settings(**options)


def results_path() -> Path | None:
    """Where to write the JSON results, or ``None`` when ``RXSTORE_BADINPUT_RESULTS`` is unset."""
    raw = os.environ.get("RXSTORE_BADINPUT_RESULTS")
    if not raw:
        return None
    if raw.lower() in {"1", "true", "yes"}:
        return Path(__file__).with_name("cases.json")
    return Path(raw)


def summary_lines() -> Iterable[str]:
    """The table printed at the end of the session."""
    data = RESULTS.as_dict()
    props = data["properties"]
    if not props:
        return
    width = max(len(name) for name in props)
    yield f"{'property':<{width}}  {'examples':>8}  {'inputs':>8}"
    for name, counts in props.items():
        yield f"{name:<{width}}  {counts['examples']:>8}  {counts['inputs']:>8}"
    yield (
        f"{'total':<{width}}  {data['total_examples']:>8}  {data['total_inputs']:>8}"
        f"   ({data['total_examples']} cases ran)"
    )


def write_results() -> Path | None:
    """Write the counts as JSON if asked to; return the path written."""
    path = results_path()
    if path is None or not RESULTS.examples:
        return None
    path.write_text(json.dumps(RESULTS.as_dict(), indent=2, sort_keys=True) + "\n")
    return path
