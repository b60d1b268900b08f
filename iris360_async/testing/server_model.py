"""A server model for the bulk endpoint: backend workers behind a queue and a gateway.

The real ``sendCommandsBulk`` handles its targets one by one (one context-broker round trip
each) on a few backend workers, behind a gateway with a timeout and perhaps a rate limit.
:class:`ServerModel` puts that in front of any aiohttp handler (the one that applies the
commands)::

    model = ServerModel("capacity_bound")
    handler = model.front(router)         # only POST .../devices/sendCommandsBulk is modelled

A request meets, in order:

1. the gateway's token bucket (``rate`` per second, ``burst``): no token -> 429 at once with
   ``Retry-After`` (whole seconds), ``X-RateLimit-Limit`` (the bucket size) and
   ``X-RateLimit-Remaining``; every answer that passed the bucket carries the last two too;
2. the backend queue: when ``queue_limit`` requests already wait -> 503 at once, nothing applied;
3. a worker: it spends ``base + per_device * targets`` seconds (the cost in force when it
   starts), then the wrapped handler runs and applies the commands;
4. the gateway timeout, counted from arrival: past it the client gets 504 while the backend
   still finishes the request -- commands applied, answer lost, exactly the ambiguous case.

Drift: ``drift`` steps change the cost at given seconds into the run, ``tenants`` occupy some
workers for a while (other customers' load). Time zero is the first modelled request after
construction or :meth:`ServerModel.reset`. Times are real asyncio time, in seconds.

:attr:`ServerModel.stats` records every request (queue wait, service time, status) and the queue
length over time; its memory grows with the requests served, so :meth:`~ServerModel.reset`
between runs.
"""

from __future__ import annotations

import asyncio
import math
import random
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any

import msgspec
from aiohttp import web

from .server import Handler, json_response, server_error

__all__ = [
    "PRESETS",
    "CostStep",
    "RequestRecord",
    "ServerModel",
    "ServerModelSettings",
    "ServerModelStats",
    "TenantLoad",
    "count_device_serials",
]

TOO_MANY = b'{"message":"Too Many Attempts."}'
BULK_PATH = "/devices/sendCommandsBulk"


@dataclass(frozen=True)
class CostStep:
    """From ``at`` seconds into the run on, a request costs ``base + per_device * targets``
    (``base=None`` keeps the base cost in force)."""

    at: float
    per_device: float
    base: float | None = None

    def __post_init__(self) -> None:
        if self.at < 0 or self.per_device < 0 or (self.base is not None and self.base < 0):
            raise ValueError("CostStep times must not be negative")


@dataclass(frozen=True)
class TenantLoad:
    """Other tenants keep ``workers`` backend workers busy from ``start`` to ``end`` seconds
    into the run (a worker they take is released by its current request first)."""

    start: float
    end: float
    workers: int

    def __post_init__(self) -> None:
        if not 0 <= self.start < self.end or self.workers < 1:
            raise ValueError("TenantLoad needs 0 <= start < end and workers >= 1")


