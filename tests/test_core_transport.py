"""The request path against a scripted local server (127.0.0.1): headers, retries per mode,
401 replay, error mapping, decoding, logging."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import anyio
import msgspec
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from iris360_async import Iris360Client, Timeout
from iris360_async._retry import ManualClock
from iris360_async._transport import MAX_RENEWALS
from iris360_async.errors import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    InternalServerError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    ResponseDecodeError,
    UnprocessableEntityError,
)

PREFIX = "/api/public/v1"
PASSWORD = "hunter2-secret-pw"
TOKEN = "access-token-0123456789"

Reply = web.StreamResponse | Callable[[web.Request], Awaitable[web.StreamResponse]]


def jwt(exp: float, n: int = 0) -> str:
    def b64(data: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    return f"{b64({'alg': 'none'})}.{b64({'exp': exp, 'n': n})}.sig"


def reply(status: int = 200, body: Any = None, *, text: str | None = None,
          content_type: str = "application/json", headers: dict[str, str] | None = None
          ) -> web.Response:
    if text is None:
        text = "" if body is None else json.dumps(body)
    return web.Response(status=status, text=text, content_type=content_type, headers=headers)


@dataclass
class Call:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    at: float


@dataclass
class ScriptedServer:
    """Answers each (method, path) from a queue of replies; the last one repeats."""

    clock: ManualClock
    base_url: str = ""
    scripts: dict[tuple[str, str], list[Reply]] = field(default_factory=dict)
    calls: list[Call] = field(default_factory=list)

    def on(self, method: str, path: str, *replies: Reply) -> None:
        self.scripts.setdefault((method, PREFIX + path), []).extend(replies)

    def calls_to(self, path: str) -> list[Call]:
        return [c for c in self.calls if c.path == PREFIX + path]

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        self.calls.append(
            Call(request.method, request.path, dict(request.headers), body, self.clock.monotonic())
        )
        queue = self.scripts.get((request.method, request.path))
        if not queue:
            return reply(404, {"message": "no script"})
        item = queue.pop(0) if len(queue) > 1 else queue[0]
        if isinstance(item, web.StreamResponse):
            if len(queue) == 0 or item is not queue[0]:
                return item
            # the repeating last reply: build a fresh copy each time
            assert isinstance(item, web.Response)
            return web.Response(
                status=item.status, body=item.body, headers=item.headers
            )
        return await item(request)

    def client(self, **kw: Any) -> Iris360Client:
        kw.setdefault("clock", self.clock)
        kw.setdefault("random", lambda: 0.5)
        return Iris360Client._with_hooks(self.base_url, **kw)


@contextlib.asynccontextmanager
async def serving(
    handle: Callable[[web.Request], Awaitable[web.StreamResponse]],
) -> AsyncIterator[str]:
    """A server on 127.0.0.1 answering every path with ``handle``; yields its base URL."""
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    test_server = TestServer(app, host="127.0.0.1")
    await test_server.start_server()
    try:
        yield str(test_server.make_url("")).rstrip("/")
    finally:
        await test_server.close()


@pytest.fixture
async def server() -> AsyncIterator[ScriptedServer]:
    scripted = ScriptedServer(ManualClock())
    async with serving(scripted.handle) as base_url:
        scripted.base_url = base_url
        yield scripted


class Row(msgspec.Struct):
    id: int


class Page(msgspec.Struct):
    rows: list[Row]
    count: int


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.fixture
def inject(monkeypatch: pytest.MonkeyPatch) -> Callable[..., list[int]]:
    """Make the next session requests raise the given exceptions (then behave normally)."""

    def install(*errors: BaseException) -> list[int]:
        pending = list(errors)
        seen: list[int] = []
        original = aiohttp.ClientSession._request

        async def fake(self: aiohttp.ClientSession, *args: Any, **kw: Any) -> Any:
            seen.append(1)
            if pending:
                raise pending.pop(0)
            return await original(self, *args, **kw)

        monkeypatch.setattr(aiohttp.ClientSession, "_request", fake)
        return seen

    return install


# -- the request itself ----------------------------------------------------------------------------


async def test_headers_url_and_msgspec_json_body(server: ScriptedServer) -> None:
    class Body(msgspec.Struct):
        page: int
        pagination_size: int = msgspec.field(name="paginationSize")

    server.on("POST", "/devices/paginate", reply(200, {"rows": [], "count": 0}))
    async with server.client(token="tok-1", user_agent="ua/1") as iris:
        response = await iris._transport.request(
            "POST", "/devices/paginate", json=Body(1, 50), params={"x": "1"},
            headers={"X-Permissions": "true"},
        )
    assert response.status == 200
    assert response.url == server.base_url + PREFIX + "/devices/paginate"
    (call,) = server.calls
    assert json.loads(call.body) == {"page": 1, "paginationSize": 50}
    assert call.headers["Authorization"] == "Bearer tok-1"
    assert call.headers["Accept"] == "application/json"
    assert call.headers["Content-Type"] == "application/json"
    assert call.headers["User-Agent"] == "ua/1"
    assert call.headers["X-Permissions"] == "true"


async def test_default_user_agent_and_unauthenticated_call(server: ScriptedServer) -> None:
    server.on("GET", "/ping", reply(200, {}))
    async with server.client(token="tok") as iris:
        await iris._transport.request("GET", "/ping", authenticated=False)
    (call,) = server.calls
    assert "Authorization" not in call.headers
    assert call.headers["User-Agent"] == "iris360-async/0.1.0"


async def test_content_bytes_are_sent_as_is_on_every_attempt(server: ScriptedServer) -> None:
    payload = b'{"serials":["A"],"commands":{"w_ota":true}}'
    server.on("POST", "/devices/sendCommandsBulk", reply(429, {}, headers={"Retry-After": "1"}),
              reply(207, []))
    async with server.client(token=TOKEN) as iris:
        await iris._transport.request(
            "POST", "/devices/sendCommandsBulk", content=payload, retry="write"
        )
    assert [c.body for c in server.calls] == [payload, payload]
    assert all(c.headers["Content-Type"] == "application/json" for c in server.calls)


async def test_form_factory_is_rebuilt_per_attempt(server: ScriptedServer) -> None:
    server.on("POST", "/devices/importFile", reply(503), reply(200, {"ok": True}))
    built = 0

    def form() -> aiohttp.FormData:
        nonlocal built
        built += 1
        data = aiohttp.FormData()
        data.add_field("file", b"serial\nA\n", filename="devices.csv", content_type="text/csv")
        return data

    async with server.client(token=TOKEN) as iris:
        await iris._transport.request("POST", "/devices/importFile", form=form)
    assert built == 2
    assert all(b"devices.csv" in c.body for c in server.calls)


async def test_conflicting_bodies_are_rejected_before_sending(server: ScriptedServer) -> None:
    async with server.client(token=TOKEN) as iris:
        with pytest.raises(TypeError):
            await iris._transport.request("POST", "/x", json={}, content=b"{}")
        with pytest.raises(ValueError, match="retry"):
            await iris._transport.request("POST", "/x", retry="sometimes")  # type: ignore[arg-type]
    assert server.calls == []


async def test_request_json_decodes(server: ScriptedServer) -> None:
    server.on("POST", "/devices/paginate", reply(200, {"rows": [{"id": 1}], "count": 2}))
    async with server.client(token=TOKEN) as iris:
        page = await iris._transport.request_json("POST", "/devices/paginate", Page, json={})
    assert page == Page([Row(1)], 2)


# -- timeouts (aiohttp's, per attempt) ---------------------------------------------------------


def trickle(pieces: int, gap: float) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """A 200 whose JSON list body arrives in ``pieces`` parts, ``gap`` seconds apart
    (``pieces=0``: the head, then nothing more for a minute)."""

    async def handler(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        if pieces == 0:
            await asyncio.sleep(60)
        await response.write(b"[0")
        for i in range(1, pieces):
            await asyncio.sleep(gap)
            await response.write(b",%d" % i)
        await response.write(b"]")
        await response.write_eof()
        return response

    return handler


async def test_read_timeout_restarts_with_every_piece_of_the_body(
    server: ScriptedServer,
) -> None:
    server.on("GET", "/slow", trickle(8, 0.1))  # 0.7 s in all, never 0.5 s without data
    async with server.client(token=TOKEN, max_retries=0) as iris:
        response = await iris._transport.request(
            "GET", "/slow", timeout=Timeout(read=0.5, total=30)
        )
        assert response.decode(list[int]) == list(range(8))


@pytest.mark.parametrize(
    "limits", [Timeout(read=0.3, total=30), Timeout(read=0.3, total=30, connect=None)]
)
async def test_a_stalled_body_times_out_after_the_read_timeout(
    server: ScriptedServer, limits: Timeout
) -> None:
    server.on("GET", "/stall", trickle(0, 0))
    async with server.client(token=TOKEN, max_retries=0) as iris:
        with pytest.raises(APITimeoutError) as info:
            await iris._transport.request("GET", "/stall", timeout=limits)
    assert "timed out waiting for the response (no data from the server for 0.3 s)" in str(
        info.value
    )
    assert info.value.request_sent is True
    assert info.value.method == "GET"


async def test_total_timeout_ends_a_response_that_keeps_trickling(
    server: ScriptedServer,
) -> None:
    server.on("POST", "/trickle", trickle(1000, 0.05))
    async with server.client(token=TOKEN, max_retries=0) as iris:
        with pytest.raises(APITimeoutError) as info:
            await iris._transport.request(
                "POST", "/trickle", json={}, retry="write",
                timeout=Timeout(connect=0.1, read=30, total=0.4),
            )
    assert "no complete response within 0.4 s" in str(info.value)
    assert info.value.request_sent is True
    assert len(server.calls) == 1  # a write that may have been acted on is not repeated


async def test_the_call_deadline_bounds_the_attempt(server: ScriptedServer) -> None:
    server.on("GET", "/stall", trickle(0, 0))
    async with server.client(token=TOKEN, max_retries=0) as iris:
        with pytest.raises(APITimeoutError) as info:
            await iris._transport.request(
                "GET", "/stall", timeout=Timeout(connect=0.1, read=30, total=30, deadline=0.3)
            )
    assert "the call's deadline of 0.3 s passed" in str(info.value)
    assert info.value.request_sent is True


async def test_cancelling_the_caller_is_not_a_timeout(server: ScriptedServer) -> None:
    server.on("GET", "/stall", trickle(0, 0))
    async with server.client(token=TOKEN, max_retries=0) as iris:
        with anyio.move_on_after(0.3) as scope:
            await iris._transport.request("GET", "/stall", timeout=Timeout(read=30, total=30))
        assert scope.cancelled_caught  # cancelled, not turned into an APITimeoutError
        assert iris.stats.retries == 0
        server.on("GET", "/after", reply(200, [1]))
        response = await iris._transport.request("GET", "/after")  # the client still works
        assert response.decode(list[int]) == [1]


async def test_many_attempts_in_flight_each_time_out_on_their_own(
    server: ScriptedServer,
) -> None:
    server.on("GET", "/stall", trickle(0, 0))
    server.on("GET", "/fast", reply(200, []))
    outcomes: dict[str, str] = {}
    async with server.client(token=TOKEN, max_retries=0, connection_limit=8) as iris:
        transport = iris._transport

        async def call(name: str, path: str, read: float) -> None:
            try:
                await transport.request("GET", path, timeout=Timeout(read=read, total=30))
                outcomes[name] = "ok"
            except APITimeoutError:
                outcomes[name] = "timeout"

        async with anyio.create_task_group() as tg:
            tg.start_soon(call, "late", "/stall", 0.6)
            tg.start_soon(call, "early", "/stall", 0.2)
            for i in range(4):
                tg.start_soon(call, f"fast{i}", "/fast", 0.2)
    assert outcomes == {
        "late": "timeout", "early": "timeout", **{f"fast{i}": "ok" for i in range(4)}
    }


def held(seconds: float) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """A 200 that the server sends after ``seconds``."""

    async def handler(request: web.Request) -> web.StreamResponse:
        await asyncio.sleep(seconds)
        return reply(200, [])

    return handler


async def test_waiting_for_a_connection_slot_is_not_a_timeout(server: ScriptedServer) -> None:
    server.on("GET", "/held", held(0.6))
    server.on("GET", "/fast", reply(200, [1]))
    async with server.client(token=TOKEN, max_retries=0, connection_limit=1) as iris:
        transport = iris._transport
        holder = asyncio.create_task(transport.request("GET", "/held"))
        while not server.calls_to("/held"):  # noqa: ASYNC110 - the slot is taken
            await asyncio.sleep(0.01)
        # waits about 0.6 s for the slot, twice its own limits; then answers at once
        response = await transport.request(
            "GET", "/fast", timeout=Timeout(connect=0.3, read=0.3, total=0.3)
        )
        assert response.decode(list[int]) == [1]
        await holder


async def test_the_call_deadline_bounds_the_wait_for_a_slot(server: ScriptedServer) -> None:
    server.on("GET", "/stall", trickle(0, 0))
    async with server.client(token=TOKEN, max_retries=0, connection_limit=1) as iris:
        transport = iris._transport
        holder = asyncio.create_task(transport.request("GET", "/stall"))
        while not server.calls_to("/stall"):  # noqa: ASYNC110 - the slot is taken
            await asyncio.sleep(0.01)
        with pytest.raises(APITimeoutError) as info:
            await transport.request("GET", "/fast", timeout=Timeout(deadline=0.2))
        holder.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await holder
    assert "the call's deadline passed before it could be sent" in str(info.value)
    assert info.value.request_sent is False
    assert server.calls_to("/fast") == []


@pytest.fixture
def unanswered_url() -> Iterator[str]:
    """A base URL on 127.0.0.1 where connecting never completes: the listener's accept queue
    is full and never drained, so the kernel drops further SYNs."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    for _ in range(3):
        filler = socket.socket()
        filler.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            filler.connect(("127.0.0.1", port))
        fillers.append(filler)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        for sock in (*fillers, listener):
            sock.close()


