"""OpenTelemetry: a span per API call and per bulk job, metrics for calls, retries, 429s,
outcomes and calls in flight; no secret in any attribute; nothing when the API is absent.
Read back with the SDK's in-memory span exporter and metric reader."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import aclosing
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from emulator_support import client_for
from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from iris360_async import Iris360Client, NotFoundError, _otel
from iris360_async._retry import ManualClock
from iris360_async.testing import Iris360Emulator

EXPORTER = InMemorySpanExporter()
READER = InMemoryMetricReader()


@pytest.fixture(scope="module", autouse=True)
def providers() -> Iterator[None]:
    """The SDK providers, installed once per process (OpenTelemetry allows one); the
    exporter stops keeping spans after this module."""
    if not isinstance(trace.get_tracer_provider(), TracerProvider):
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(EXPORTER))
        trace.set_tracer_provider(provider)
        metrics.set_meter_provider(MeterProvider(metric_readers=[READER]))
    yield
    EXPORTER.clear()
    EXPORTER.shutdown()


@pytest.fixture(autouse=True)
def spans() -> InMemorySpanExporter:
    EXPORTER.clear()  # metrics are cumulative: tests compare before and after
    return EXPORTER


def points(name: str) -> list[tuple[dict[str, Any], float]]:
    """``(attributes, value)`` of every data point of the metric ``name`` so far."""
    data = READER.get_metrics_data()
    out: list[tuple[dict[str, Any], float]] = []
    if data is None:
        return out
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                if metric.name == name:
                    for point in metric.data.data_points:
                        value = getattr(point, "value", None)
                        if value is None:
                            value = point.count  # type: ignore[union-attr]
                        out.append((dict(point.attributes or {}), value))
    return out


def total(name: str, **match: Any) -> float:
    return sum(
        value for attrs, value in points(name)
        if all(attrs.get(k) == v for k, v in match.items())
    )


def all_attribute_text(finished: tuple[ReadableSpan, ...]) -> str:
    return " ".join(
        f"{key}={value}" for span in finished for key, value in (span.attributes or {}).items()
    ) + " ".join(span.name for span in finished)


@pytest.fixture
async def flaky() -> AsyncIterator[tuple[str, list[int]]]:
    """A server answering ``/connectors/out/{id}`` with the statuses in its queue, then 200."""
    queue: list[int] = []

    async def handler(request: web.Request) -> web.Response:
        status = queue.pop(0) if queue else 200
        if status == 200:
            return web.json_response({"id": int(request.match_info["id"]), "type": "mqtt"})
        headers = {"Retry-After": "0"} if status == 429 else {}
        return web.json_response({"message": "no"}, status=status, headers=headers)

    app = web.Application()
    app.router.add_get("/api/public/v1/connectors/out/{id}", handler)
    async with TestServer(app, host="127.0.0.1") as server:
        yield str(server.make_url("")).rstrip("/"), queue


def client(url: str, **kw: Any) -> Iris360Client:
    return Iris360Client._with_hooks(url, token="tok-1", clock=ManualClock(), environ={}, **kw)


async def test_one_span_per_call_with_route_status_and_attempts(
    flaky: tuple[str, list[int]], spans: InMemorySpanExporter
) -> None:
    url, queue = flaky
    requests_before = total("iris360.client.requests", **{"url.template": "/connectors/out/{id}"})
    async with client(url) as iris:
        await iris.connectors.out.get(7)
        queue.extend([503, 429])
        await iris.connectors.out.get(8)
    first, second = spans.get_finished_spans()
    assert first.name == "GET /connectors/out/{id}"
    assert first.kind is trace.SpanKind.CLIENT
    attrs = dict(first.attributes or {})
    assert attrs["http.request.method"] == "GET"
    assert attrs["url.template"] == "/connectors/out/{id}"
    assert attrs["http.response.status_code"] == 200
    assert attrs["iris360.request_sent"] is True
    assert (attrs["iris360.attempts"], attrs["iris360.retries"]) == (1, 0)
    attrs = dict(second.attributes or {})
    assert (attrs["iris360.attempts"], attrs["iris360.retries"]) == (3, 2)
    assert attrs["http.request.resend_count"] == 2
    template = {"url.template": "/connectors/out/{id}"}
    assert total("iris360.client.requests", **template) - requests_before == 2
    assert total("iris360.client.retries", **template) >= 2
    assert total("iris360.client.rate_limited", **template) >= 1
    assert total("iris360.client.requests.in_flight", **template) == 0  # all ended
    assert total("iris360.client.request.duration", **template) >= 2  # histogram count


async def test_a_failed_call_marks_its_span(
    flaky: tuple[str, list[int]], spans: InMemorySpanExporter
) -> None:
    url, queue = flaky
    queue.append(404)
    async with client(url) as iris:
        with pytest.raises(NotFoundError):
            await iris.connectors.out.get(1)
    [span] = spans.get_finished_spans()
    assert span.status.status_code is StatusCode.ERROR
    attrs = dict(span.attributes or {})
    assert attrs["error.type"] == "NotFoundError"
    assert attrs["http.response.status_code"] == 404
    assert total("iris360.client.requests", **{"error.type": "NotFoundError"}) >= 1


async def test_a_bulk_job_has_a_span_with_its_counts_and_its_calls_as_children(
    iris360_emulator: Iris360Emulator, spans: InMemorySpanExporter
) -> None:
    emu = iris360_emulator
    serials = [*list(emu.fleet.serials)[:50], "NO-SUCH-SERIAL"]
    sent_before = total("iris360.bulk.outcomes", **{"iris360.outcome": "sent"})
    async with client_for(emu) as iris:
        report = await iris.devices.send_commands(
            serials, {"w_ota": True}, chunk_size=10, concurrency=2
        )
    finished = spans.get_finished_spans()
    [job] = [s for s in finished if s.name == "iris360.bulk_job"]
    attrs = dict(job.attributes or {})
    for status, count in report.counts.items():
        assert attrs[f"iris360.bulk.{status}"] == count
    assert attrs["iris360.bulk.chunks"] == report.chunks == 6
    assert attrs["iris360.bulk.total"] == 51
    assert attrs["iris360.bulk.refreshes"] == 0
    calls = [s for s in finished if s.name == "POST /devices/sendCommandsBulk"]
    assert len(calls) == 6
    assert all(s.parent is not None for s in calls)
    assert {s.parent.span_id for s in calls if s.parent} == {job.context.span_id}
    sent = total("iris360.bulk.outcomes", **{"iris360.outcome": "sent"}) - sent_before
    assert sent == report.counts["sent"] > 0
    text = all_attribute_text(finished)
    assert emu.password not in text


async def test_a_streamed_job_has_its_span_too(
    iris360_emulator: Iris360Emulator, spans: InMemorySpanExporter
) -> None:
    emu = iris360_emulator
    serials = list(emu.fleet.serials)[:30]
    async with client_for(emu) as iris:
        seen = [o async for o in iris.devices.stream_commands(serials, {"w_ota": True},
                                                               chunk_size=10)]
    assert len(seen) == 30
    finished = spans.get_finished_spans()
    [job] = [s for s in finished if s.name == "iris360.bulk_job"]
    assert dict(job.attributes or {})["iris360.bulk.chunks"] == 3
    calls = [s for s in finished if s.name == "POST /devices/sendCommandsBulk"]
    assert calls
    assert all(s.parent is not None for s in calls)
    assert {s.parent.span_id for s in calls if s.parent} == {job.context.span_id}


async def test_leaving_a_streamed_job_early_ends_its_span_without_error(
    iris360_emulator: Iris360Emulator, spans: InMemorySpanExporter
) -> None:
    emu = iris360_emulator
    async with client_for(emu) as iris:
        stream = iris.devices.stream_commands(list(emu.fleet.serials), {"w_ota": True},
                                              chunk_size=5, concurrency=1)
        async with aclosing(stream):
            async for _ in stream:
                break
    [job] = [s for s in spans.get_finished_spans() if s.name == "iris360.bulk_job"]
    assert job.status.status_code is not StatusCode.ERROR
    assert "error.type" not in (job.attributes or {})


async def test_login_spans_hold_no_secret(
    iris360_emulator: Iris360Emulator, spans: InMemorySpanExporter
) -> None:
    emu = iris360_emulator
    async with client_for(emu) as iris:
        await iris.entities.latest(f"urn:ngsi-ld:Device:{next(iter(emu.fleet.serials))}")
        token = iris._transport.tokens.current_token()
    finished = spans.get_finished_spans()
    assert {s.name for s in finished} >= {"POST /login", "GET /last-data/entities/{urn}"}
    text = all_attribute_text(finished)
    assert token is not None
    assert token not in text
    assert emu.password not in text
    assert emu.username not in text


async def test_without_instruments_nothing_is_recorded(
    flaky: tuple[str, list[int]], spans: InMemorySpanExporter, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_otel, "INSTRUMENTS", None)
    url, _ = flaky
    async with client(url) as iris:
        await iris.connectors.out.get(7)
    assert spans.get_finished_spans() == ()


def test_the_package_works_without_opentelemetry() -> None:
    script = (
        "import sys; sys.modules['opentelemetry'] = None\n"
        "import iris360_async\n"
        "from iris360_async import _otel\n"
        "assert _otel.INSTRUMENTS is None\n"
        "print('ok')\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.stdout.strip() == "ok", done.stderr