@dataclass(frozen=True)
class ServerModelSettings:
    """What the backend and the gateway in front of it do; times in seconds.

    Attributes:
        workers: backend workers (requests processed at once).
        base: cost of a request, seconds.
        per_device: extra cost per target, seconds.
        queue_limit: requests that may wait for a worker (``None``: unbounded); beyond it the
            gateway answers 503 at once.
        gateway_timeout: seconds from arrival after which the client gets 504 (``None``: none);
            the backend still finishes the request.
        rate: gateway token bucket refill, requests per second (``None``: no rate limit).
        burst: bucket size (requests).
        drift: cost steps, in order of ``at``.
        tenants: other tenants' load on the workers.
        jitter: each request's cost varies uniformly by up to this fraction (0.2: +-20 %),
            from a seeded generator; 0 (default): every request costs exactly the same.
    """

    workers: int = 4
    base: float = 0.0
    per_device: float = 0.002
    queue_limit: int | None = None
    gateway_timeout: float | None = None
    rate: float | None = None
    burst: int = 1
    drift: tuple[CostStep, ...] = ()
    tenants: tuple[TenantLoad, ...] = ()
    jitter: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.jitter < 1.0:
            raise ValueError("jitter must be a fraction in [0, 1)")
        if self.workers < 1:
            raise ValueError("workers must be at least 1")
        if self.base < 0 or self.per_device < 0:
            raise ValueError("base and per_device must not be negative")
        if self.queue_limit is not None and self.queue_limit < 0:
            raise ValueError("queue_limit must not be negative (or None)")
        if self.gateway_timeout is not None and not self.gateway_timeout > 0:
            raise ValueError("gateway_timeout must be positive (or None)")
        if self.rate is not None and not self.rate > 0:
            raise ValueError("rate must be positive (or None)")
        if self.burst < 1:
            raise ValueError("burst must be at least 1")
        object.__setattr__(self, "drift", tuple(sorted(self.drift, key=lambda s: s.at)))
        object.__setattr__(self, "tenants", tuple(self.tenants))

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> ServerModelSettings:
        """A named preset (see :data:`PRESETS`) with some fields replaced."""
        try:
            settings = PRESETS[name]
        except KeyError:
            raise ValueError(f"unknown preset {name!r}; known: {', '.join(PRESETS)}") from None
        return replace(settings, **overrides)

    def cost(self, targets: int, elapsed: float) -> float:
        """Seconds a worker spends on a request of ``targets`` started ``elapsed`` seconds
        into the run."""
        base, per_device = self.base, self.per_device
        for step in self.drift:
            if step.at > elapsed:
                break
            per_device = step.per_device
            if step.base is not None:
                base = step.base
        return base + per_device * targets

    def unloaded_time(self, targets: int) -> float:
        """Seconds a request of ``targets`` takes on an idle server at the start of a run."""
        return self.cost(targets, 0.0)

    def free_workers(self, elapsed: float) -> int:
        """Workers left to this client ``elapsed`` seconds into the run."""
        taken = sum(t.workers for t in self.tenants if t.start <= elapsed < t.end)
        return max(0, self.workers - taken)

    def scaled(self, factor: float) -> ServerModelSettings:
        """The same server with every duration multiplied by ``factor`` (rates divided), so a
        test can run a preset in a fraction of its time."""
        if not factor > 0:
            raise ValueError("factor must be positive")
        timeout = self.gateway_timeout
        return replace(
            self,
            base=self.base * factor,
            per_device=self.per_device * factor,
            gateway_timeout=None if timeout is None else timeout * factor,
            rate=None if self.rate is None else self.rate / factor,
            drift=tuple(
                CostStep(s.at * factor, s.per_device * factor,
                         None if s.base is None else s.base * factor)
                for s in self.drift
            ),
            tenants=tuple(
                TenantLoad(t.start * factor, t.end * factor, t.workers) for t in self.tenants
            ),
        )


PRESETS: Mapping[str, ServerModelSettings] = {
    # the measurement: 4 workers, 0.2 s per 100 devices, gateway gives up at 0.7 s
    "capacity_bound": ServerModelSettings(workers=4, per_device=0.002, gateway_timeout=0.7),
    # plenty of workers, but the gateway allows 20 requests per second (burst 10)
    "rate_limited": ServerModelSettings(
        workers=32, base=0.02, per_device=0.0005, gateway_timeout=5.0, rate=20.0, burst=10
    ),
    # the per-device cost doubles 5 s into the run; the gateway timeout is 3x the unloaded
    # time of a 100-device request at the higher cost
    "drifting": ServerModelSettings(
        workers=4, per_device=0.001, gateway_timeout=0.6, drift=(CostStep(5.0, 0.002),)
    ),
    # other tenants take half of 8 workers from 3 s to 8 s into the run
    "shared": ServerModelSettings(
        workers=8, per_device=0.002, gateway_timeout=1.0,
        tenants=(TenantLoad(3.0, 8.0, 4),),
    ),
    # a big, quick backend: 64 workers, 20 ms per 100 devices (+-20 %: answers do not all
    # arrive in the same instant)
    "fast": ServerModelSettings(workers=64, per_device=0.0002, gateway_timeout=5.0, jitter=0.2),
}
"""Named server models; ``ServerModelSettings.preset(name, **overrides)`` adjusts one."""


@dataclass
class RequestRecord:
    """One modelled request; times in seconds, ``arrived`` counted from the run's start.

    ``queue_wait`` and ``service`` stay ``None`` for a request refused at the gateway (429,
    503); ``completed`` tells whether the backend finished it (for a 504: applied anyway).
    """

    arrived: float
    targets: int = 0
    status: int = 0
    latency: float = 0.0
    queue_wait: float | None = None
    service: float | None = None
    completed: bool = False