@pytest.mark.parametrize(
    ("limits", "what"),
    [
        (Timeout(connect=0.3, total=30), "no connection within 0.3 s"),
        (Timeout(connect=30, total=0.3), "no connection within the attempt's total of 0.3 s"),
        (Timeout(connect=None, total=0.3), "no connection within the attempt's total of 0.3 s"),
        (Timeout(connect=30, total=30, deadline=0.3), "the call's deadline of 0.3 s passed"),
    ],
)
async def test_a_timeout_while_connecting_means_nothing_was_sent(
    unanswered_url: str, limits: Timeout, what: str
) -> None:
    async with Iris360Client._with_hooks(
        unanswered_url, token=TOKEN, max_retries=0, clock=ManualClock()
    ) as iris:
        with pytest.raises(APITimeoutError) as info:
            await iris._transport.request("POST", "/w", json={}, retry="write", timeout=limits)
    assert info.value.request_sent is False
    assert f"POST {PREFIX}/w: timed out waiting for a connection ({what})" == str(info.value)


async def test_a_write_whose_attempt_ended_while_connecting_is_retried(
    unanswered_url: str,
) -> None:
    async with Iris360Client._with_hooks(
        unanswered_url, token=TOKEN, max_retries=1, clock=ManualClock(), random=lambda: 0.5
    ) as iris:
        with pytest.raises(APITimeoutError) as info:
            await iris._transport.request(
                "POST", "/w", json={}, retry="write", timeout=Timeout(connect=30, total=0.2)
            )
        assert iris.stats.requests == 2
        assert iris.stats.retries == 1
    assert info.value.request_sent is False


