"""OpenTelemetry spans and metrics, when ``opentelemetry-api`` is installed (the ``otel`` extra).

:data:`INSTRUMENTS` is ``None`` when it is not: the request path then costs one global read and
nothing else. With the API but no SDK configured, OpenTelemetry's own no-op tracer and meter
take the calls. Attributes carry methods, route templates, statuses and counts only: never a
URL's query, a header, a body, a token or a password.

Spans: ``{method} {route}`` per API call (kind ``CLIENT``) and ``iris360.bulk_job`` per bulk
command job (the calls of the job are its children). Metrics: see :data:`METRICS`.
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, Callable, Mapping
from typing import TYPE_CHECKING, Any

from ._version import __version__
from .errors import APIConnectionError, APIStatusError, Iris360Error

if TYPE_CHECKING:
    from .models.bulk import CommandOutcome, CommandReport

try:
    from opentelemetry import context as _context
    from opentelemetry import metrics as _metrics
    from opentelemetry import trace as _trace
except ImportError:  # the otel extra is not installed
    _trace = None  # type: ignore[assignment]

__all__ = ["INSTRUMENTS", "METRICS", "BulkTrace", "Instruments", "RequestTrace", "traced_stream"]

SCOPE = "iris360_async"
"""The instrumentation scope name of the tracer and the meter."""

METRICS = {
    "iris360.client.requests": "API calls, by method, route and status (a call's retries "
    "are part of the call)",
    "iris360.client.retries": "attempts repeated after a retryable failure",
    "iris360.client.rate_limited": "429 answers",
    "iris360.client.requests.in_flight": "API calls in progress",
    "iris360.client.request.duration": "seconds per API call, retries included",
    "iris360.bulk.outcomes": "devices of bulk jobs, by outcome",
}
"""The metrics recorded, by name."""


def _error_attributes(exc: BaseException, attributes: dict[str, Any]) -> None:
    attributes["error.type"] = type(exc).__name__
    if isinstance(exc, APIStatusError):
        attributes["http.response.status_code"] = exc.status
    if isinstance(exc, APIConnectionError):
        attributes["iris360.request_sent"] = exc.request_sent
    elif isinstance(exc, Iris360Error) and exc.while_authenticating:
        attributes["iris360.request_sent"] = False


class RequestTrace:
    """The span and the metrics of one API call; :meth:`finish` ends them."""

    __slots__ = ("_attributes", "_instruments", "_span", "_started", "replays", "retries")

    def __init__(self, instruments: Instruments, method: str, route: str) -> None:
        self._instruments = instruments
        self._attributes: dict[str, Any] = {"http.request.method": method, "url.template": route}
        self._span = instruments.tracer.start_span(
            f"{method} {route}", kind=_trace.SpanKind.CLIENT, attributes=self._attributes
        )
        self._started = time.perf_counter()
        self.retries = 0
        self.replays = 0
        instruments.in_flight.add(1, self._attributes)

    def finish(self, status: int | None, exc: BaseException | None) -> None:
        """End the call: ``status`` of its 2xx answer, or the exception it raised."""
        instruments, span = self._instruments, self._span
        base = self._attributes
        instruments.in_flight.add(-1, base)
        attributes = dict(base)
        if status is not None:
            attributes["http.response.status_code"] = status
            attributes["iris360.request_sent"] = True
        if exc is not None:
            _error_attributes(exc, attributes)
        span.set_attributes(attributes)
        span.set_attributes(
            {
                "iris360.attempts": self.retries + self.replays + 1,
                "iris360.retries": self.retries,
                "iris360.replays": self.replays,
                "http.request.resend_count": self.retries + self.replays,
            }
        )
        if isinstance(exc, Exception):
            span.record_exception(exc)
            span.set_status(_trace.StatusCode.ERROR, type(exc).__name__)
        span.end()
        instruments.requests.add(1, attributes)
        if self.retries:
            instruments.retries.add(self.retries, base)
        instruments.duration.record(time.perf_counter() - self._started, attributes)


class BulkTrace:
    """The span of one bulk command job; :meth:`finish` records the report."""

    __slots__ = ("_instruments", "_refreshes", "span")

    def __init__(
        self, instruments: Instruments, attributes: Mapping[str, Any], refreshes: int
    ) -> None:
        self._instruments = instruments
        self._refreshes = refreshes
        self.span = instruments.tracer.start_span(
            "iris360.bulk_job", kind=_trace.SpanKind.INTERNAL, attributes=dict(attributes)
        )

    def finish(self, report: CommandReport, refreshes: int, exc: BaseException | None) -> None:
        """Counts per outcome, chunks and token refreshes onto the span; outcomes counted."""
        attributes: dict[str, Any] = {
            f"iris360.bulk.{status}": count for status, count in report.counts.items()
        }
        attributes.update(
            {
                "iris360.bulk.total": report.total,
                "iris360.bulk.chunks": report.chunks,
                "iris360.bulk.retried_chunks": report.retried_chunks,
                "iris360.bulk.requests": report.requests,
                "iris360.bulk.refreshes": refreshes - self._refreshes,
            }
        )
        if report.stopped_reason is not None:
            attributes["iris360.bulk.stopped_reason"] = report.stopped_reason
        if exc is not None:
            attributes["error.type"] = type(exc).__name__
            if isinstance(exc, Exception):
                self.span.record_exception(exc)
                self.span.set_status(_trace.StatusCode.ERROR, type(exc).__name__)
        self.span.set_attributes(attributes)
        self.span.end()
        for status, count in report.counts.items():
            if count:
                self._instruments.outcomes.add(count, {"iris360.outcome": status})

    def attach(self) -> object:
        """Make the job's span the current one (returns the token for :meth:`detach`)."""
        return _context.attach(_trace.set_span_in_context(self.span))

    @staticmethod
    def detach(token: object) -> None:
        _context.detach(token)  # type: ignore[arg-type]