@dataclass
class ServerModelStats:
    """What the model saw since the last reset.

    Attributes:
        requests: modelled requests received.
        rate_limited: answered 429 by the gateway's bucket.
        queue_full: answered 503 because the queue was full.
        gateway_timeouts: answered 504 (the backend went on).
        completed: requests the backend finished (504s included).
        records: one :class:`RequestRecord` per request, in arrival order.
        queue: ``(seconds into the run, waiting, busy workers)`` at every change.
    """

    requests: int = 0
    rate_limited: int = 0
    queue_full: int = 0
    gateway_timeouts: int = 0
    completed: int = 0
    records: list[RequestRecord] = field(default_factory=list)
    queue: list[tuple[float, int, int]] = field(default_factory=list)

    @property
    def queue_waits(self) -> list[float]:
        """Seconds each request that reached a worker waited for it."""
        return [r.queue_wait for r in self.records if r.queue_wait is not None]

    @property
    def max_queue(self) -> int:
        """The most requests that waited for a worker at once."""
        return max((waiting for _, waiting, _ in self.queue), default=0)

    def summary(self) -> dict[str, int]:
        """The counters as a dict (for reports and benchmark tables)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.type == "int"}


class _Serials(msgspec.Struct):
    device_serials: list[Any] = []


_serials_decoder = msgspec.json.Decoder(_Serials)


def count_device_serials(body: bytes) -> int:
    """Targets of a ``sendCommandsBulk`` body: the length of ``device_serials`` (0 when the
    body is not such an object)."""
    try:
        return len(_serials_decoder.decode(body).device_serials)
    except msgspec.DecodeError:
        return 0


class ServerModel:
    """Backend workers, queue and gateway in front of an aiohttp handler.

    Args:
        settings: a :class:`ServerModelSettings` or the name of a preset.
        targets: how many targets a request body holds (default: :func:`count_device_serials`).
    """

    def __init__(
        self,
        settings: ServerModelSettings | str = "capacity_bound",
        *,
        targets: Callable[[bytes], int] = count_device_serials,
    ) -> None:
        if isinstance(settings, str):
            settings = ServerModelSettings.preset(settings)
        self.settings = settings
        """The model in force; assign a new one to change it for the next requests."""
        self._targets = targets
        self.stats = ServerModelStats()
        self._epoch: float | None = None
        self._tokens = 0.0
        self._refilled = 0.0
        self._busy = 0
        self._waiting: deque[asyncio.Future[None]] = deque()
        self._timers: list[asyncio.TimerHandle] = []
        self._tasks: set[asyncio.Task[web.StreamResponse]] = set()
        self._random = random.Random(1)

    def __repr__(self) -> str:
        s = self.settings
        return f"<ServerModel workers={s.workers} busy={self._busy} waiting={len(self._waiting)}>"

    # -- public ---------------------------------------------------------------------------

    def elapsed(self) -> float:
        """Seconds since the run started (0 before the first modelled request)."""
        if self._epoch is None:
            return 0.0
        return asyncio.get_running_loop().time() - self._epoch

    def reset(self) -> None:
        """New statistics, and time zero again at the next request (backend work still under
        way finishes; it is not counted in the new statistics)."""
        self.stats = ServerModelStats()
        self._epoch = None
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()

    async def drain(self) -> None:
        """Wait until the backend has finished every request it holds (504-ed ones too)."""
        while self._tasks:
            await asyncio.wait(set(self._tasks))

    def wrap(self, handler: Handler) -> Handler:
        """``handler`` behind the model: every request goes through gateway and backend."""

        async def modelled(request: web.BaseRequest) -> web.StreamResponse:
            return await self._gateway(request, handler)

        return modelled

    def front(
        self, handler: Handler, *, path_suffix: str = BULK_PATH, method: str = "POST"
    ) -> Handler:
        """``handler`` with only ``method`` requests whose path ends with ``path_suffix``
        (default: the bulk endpoint) going through the model; others pass straight."""
        modelled = self.wrap(handler)

        async def route(request: web.BaseRequest) -> web.StreamResponse:
            if request.method == method and request.path.endswith(path_suffix):
                return await modelled(request)
            return await handler(request)

        return route

    # -- gateway --------------------------------------------------------------------------

    def _start_run(self, loop: asyncio.AbstractEventLoop, now: float) -> float:
        self._epoch = now
        self._tokens = float(self.settings.burst)
        self._refilled = now
        for tenant in self.settings.tenants:  # wake waiters when workers come back
            self._timers.append(loop.call_at(now + tenant.end, self._dispatch))
        return now

    def _take_token(self, now: float) -> tuple[bool, int]:
        s = self.settings
        assert s.rate is not None
        refill = max(0.0, now - self._refilled) * s.rate
        self._tokens = min(float(s.burst), self._tokens + refill)
        self._refilled = max(now, self._refilled)
        if self._tokens < 1.0:
            return False, 0
        self._tokens -= 1.0
        return True, int(self._tokens)

    async def _gateway(self, request: web.BaseRequest, handler: Handler) -> web.StreamResponse:
        loop = asyncio.get_running_loop()
        arrived = loop.time()
        epoch = self._epoch if self._epoch is not None else self._start_run(loop, arrived)
        settings = self.settings
        stats = self.stats
        record = RequestRecord(arrived=arrived - epoch)
        stats.requests += 1
        stats.records.append(record)
        quota: dict[str, str] = {}
        if settings.rate is not None:
            allowed, remaining = self._take_token(arrived)
            quota = {"X-RateLimit-Limit": str(settings.burst),
                     "X-RateLimit-Remaining": str(remaining)}
            if not allowed:
                stats.rate_limited += 1
                wait = (1.0 - self._tokens) / settings.rate
                quota["Retry-After"] = str(max(1, math.ceil(wait)))
                return self._answer(record, json_response(TOO_MANY, 429), quota, arrived)
        body = await request.read()  # read now: the backend may outlive this answer
        record.targets = self._targets(body)
        # admission without a pause between the check and the queueing
        limit = settings.queue_limit
        if limit is not None and len(self._waiting) >= limit and not self._worker_free():
            stats.queue_full += 1
            return self._answer(record, server_error(503), quota, arrived)
        waiter = self._admit(loop)
        task = asyncio.ensure_future(self._backend(request, handler, record, arrived, waiter))
        self._tasks.add(task)
        task.add_done_callback(self._forget)
        timeout = settings.gateway_timeout
        try:
            if timeout is None:
                response = await asyncio.shield(task)
            else:
                left = max(0.0, arrived + timeout - loop.time())
                response = await asyncio.wait_for(asyncio.shield(task), left)
        except asyncio.TimeoutError:
            stats.gateway_timeouts += 1
            response = server_error(504)
        return self._answer(record, response, quota, arrived)

    def _answer(
        self,
        record: RequestRecord,
        response: web.StreamResponse,
        headers: dict[str, str],
        arrived: float,
    ) -> web.StreamResponse:
        response.headers.update(headers)
        record.status = response.status
        record.latency = asyncio.get_running_loop().time() - arrived
        return response

    def _forget(self, task: asyncio.Task[web.StreamResponse]) -> None:
        self._tasks.discard(task)
        if not task.cancelled():
            task.exception()  # retrieved: a handler failure after a 504 is nobody's answer

    # -- backend --------------------------------------------------------------------------

    def _worker_free(self) -> bool:
        return self._busy < self.settings.free_workers(self.elapsed())

    def _note_queue(self) -> None:
        self.stats.queue.append((self.elapsed(), len(self._waiting), self._busy))

    def _dispatch(self) -> None:
        waiting = self._waiting
        while waiting and self._worker_free():
            waiter = waiting.popleft()
            if waiter.done():  # cancelled while waiting
                continue
            self._busy += 1
            waiter.set_result(None)
        self._note_queue()

    def _admit(self, loop: asyncio.AbstractEventLoop) -> asyncio.Future[None] | None:
        """Take a free worker (``None``) or queue up (a future set when a worker is handed
        over)."""
        if not self._waiting and self._worker_free():
            self._busy += 1
            self._note_queue()
            return None
        waiter: asyncio.Future[None] = loop.create_future()
        self._waiting.append(waiter)
        self._note_queue()
        return waiter

    async def _backend(
        self,
        request: web.BaseRequest,
        handler: Handler,
        record: RequestRecord,
        arrived: float,
        waiter: asyncio.Future[None] | None,
    ) -> web.StreamResponse:
        loop = asyncio.get_running_loop()
        stats = self.stats  # a reset while this runs starts new statistics without it
        if waiter is not None:
            try:
                await waiter
            except BaseException:
                if waiter.done() and not waiter.cancelled():
                    self._release()  # a worker was handed over just as we were cancelled
                raise
        started = loop.time()
        record.queue_wait = started - arrived
        try:
            cost = self.settings.cost(record.targets, self.elapsed())
            jitter = self.settings.jitter
            if jitter:
                cost *= 1.0 + jitter * (2.0 * self._random.random() - 1.0)
            await asyncio.sleep(cost)
            response = await handler(request)
        finally:
            record.service = loop.time() - started
            self._release()
        record.completed = True
        stats.completed += 1
        return response

    def _release(self) -> None:
        self._busy -= 1
        self._dispatch()