# -- retries ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [408, 429, 502, 503, 504])
async def test_read_retries_transient_status_then_succeeds(
    server: ScriptedServer, status: int
) -> None:
    server.on("GET", "/x", reply(status, {"message": "busy"}), reply(200, {"ok": 1}))
    async with server.client(token=TOKEN) as iris:
        response = await iris._transport.request("GET", "/x")
        assert response.status == 200
        assert iris.stats.retries == 1
    assert len(server.calls) == 2


async def test_read_backoff_waits_are_jittered_and_capped(server: ScriptedServer) -> None:
    server.on("GET", "/x", reply(503), reply(503), reply(503), reply(200, {}))
    async with server.client(token=TOKEN) as iris:
        await iris._transport.request("GET", "/x")
    # random() == 0.5: half of 0.5, 1, 2 seconds
    assert server.clock.sleeps == [0.25, 0.5, 1.0]


async def test_read_gives_up_after_max_retries(server: ScriptedServer) -> None:
    server.on("GET", "/x", reply(503, {"message": "down"}))
    async with server.client(token=TOKEN, max_retries=2) as iris:
        with pytest.raises(InternalServerError) as info:
            await iris._transport.request("GET", "/x")
    assert info.value.status == 503
    assert len(server.calls) == 3


async def test_read_does_not_retry_500(server: ScriptedServer) -> None:
    server.on("GET", "/x", reply(500, {"message": "boom"}))
    async with server.client(token=TOKEN) as iris:
        with pytest.raises(InternalServerError):
            await iris._transport.request("GET", "/x")
    assert len(server.calls) == 1