class Instruments:
    """The tracer and the metric instruments (created once, from the global providers)."""

    def __init__(self) -> None:
        self.tracer = _trace.get_tracer(SCOPE, __version__)
        meter = _metrics.get_meter(SCOPE, __version__)
        describe = METRICS.__getitem__
        name = "iris360.client.requests"
        self.requests = meter.create_counter(name, "{request}", describe(name))
        name = "iris360.client.retries"
        self.retries = meter.create_counter(name, "{retry}", describe(name))
        name = "iris360.client.rate_limited"
        self._rate_limited = meter.create_counter(name, "{response}", describe(name))
        name = "iris360.client.requests.in_flight"
        self.in_flight = meter.create_up_down_counter(name, "{request}", describe(name))
        name = "iris360.client.request.duration"
        self.duration = meter.create_histogram(name, "s", describe(name))
        name = "iris360.bulk.outcomes"
        self.outcomes = meter.create_counter(name, "{device}", describe(name))

    def request_started(self, method: str, route: str) -> RequestTrace:
        return RequestTrace(self, method, route)

    def rate_limited(self, method: str, route: str) -> None:
        self._rate_limited.add(1, {"http.request.method": method, "url.template": route})

    def job_started(self, attributes: Mapping[str, Any], refreshes: int) -> BulkTrace:
        return BulkTrace(self, attributes, refreshes)


INSTRUMENTS: Instruments | None = None if _trace is None else Instruments()
"""The instruments, or ``None`` without ``opentelemetry-api``."""


async def traced_stream(
    outcomes: AsyncGenerator[CommandOutcome, None],
    job: BulkTrace,
    report: Callable[[], CommandReport],
    refreshes: Callable[[], int],
) -> AsyncGenerator[CommandOutcome, None]:
    """``outcomes`` with the job's span current while the job runs (so its calls are the
    span's children); ``report()`` and ``refreshes()`` give the job's report and the client's
    refresh count at the end. Leaving
    the loop early ends the job (as for the stream itself) and the span, without an error."""
    error: BaseException | None = None
    try:
        while True:
            token = job.attach()
            try:
                outcome = await outcomes.__anext__()
            except StopAsyncIteration:
                break
            finally:
                job.detach(token)
            yield outcome
    except GeneratorExit:  # the consumer left early: the job is cancelled, nothing failed
        raise
    except BaseException as exc:
        error = exc
        raise
    finally:
        await outcomes.aclose()
        job.finish(report(), refreshes(), error)
