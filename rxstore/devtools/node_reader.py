"""Reads a gateway node's ``/healthz`` and ``/metrics`` over HTTP, with counter rates between reads."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from rxstore.devtools.limits import TIMEOUT
from rxstore.devtools.node_sample import NodeSample

__all__ = ["NodeReader", "node_url", "parse_metrics"]

_PREFIX = "rxstore_"


class NodeReader:
    """Reads one node: its ``/healthz`` and ``/metrics`` (Prometheus text), as a :class:`NodeSample`.

    Rates are the counters' increase since this reader's previous read, per second.
    A node that does not answer, answers late or answers something else is a sample
    whose status is ``down`` with the reason: reading never raises for it.

    Args:
        url: The node's base URL (``http://host:port``; its ``/healthz`` and ``/metrics`` are read).
        timeout: Seconds one read may take.

    Example:
        ``async with aiohttp.ClientSession() as http: sample = await NodeReader(url).read(http)``
    """

    def __init__(self, url: str, *, timeout: float = TIMEOUT) -> None:
        if not timeout > 0:
            raise ValueError(f"timeout must be > 0 seconds, got {timeout!r}")
        self.url = node_url(url)
        self.timeout = timeout
        self._previous: NodeSample | None = None

    async def read(self, http: aiohttp.ClientSession) -> NodeSample:
        """Read the node now; a node down is a sample that says why."""
        at = time.monotonic()
        try:
            async with asyncio.timeout(self.timeout):
                status, health = await self._health(http)
                values, counters = await self._metrics(http)
        except (aiohttp.ClientError, OSError, TimeoutError, ValueError) as exc:
            sample = NodeSample(self.url, at, "down", error=_reason(exc, self.timeout))
        else:
            rates = self._rates(at, values, counters)
            sample = NodeSample(self.url, at, status, health=health, values=values, rates=rates)
        self._previous = sample
        return sample

    async def _health(self, http: aiohttp.ClientSession) -> tuple[str, Mapping[str, Any]]:
        async with http.get(f"{self.url}/healthz") as response:
            text = await response.text()
            if response.status not in (200, 503):
                raise ValueError(f"/healthz answered HTTP {response.status}")
        try:
            body = json.loads(text)
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise ValueError("/healthz did not answer a JSON object: not an rxstore gateway?")
        return ("ok" if response.status == 200 else "unhealthy"), body

    async def _metrics(self, http: aiohttp.ClientSession) -> tuple[dict[str, float], set[str]]:
        async with http.get(f"{self.url}/metrics") as response:
            if response.status != 200:
                raise ValueError(f"/metrics answered HTTP {response.status}")
            text = await response.text()
        return parse_metrics(text)

    def _rates(self, at: float, values: Mapping[str, float], counters: set[str]) -> dict[str, float]:
        before = self._previous
        if before is None or not before.up or at <= before.at:
            return {}
        elapsed = at - before.at
        rates: dict[str, float] = {}
        for name in counters:
            then, now = before.values.get(name), values[name]
            if then is not None and now >= then:  # lower: the node restarted, its counters with it
                rates[name] = (now - then) / elapsed
        return rates


def node_url(text: str) -> str:
    """A node's (or a gateway's) base URL: ``http://`` or ``https://`` and a host, without a trailing ``/``.

    Example:
        >>> node_url("http://10.0.0.1:8080/")
        'http://10.0.0.1:8080'
        >>> node_url("10.0.0.1:8080")
        Traceback (most recent call last):
        ValueError: '10.0.0.1:8080' is not an http(s) URL with a host, e.g. http://127.0.0.1:8080

    Raises:
        ValueError: It is not one.
    """
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{text!r} is not an http(s) URL with a host, e.g. http://127.0.0.1:8080")
    return text.rstrip("/")


def parse_metrics(text: str) -> tuple[dict[str, float], set[str]]:
    """The ``rxstore_*`` metrics of a Prometheus text, each summed over its labels, and the counters' names.

    Example:
        >>> text = '''# TYPE rxstore_refused_total counter
        ... rxstore_refused_total{reason="a"} 2.0
        ... rxstore_refused_total{reason="b"} 1.0
        ... rxstore_refused_created{reason="b"} 1.7e9
        ... '''
        >>> parse_metrics(text)
        ({'rxstore_refused': 3.0}, {'rxstore_refused'})
    """
    values: dict[str, float] = {}
    counters: set[str] = set()
    for family in text_string_to_metric_families(text):
        if not family.name.startswith(_PREFIX) or family.name.endswith("_created"):
            continue
        wanted = (family.name, f"{family.name}_total")
        total = [sample.value for sample in family.samples if sample.name in wanted]
        if not total:
            continue
        name = family.name.removesuffix("_total")
        values[name] = values.get(name, 0.0) + float(sum(total))
        if family.type == "counter":
            counters.add(name)
    return values, counters


def _reason(exc: BaseException, timeout: float) -> str:
    if isinstance(exc, TimeoutError):
        return f"no answer within {timeout:g} s"
    text = " ".join(str(exc).split())
    if isinstance(exc, ValueError) and not isinstance(exc, aiohttp.ClientError):
        return text[:200]  # ours: what the node answered
    return f"{type(exc).__name__}: {text}"[:200] if text else type(exc).__name__