async def test_429_retry_after_is_honoured(server: ScriptedServer) -> None:
    server.on("GET", "/x", reply(429, {"message": "Too Many Attempts."},
                                 headers={"Retry-After": "7"}), reply(200, {}))
    async with server.client(token=TOKEN) as iris:
        await iris._transport.request("GET", "/x")
        assert iris.stats.rate_limited == 1
    first, second = server.calls
    assert second.at - first.at >= 7.0


class HeldClock(ManualClock):
    """Sleeps block until the test releases them (then advance the clock)."""

    def __init__(self) -> None:
        super().__init__()
        self.release = asyncio.Event()
        self.sleeping = 0

    async def sleep(self, seconds: float) -> None:
        self.sleeping += 1
        await self.release.wait()
        self.sleeping -= 1
        await super().sleep(seconds)


async def test_429_gate_holds_back_other_requests_too(server: ScriptedServer) -> None:
    server.on("GET", "/a", reply(429, {"message": "Too Many Attempts."},
                                 headers={"Retry-After": "30"}), reply(200, {}))
    server.on("GET", "/b", reply(200, {}))
    clock = HeldClock()
    async with server.client(token=TOKEN, clock=clock) as iris:
        first = asyncio.create_task(iris._transport.request("GET", "/a"))
        while clock.sleeping < 1:  # noqa: ASYNC110 - polling a counter, not a condition
            await asyncio.sleep(0)
        second = asyncio.create_task(iris._transport.request("GET", "/b"))
        while clock.sleeping < 2:  # noqa: ASYNC110 - /b waits behind the gate too
            await asyncio.sleep(0)
        for _ in range(20):
            await asyncio.sleep(0)
        assert server.calls_to("/b") == []
        clock.release.set()
        await asyncio.gather(first, second)
    assert len(server.calls_to("/b")) == 1
    assert len(server.calls_to("/a")) == 2


async def test_503_retry_after_is_honoured_for_that_request(server: ScriptedServer) -> None:
    server.on("GET", "/x", reply(503, {}, headers={"Retry-After": "4"}), reply(200, {}))
    async with server.client(token=TOKEN) as iris:
        await iris._transport.request("GET", "/x")
        assert iris._transport.gate.until == 0.0  # only 429 closes the shared gate
    assert server.clock.sleeps == [4.0]


