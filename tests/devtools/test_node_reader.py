"""NodeReader against real nodes on 127.0.0.1: a gateway's /healthz and /metrics, and nodes that fail."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from rxstore.devtools.node_reader import NodeReader, parse_metrics
from rxstore.gateway import open_change_log
from rxstore.gateway.demo import Post, save_post
from rxstore.gateway.server import RealtimeGateway
from tests.gateway.harness import AUTH, root_for, start_gateway
from tests.services import closed_port
from tests.waiting import wait_for

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def plain_server(routes: dict[str, Handler]) -> web.AppRunner:
    """A real aiohttp server on 127.0.0.1 with ``routes`` (not a gateway)."""
    app = web.Application()
    for path, handler in routes.items():
        app.router.add_get(path, handler)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    return runner


def url_of(runner: web.AppRunner) -> str:
    host, port = runner.addresses[0][:2]
    return f"http://{host}:{port}"


async def test_a_gateway_reads_as_ok_with_its_metrics_and_counter_rates(tmp_path: Path, http) -> None:
    """A gateway with one client: status ok, its clients and head seq from /metrics and /healthz; the
    second read's rate of a counter times the time between the reads is the counter's increase."""
    gateway = await start_gateway(f"sqlite:///{tmp_path}/app.db")
    root, posts = root_for(gateway)
    reader = NodeReader(gateway.url + "/")
    try:
        async with root:
            await root.live()
            first = await reader.read(http)
            assert first.status == "ok" and first.error is None and first.rates == {}
            assert first.value("rxstore_connected_clients") == 1 and first.health["clients"] == 1
            assert first.url == gateway.url and "rxstore_events_sent" in first.values
            for n in range(3):
                await save_post(gateway.log, Post(id=f"p{n}", title="t"))
            await wait_for(lambda: len(posts.value) == 3, what="the client has the changes")
            second = await reader.read(http)
        sent = second.values["rxstore_events_sent"] - first.values["rxstore_events_sent"]
        assert sent == 3 and second.health["head"] == second.value("rxstore_head_seq")
        assert second.rates["rxstore_events_sent"] * (second.at - first.at) == pytest.approx(sent)
        assert second.rate("rxstore_connected_clients") is None  # a gauge has no rate
    finally:
        await gateway.stop()


async def test_a_restarted_node_gives_no_rate_for_counters_that_went_back(tmp_path: Path, http) -> None:
    """The counters of a node restarted between two reads are lower: no rate, rather than a negative one."""
    url = f"sqlite:///{tmp_path}/app.db"
    gateway = await start_gateway(url)
    await save_post(gateway.log, Post(id="p1", title="t"))
    reader = NodeReader(gateway.url)
    reads = []

    async def broadcast() -> bool:
        reads.append(await reader.read(http))
        return reads[-1].value("rxstore_changes") == 1

    await wait_for(broadcast, what="the change broadcast")
    before = reads[-1]
    port = gateway.port
    await gateway.stop()
    gateway = RealtimeGateway(open_change_log(url), topics=["posts"], auth=AUTH)
    await gateway.start(port=port)
    try:
        after = await reader.read(http)
        assert before.value("rxstore_changes") == 1 and after.value("rxstore_changes") == 0
        assert after.status == "ok" and "rxstore_changes" not in after.rates
    finally:
        await gateway.stop()


async def test_a_closed_port_is_down_with_the_reason_and_no_rates_after(http) -> None:
    """Nothing listening: down, the connection error on one line; reading never raises."""
    sample = await NodeReader(f"http://127.0.0.1:{closed_port()}").read(http)
    assert sample.status == "down" and not sample.up and sample.values == {}
    assert sample.error and "\n" not in sample.error and "127.0.0.1" in sample.error


async def test_a_node_that_does_not_answer_in_time_is_down_after_the_timeout(http) -> None:
    """A server that accepts and never answers: down, 'no answer within' the timeout."""
    never = asyncio.Event()

    async def hang(request: web.Request) -> web.Response:
        await never.wait()
        return web.Response()

    runner = await plain_server({"/healthz": hang, "/metrics": hang})
    try:
        sample = await NodeReader(url_of(runner), timeout=0.2).read(http)
        assert sample.status == "down" and sample.error == "no answer within 0.2 s"
    finally:
        never.set()
        await runner.cleanup()


async def test_a_server_that_is_not_a_gateway_is_down_saying_what_it_answered(http) -> None:
    """No /healthz (404), or a /healthz that is not a JSON object (a list, a web page): down, and why."""

    async def text(request: web.Request) -> web.Response:
        return web.Response(text="[1, 2]")

    runner = await plain_server({"/metrics": text})
    try:
        sample = await NodeReader(url_of(runner)).read(http)
        assert sample.status == "down" and sample.error == "/healthz answered HTTP 404"
    finally:
        await runner.cleanup()

    async def html(request: web.Request) -> web.Response:
        return web.Response(text="<html>a web page</html>")

    for answer in (text, html):
        runner = await plain_server({"/healthz": answer, "/metrics": answer})
        try:
            sample = await NodeReader(url_of(runner)).read(http)
            assert sample.status == "down"
            assert sample.error == "/healthz did not answer a JSON object: not an rxstore gateway?"
        finally:
            await runner.cleanup()


async def test_a_503_health_is_unhealthy_with_its_body_and_metrics(http) -> None:
    """/healthz answering 503 (the log's database or Redis down): unhealthy, not down; metrics still read."""

    async def health(request: web.Request) -> web.Response:
        return web.json_response({"status": "unhealthy", "log": "down", "clients": 0}, status=503)

    async def metrics(request: web.Request) -> web.Response:
        return web.Response(text="# TYPE rxstore_log_healthy gauge\nrxstore_log_healthy 0.0\n")

    runner = await plain_server({"/healthz": health, "/metrics": metrics})
    try:
        sample = await NodeReader(url_of(runner)).read(http)
        assert sample.status == "unhealthy" and sample.up and sample.health["log"] == "down"
        assert sample.values == {"rxstore_log_healthy": 0.0}
    finally:
        await runner.cleanup()


def test_metrics_are_summed_over_labels_and_other_families_are_left_out() -> None:
    """Labelled samples add up under the family's name; *_created and non-rxstore families are skipped."""
    text = (
        "# TYPE rxstore_refused_total counter\n"
        'rxstore_refused_total{reason="invalid_token"} 2.0\n'
        'rxstore_refused_total{reason="bad_request"} 3.0\n'
        "# TYPE rxstore_refused_created gauge\n"
        'rxstore_refused_created{reason="bad_request"} 1.7e9\n'
        "# TYPE rxstore_queued_bytes gauge\nrxstore_queued_bytes 512.0\n"
        "# TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total 9.0\n"
    )
    assert parse_metrics(text) == (
        {"rxstore_refused": 5.0, "rxstore_queued_bytes": 512.0},
        {"rxstore_refused"},
    )


def test_a_timeout_must_be_positive() -> None:
    with pytest.raises(ValueError, match="timeout must be > 0"):
        NodeReader("http://x", timeout=0)