async def test_429_closes_the_gate_even_when_the_request_itself_is_not_retried(
    server: ScriptedServer,
) -> None:
    server.on("POST", "/w", reply(429, {}, headers={"Retry-After": "12"}))
    server.on("GET", "/r", reply(200, {}))
    async with server.client(token=TOKEN) as iris:
        with pytest.raises(RateLimitError):
            await iris._transport.request("POST", "/w", json={}, retry="never")
        t0 = server.clock.monotonic()
        await iris._transport.request("GET", "/r")
    assert server.calls_to("/r")[0].at >= t0 + 12.0
    assert server.clock.sleeps == [12.0]


async def test_retry_after_beyond_the_limit_fails_at_once(server: ScriptedServer) -> None:
    server.on("GET", "/x", reply(429, {}, headers={"Retry-After": "86400"}))
    async with server.client(token=TOKEN) as iris:
        with pytest.raises(RateLimitError) as info:
            await iris._transport.request("GET", "/x")
    assert info.value.retry_after == 86400.0
    assert len(server.calls) == 1
    assert server.clock.sleeps == []


async def test_write_is_not_retried_on_500_or_503(server: ScriptedServer) -> None:
    server.on("POST", "/w", reply(503, {"message": "unavailable"}))
    async with server.client(token=TOKEN) as iris:
        with pytest.raises(InternalServerError):
            await iris._transport.request("POST", "/w", json={}, retry="write")
    assert len(server.calls) == 1


async def test_write_is_retried_on_429(server: ScriptedServer) -> None:
    server.on("POST", "/w", reply(429, {}), reply(207, []))
    async with server.client(token=TOKEN) as iris:
        response = await iris._transport.request("POST", "/w", json={}, retry="write")
    assert response.status == 207
    assert len(server.calls) == 2


async def test_never_mode_does_not_retry_429(server: ScriptedServer) -> None:
    server.on("POST", "/w", reply(429, {}, headers={"Retry-After": "1"}))
    async with server.client(token=TOKEN) as iris:
        with pytest.raises(RateLimitError) as info:
            await iris._transport.request("POST", "/w", json={}, retry="never")
    assert info.value.retry_after == 1.0
    assert len(server.calls) == 1


async def test_connection_never_established_is_retried_even_for_writes(
    inject: Callable[..., list[int]], server: ScriptedServer
) -> None:
    refused = aiohttp.ClientConnectorError(
        aiohttp.client_reqrep.ConnectionKey("127.0.0.1", 1, False, True, None, None, None),
        ConnectionRefusedError(111, "Connection refused"),
    )
    attempts = inject(refused, aiohttp.ConnectionTimeoutError("connect timed out"))
    server.on("POST", "/w", reply(207, []))
    async with server.client(token=TOKEN) as iris:
        response = await iris._transport.request("POST", "/w", json={}, retry="write")
    assert response.status == 207
    assert len(attempts) == 3
    assert len(server.calls) == 1


@pytest.mark.parametrize(
    "exc",
    [
        asyncio.TimeoutError(),
        aiohttp.SocketTimeoutError("Timeout on reading data from socket"),
        aiohttp.ServerDisconnectedError(),
        aiohttp.ClientOSError(104, "Connection reset by peer"),
    ],
)
async def test_write_is_not_retried_once_the_request_may_have_been_sent(
    inject: Callable[..., list[int]], server: ScriptedServer, exc: BaseException
) -> None:
    attempts = inject(exc)
    server.on("POST", "/w", reply(207, []))
    async with server.client(token=TOKEN) as iris:
        with pytest.raises(APIConnectionError) as info:
            await iris._transport.request("POST", "/w", json={}, retry="write")
    assert info.value.request_sent is True
    assert info.value.method == "POST"
    assert info.value.url == server.base_url + PREFIX + "/w"
    assert isinstance(info.value, APITimeoutError) == isinstance(exc, asyncio.TimeoutError)
    assert len(attempts) == 1
    assert server.calls == []


@pytest.mark.parametrize(
    ("exc", "sent"),
    [
        (aiohttp.ConnectionTimeoutError("connect timed out"), False),
        (aiohttp.SocketTimeoutError("Timeout on reading data from socket"), True),
        (asyncio.TimeoutError(), True),
    ],
)
async def test_a_timeout_without_configured_limits_is_still_an_api_timeout(
    inject: Callable[..., list[int]], server: ScriptedServer, exc: BaseException, sent: bool
) -> None:
    inject(exc)
    async with server.client(token=TOKEN, max_retries=0, timeout=None) as iris:
        with pytest.raises(APITimeoutError) as info:
            await iris._transport.request("GET", "/r")
    assert info.value.request_sent is sent
    assert str(info.value).startswith(f"GET {PREFIX}/r: timed out waiting for ")


async def test_read_retries_timeouts_and_resets(
    inject: Callable[..., list[int]], server: ScriptedServer
) -> None:
    attempts = inject(asyncio.TimeoutError(), aiohttp.ServerDisconnectedError())
    server.on("GET", "/r", reply(200, {}))
    async with server.client(token=TOKEN) as iris:
        await iris._transport.request("GET", "/r")
    assert len(attempts) == 3


async def test_real_refused_connection_maps_to_not_sent() -> None:
    async with Iris360Client._with_hooks(
        f"http://127.0.0.1:{closed_port()}", token=TOKEN, max_retries=0, clock=ManualClock()
    ) as iris:
        with pytest.raises(APIConnectionError) as info:
            await iris._transport.request("GET", "/x")
    assert info.value.request_sent is False
    assert not isinstance(info.value, APITimeoutError)


async def test_budget_exhaustion_stops_retries(server: ScriptedServer) -> None:
    server.on("GET", "/x", reply(503))
    async with server.client(token=TOKEN, max_retries=10) as iris:
        budget = iris._transport.budget
        while budget.tokens >= 10:  # leave room for exactly one retry (5 tokens)
            budget.try_acquire()
        with pytest.raises(InternalServerError):
            await iris._transport.request("GET", "/x")
    assert len(server.calls) == 2  # first attempt + the one retry the budget allowed


async def test_deadline_stops_retrying(server: ScriptedServer) -> None:
    server.on("GET", "/x", reply(503))
    timeout = Timeout(total=10.0, deadline=1.0)
    async with server.client(token=TOKEN, max_retries=10) as iris:
        with pytest.raises(InternalServerError):
            await iris._transport.request("GET", "/x", timeout=timeout)
    # waits of 0.25 and 0.5 fit in 1 s; the next (1.0) would pass the deadline
    assert server.clock.sleeps == [0.25, 0.5]


# -- 401 and tokens -------------------------------------------------------------------------------


def token_server(server: ScriptedServer, *, lifetime: float = 3600.0) -> dict[str, Any]:
    """Accept only the newest issued token; count refreshes and logins."""
    state: dict[str, Any] = {"valid": "initial", "n": 0, "refreshes": 0, "logins": 0}

    def issue() -> web.Response:
        state["n"] += 1
        state["valid"] = jwt(server.clock.time() + lifetime, state["n"])
        return reply(200, {"token": state["valid"], "refreshToken": f"r{state['n']}"})

    async def refresh(request: web.Request) -> web.Response:
        state["refreshes"] += 1
        await asyncio.sleep(0)
        return issue()

    async def login(request: web.Request) -> web.Response:
        state["logins"] += 1
        return issue()

    async def protected(request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != f"Bearer {state['valid']}":
            return reply(401, {"message": "Unauthenticated."})
        return reply(200, {"ok": True})

    server.on("POST", "/refresh-token", refresh)
    server.on("POST", "/login", login)
    server.on("GET", "/p", protected)
    return state


async def test_401_refreshes_once_and_replays_once(server: ScriptedServer) -> None:
    state = token_server(server)
    async with server.client(token="stale", refresh_token="r0") as iris:
        response = await iris._transport.request("GET", "/p", retry="never")
        assert response.status == 200
        assert iris.stats.replays == 1
        assert iris.stats.refreshes == 1
    assert state["refreshes"] == 1
    assert len(server.calls_to("/p")) == 2


async def test_401_after_every_renewal_raises_once_the_bound_is_spent(
    server: ScriptedServer,
) -> None:
    server.on("POST", "/refresh-token", reply(200, {"token": "new", "refreshToken": "r1"}))
    server.on("GET", "/p", reply(401, {"message": "Unauthenticated."}))
    async with server.client(token="stale", refresh_token="r0") as iris:
        with pytest.raises(AuthenticationError) as info:
            await iris._transport.request("GET", "/p")
    assert info.value.server_message == "Unauthenticated."
    assert not info.value.while_authenticating  # the tokens were obtained; the server refused
    assert len(server.calls_to("/refresh-token")) == MAX_RENEWALS == 3
    assert len(server.calls_to("/p")) == MAX_RENEWALS + 1


async def test_401_on_the_replay_uses_a_token_renewed_meanwhile_without_refreshing(
    server: ScriptedServer,
) -> None:
    holder: dict[str, Iris360Client] = {}

    async def protected(request: web.Request) -> web.Response:
        auth = request.headers.get("Authorization")
        if auth == "Bearer t2":
            return reply(200, {})
        if auth == "Bearer t1":  # another request renews the token while this one fails
            holder["iris"]._transport.tokens.set_tokens("t2", "r2")
        return reply(401, {"message": "Unauthenticated."})

    server.on("POST", "/refresh-token", reply(200, {"token": "t1", "refreshToken": "r1"}))
    server.on("GET", "/p", protected)
    async with server.client(token="stale", refresh_token="r0") as iris:
        holder["iris"] = iris
        response = await iris._transport.request("GET", "/p")
        assert response.status == 200
        assert iris.stats.replays == 2
    assert len(server.calls_to("/refresh-token")) == 1
    assert [c.headers["Authorization"] for c in server.calls_to("/p")] == [
        "Bearer stale", "Bearer t1", "Bearer t2"
    ]


@pytest.mark.parametrize("mode", ["read", "write", "never"])
async def test_401_replay_happens_in_every_mode(server: ScriptedServer, mode: str) -> None:
    token_server(server)
    async with server.client(token="stale", refresh_token="r0") as iris:
        await iris._transport.request("GET", "/p", retry=mode)  # type: ignore[arg-type]
    assert len(server.calls_to("/p")) == 2


async def test_two_hundred_concurrent_401s_cause_one_refresh(server: ScriptedServer) -> None:
    state = token_server(server)
    async with server.client(token="stale", refresh_token="r0") as iris:
        results = await asyncio.gather(
            *(iris._transport.request("GET", "/p") for _ in range(200))
        )
    assert all(r.status == 200 for r in results)
    assert state["refreshes"] == 1
    assert state["logins"] == 0


async def test_refused_refresh_logs_in_exactly_once(server: ScriptedServer) -> None:
    state = token_server(server)
    server.scripts[("POST", PREFIX + "/refresh-token")] = [
        reply(401, {"error": "Invalid refresh token"})
    ]
    async with server.client(
        token="stale", refresh_token="dead", username="u@x.com", password=PASSWORD
    ) as iris:
        results = await asyncio.gather(
            *(iris._transport.request("GET", "/p") for _ in range(50))
        )
    assert all(r.status == 200 for r in results)
    assert len(server.calls_to("/refresh-token")) == 1
    assert state["logins"] == 1
    (login,) = server.calls_to("/login")
    assert json.loads(login.body) == {"username": "u@x.com", "password": PASSWORD}
    assert "Authorization" not in login.headers


async def test_bad_credentials_cause_exactly_one_login_across_many_calls(
    server: ScriptedServer,
) -> None:
    server.on("POST", "/login", reply(401, {"email": "The provided credentials are incorrect"}))
    server.on("GET", "/p", reply(200, {}))
    async with server.client(username="u@x.com", password=PASSWORD) as iris:
        for _ in range(10):
            with pytest.raises(AuthenticationError) as info:
                await iris._transport.request("GET", "/p")
            assert PASSWORD not in str(info.value)
        outcomes = await asyncio.gather(
            *(iris._transport.request("GET", "/p") for _ in range(50)), return_exceptions=True
        )
    assert all(isinstance(o, AuthenticationError) for o in outcomes)
    assert len(server.calls_to("/login")) == 1
    assert server.calls_to("/p") == []


async def test_login_429_is_raised_not_looped(server: ScriptedServer) -> None:
    server.on("POST", "/login", reply(429, {"message": "Too Many Attempts."},
                                      headers={"Retry-After": "60"}))
    async with server.client(username="u@x.com", password=PASSWORD) as iris:
        with pytest.raises(RateLimitError) as info:
            await iris._transport.request("GET", "/p")
    assert info.value.retry_after == 60.0
    assert len(server.calls_to("/login")) == 1


async def test_proactive_refresh_before_expiry_through_the_client(server: ScriptedServer) -> None:
    state = token_server(server, lifetime=100.0)
    async with server.client(username="u@x.com", password=PASSWORD, refresh_margin=30) as iris:
        await iris._transport.request("GET", "/p")
        assert (state["logins"], state["refreshes"]) == (1, 0)
        server.clock.advance(60)
        await iris._transport.request("GET", "/p")
        assert state["refreshes"] == 0
        server.clock.advance(15)  # 75 s of 100: inside the margin
        await iris._transport.request("GET", "/p")
        assert state["refreshes"] == 1
    assert len(server.calls_to("/p")) == 3  # no 401 was ever needed


# -- error mapping ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "cls"),
    [
        (400, BadRequestError), (401, AuthenticationError), (403, PermissionDeniedError),
        (404, NotFoundError), (409, APIStatusError), (422, UnprocessableEntityError),
        (429, RateLimitError), (500, InternalServerError), (501, InternalServerError),
    ],
)
async def test_status_maps_to_its_class(
    server: ScriptedServer, status: int, cls: type[APIStatusError]
) -> None:
    body = {"message": "The page field is required."}
    server.on("POST", "/devices/paginate", reply(status, body))
    async with server.client(max_retries=0) as iris:  # no token: a 401 stays a 401
        with pytest.raises(APIStatusError) as info:
            await iris._transport.request("POST", "/devices/paginate", json={}, retry="never")
    exc = info.value
    assert type(exc) is cls
    assert exc.status == status
    assert exc.method == "POST"
    assert exc.url == server.base_url + PREFIX + "/devices/paginate"
    assert exc.body == {"message": "The page field is required."}
    assert json.loads(exc.text) == exc.body
    assert exc.server_message == "The page field is required."
    assert exc.headers["Content-Type"].startswith("application/json")


async def test_error_message_format(server: ScriptedServer) -> None:
    required = "The page field is required."
    server.on("POST", "/devices/paginate",
              reply(422, {"message": required, "errors": {"page": [required]}}))
    async with server.client(token=TOKEN) as iris:
        with pytest.raises(UnprocessableEntityError) as info:
            await iris._transport.request("POST", "/devices/paginate", json={})
    assert str(info.value) == (
        "POST /api/public/v1/devices/paginate -> 422 Unprocessable Entity: "
        "The page field is required."
    )


@pytest.mark.parametrize(
    ("text", "content_type", "body", "message"),
    [
        ('{"detail": [{"loc": ["body", 0, "options", "limit"], "msg": "bad"}]}', "text/html",
         {"detail": [{"loc": ["body", 0, "options", "limit"], "msg": "bad"}]},
         "body.0.options.limit: bad"),
        ('"Entity not found"', "application/json", "Entity not found", "Entity not found"),
        ("Missing headers (tenant,scope)", "text/plain", "Missing headers (tenant,scope)",
         "Missing headers (tenant,scope)"),
        ("", "text/plain", None, None),
        ('{"error": "tenant and scope are needed"}', "text/html",
         {"error": "tenant and scope are needed"}, "tenant and scope are needed"),
        ("{broken json", "text/html", "{broken json", "{broken json"),
    ],
)
async def test_error_bodies_are_parsed_leniently(
    server: ScriptedServer, text: str, content_type: str, body: Any, message: str | None
) -> None:
    server.on("GET", "/e", reply(404, text=text, content_type=content_type))
    async with server.client(token=TOKEN) as iris:
        with pytest.raises(NotFoundError) as info:
            await iris._transport.request("GET", "/e")
    assert info.value.body == body
    assert info.value.text == text
    assert info.value.server_message == message
    if message:
        assert str(info.value).endswith(": " + message)
    else:
        assert str(info.value) == "GET /api/public/v1/e -> 404 Not Found"


async def test_long_html_error_is_shortened_in_the_message(server: ScriptedServer) -> None:
    page = "<html>" + "x" * 5000 + "</html>"
    server.on("GET", "/e", reply(500, text=page, content_type="text/html"))
    async with server.client(token=TOKEN) as iris:
        with pytest.raises(InternalServerError) as info:
            await iris._transport.request("GET", "/e")
    assert len(str(info.value)) < 400
    assert info.value.text == page


async def test_decode_error_names_the_offending_path(server: ScriptedServer) -> None:
    server.on("POST", "/p", reply(200, {"rows": [{"id": 1}, {"id": "two"}], "count": 2}))
    server.on("POST", "/bad", reply(200, text="<html>oops</html>", content_type="text/html"))
    async with server.client(token=TOKEN) as iris:
        with pytest.raises(ResponseDecodeError) as info:
            await iris._transport.request_json("POST", "/p", Page, json={})
        assert info.value.path == "$.rows[1].id"
        assert info.value.method == "POST"
        assert info.value.status == 200
        assert info.value.url == server.base_url + PREFIX + "/p"
        assert info.value.text.startswith('{"rows"')
        assert "$.rows[1].id" in str(info.value)
        with pytest.raises(ResponseDecodeError) as info2:
            await iris._transport.request_json("POST", "/bad", list[Page], json={})
        assert info2.value.path == "$"
        assert info2.value.text == "oops"  # condensed: tags dropped


# -- logging --------------------------------------------------------------------------------------


async def test_debug_logs_method_path_status_and_never_secrets(
    server: ScriptedServer, caplog: pytest.LogCaptureFixture
) -> None:
    token_server(server)
    server.on("GET", "/fail", reply(503, {"message": "busy"}), reply(200, {}))
    with caplog.at_level(logging.DEBUG):
        async with server.client(
            token="stale-secret-token", refresh_token="refresh-secret", username="u@x.com",
            password=PASSWORD,
        ) as iris:
            await iris._transport.request("GET", "/p")
            await iris._transport.request("GET", "/fail")
            issued = iris._transport.tokens.tokens
    assert issued is not None
    text = "\n".join(r.getMessage() for r in caplog.records) + caplog.text
    assert "GET /api/public/v1/p -> 401" in text
    assert "GET /api/public/v1/p -> 200" in text
    assert "retry 1" in text
    for secret in ("stale-secret-token", "refresh-secret", PASSWORD, issued.token,
                   issued.refresh_token or "r1"):
        assert secret not in text


def test_secrets_filter_masks_authorization_and_tokens(caplog: pytest.LogCaptureFixture) -> None:
    from iris360_async._logging import get_logger, redact

    assert redact("Authorization: Bearer abc.def.ghi") == "Authorization: Bearer ***"
    assert "abc" not in redact("{'Authorization': 'Bearer abc'}")
    assert "s3cr3t" not in redact('{"password": "s3cr3t", "refreshToken": "s3cr3t"}')
    log = get_logger("iris360_async.test")
    with caplog.at_level(logging.DEBUG, logger="iris360_async.test"):
        log.debug("headers %s", {"Authorization": "Bearer topsecret"})
    assert "topsecret" not in caplog.text
    assert "Bearer ***" in caplog.text
