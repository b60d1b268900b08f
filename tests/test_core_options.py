"""Per-call options (``timeout=``, ``max_retries=``, ``retry_policy=`` on every endpoint
method) and ``with_options`` accepting every client setting."""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from iris360_async import InternalServerError, Iris360Client, RetryPolicy, Timeout
from iris360_async._retry import ManualClock
from iris360_async.models import TimeSeriesRequest
from iris360_async.resources.auth import AuthResource
from iris360_async.resources.connectors import OutConnectorsResource
from iris360_async.resources.devices import DevicesResource
from iris360_async.resources.entities import EntitiesResource
from iris360_async.resources.timeseries import TimeseriesResource

CALL_OPTIONS = ("timeout", "max_retries", "retry_policy")
ENDPOINT_METHODS = [
    (DevicesResource, "page_fetcher"),
    (DevicesResource, "paginate"),
    (DevicesResource, "send_commands_bulk"),
    (DevicesResource, "bulk_sender"),
    (DevicesResource, "send_commands"),
    (DevicesResource, "stream_commands"),
    (DevicesResource, "import_file"),
    (EntitiesResource, "page_fetcher"),
    (EntitiesResource, "paginate"),
    (EntitiesResource, "latest"),
    (TimeseriesResource, "get"),
    (TimeseriesResource, "query"),
    (TimeseriesResource, "stream"),
    (OutConnectorsResource, "page_fetcher"),
    (OutConnectorsResource, "paginate"),
    (OutConnectorsResource, "get"),
    (OutConnectorsResource, "update_models"),
]


@pytest.mark.parametrize(("cls", "name"), ENDPOINT_METHODS, ids=lambda x: getattr(x, "__name__", x))
def test_every_endpoint_method_takes_keyword_only_call_options(cls: type, name: str) -> None:
    parameters = inspect.signature(getattr(cls, name)).parameters
    for option in CALL_OPTIONS:
        assert option in parameters, f"{cls.__name__}.{name} has no {option}="
        assert parameters[option].kind is inspect.Parameter.KEYWORD_ONLY
    assert "timeout" in (inspect.getdoc(getattr(cls, name)) or "")


def test_login_and_refresh_keep_the_clients_settings() -> None:
    # One login or refresh serves every waiting call (single flight): no per-call options.
    for name in ("login", "refresh"):
        parameters = inspect.signature(getattr(AuthResource, name)).parameters
        assert not set(CALL_OPTIONS) & set(parameters)


class _Recorder:
    """Stands in for ``Transport.request``: records the keywords each call reaches it with."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    async def __call__(self, method: str, path: str, **kw: Any) -> Any:
        self.calls.append(kw)
        raise _Stop


class _Stop(Exception):
    pass


def _client(**options: Any) -> tuple[Iris360Client, _Recorder]:
    iris = Iris360Client._with_hooks(
        "http://h", token="t", tenant="a", scope="/", environ={}, **options
    )
    recorder = _Recorder()
    iris._transport.request = recorder  # type: ignore[method-assign]
    return iris, recorder


URN = "urn:ngsi-ld:Device:D1"
CALLS: list[tuple[str, Callable[[Iris360Client, dict[str, Any]], Any]]] = [
    ("entities.latest", lambda c, kw: c.entities.latest(URN, **kw)),
    ("entities.page_fetcher", lambda c, kw: c.entities.page_fetcher(**kw)(1, 10)),
    ("devices.page_fetcher", lambda c, kw: c.devices.page_fetcher(**kw)(1, 10)),
    ("devices.bulk", lambda c, kw: c.devices.send_commands_bulk(["S"], {"w": 1}, **kw)),
    ("devices.import_file", lambda c, kw: c.devices.import_file(b"serial\n", **kw)),
    ("timeseries.get", lambda c, kw: c.timeseries.get([TimeSeriesRequest([URN], ["t"])], **kw)),
    ("connectors.get", lambda c, kw: c.connectors.out.get(7, **kw)),
    ("connectors.models", lambda c, kw: c.connectors.out.update_models(7, devices=[1], **kw)),
    ("connectors.page_fetcher", lambda c, kw: c.connectors.out.page_fetcher(**kw)(1, 10)),
]


@pytest.mark.parametrize(("label", "call"), CALLS, ids=[label for label, _ in CALLS])
async def test_call_options_reach_the_request(label: str, call: Any) -> None:
    iris, recorder = _client()
    with pytest.raises(_Stop):
        await call(iris, {"timeout": 1, "max_retries": 7})
    [kw] = recorder.calls
    assert kw["timeout"] == Timeout(total=1.0)
    assert kw["policy"].max_retries == 7
    assert kw["policy"].base == iris._transport.policy.base  # the client's backoff, 7 retries

    policy = RetryPolicy(max_retries=1, base=0.01, cap=0.02)
    recorder.calls.clear()
    with pytest.raises(_Stop):
        await call(iris, {"retry_policy": policy, "timeout": Timeout(connect=1, deadline=5)})
    [kw] = recorder.calls
    assert kw["policy"] is policy
    assert kw["timeout"] == Timeout(connect=1, deadline=5)


@pytest.mark.parametrize(("label", "call"), CALLS, ids=[label for label, _ in CALLS])
async def test_no_call_options_means_the_clients_settings(label: str, call: Any) -> None:
    iris, recorder = _client()
    with pytest.raises(_Stop):
        await call(iris, {})
    [kw] = recorder.calls
    assert "policy" not in kw
    if label == "timeseries.get":
        assert kw["timeout"] == iris.config.timeseries_timeout
    else:
        assert "timeout" not in kw


@pytest.mark.parametrize(
    ("options", "error"),
    [
        ({"timeout": 0}, ValueError),
        ({"timeout": float("nan")}, ValueError),
        ({"timeout": "5"}, TypeError),
        ({"max_retries": -1}, ValueError),
        ({"max_retries": True}, ValueError),
        ({"retry_policy": {"max_retries": 1}}, TypeError),
    ],
)
@pytest.mark.parametrize(("label", "call"), CALLS, ids=[label for label, _ in CALLS])
async def test_bad_call_options_are_refused_before_sending(
    label: str, call: Any, options: dict[str, Any], error: type[Exception]
) -> None:
    iris, recorder = _client()
    with pytest.raises(error):
        await call(iris, options)
    assert recorder.calls == []


async def test_pull_and_paginate_options_are_checked_at_once() -> None:
    iris, recorder = _client()
    with pytest.raises(ValueError, match="timeout"):
        await iris.timeseries.query([URN], ["t"], timeout=-1)
    with pytest.raises(ValueError, match="max_retries"):
        iris.timeseries.stream([URN], ["t"], max_retries=-2)
    with pytest.raises(TypeError, match="retry_policy"):
        iris.devices.paginate(retry_policy=3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="timeout"):
        iris.devices.stream_commands(["S1"], {"w": 1}, timeout=0)
    assert recorder.calls == []


async def test_query_passes_its_options_to_every_call() -> None:
    iris, recorder = _client()
    with pytest.raises(_Stop):
        await iris.timeseries.query([URN], ["t"], limit=5, timeout=3, max_retries=0)
    assert recorder.calls
    assert all(kw["timeout"] == Timeout(total=3.0) for kw in recorder.calls)
    assert all(kw["policy"].max_retries == 0 for kw in recorder.calls)


# -- end to end: a per-call retry override against a server that answers 503 -------------------


@pytest.fixture
async def unavailable() -> AsyncIterator[tuple[str, list[str]]]:
    seen: list[str] = []

    async def handler(request: web.Request) -> web.Response:
        seen.append(request.path)
        return web.json_response({"message": "busy"}, status=503)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    async with TestServer(app, host="127.0.0.1") as server:
        yield str(server.make_url("")).rstrip("/"), seen


async def test_max_retries_per_call_overrides_the_clients(
    unavailable: tuple[str, list[str]],
) -> None:
    url, seen = unavailable
    clock = ManualClock()
    async with Iris360Client._with_hooks(
        url, token="t", tenant="a", scope="/", max_retries=0, clock=clock, environ={}
    ) as iris:
        with pytest.raises(InternalServerError):
            await iris.connectors.out.get(1)
        assert len(seen) == 1
        with pytest.raises(InternalServerError):
            await iris.connectors.out.get(1, max_retries=4)
        assert len(seen) == 1 + 5
        with pytest.raises(InternalServerError):
            await iris.connectors.out.get(1, retry_policy=RetryPolicy(max_retries=2, base=0.001))
        assert len(seen) == 1 + 5 + 3
        assert iris.config.max_retries == 0  # the client itself is unchanged


# -- with_options --------------------------------------------------------------------------


async def test_with_options_connection_limit_gives_the_copy_its_own_pool(
    unavailable: tuple[str, list[str]],
) -> None:
    url, _ = unavailable
    async with Iris360Client._with_hooks(url, token="t", environ={}) as iris:
        async with iris.with_options(connection_limit=5, max_retries=0) as gentle:
            assert gentle._transport.pool is not iris._transport.pool
            assert gentle._transport.pool.connection_limit == 5
            assert gentle.config.connection_limit == 5
            assert gentle._transport.tokens is iris._transport.tokens
            assert gentle._transport.gate is iris._transport.gate
            with pytest.raises(InternalServerError):
                await gentle.connectors.out.get(1)
            own = gentle._transport.pool.session
            assert own is not None
            assert own is not iris._transport.pool.session
        assert own.closed  # the copy owns the pool it made and closed it
        assert not iris.closed
        assert iris._transport.pool.connection_limit == 100


async def test_with_options_keeps_a_caller_session_with_its_own_limit() -> None:
    async with aiohttp.ClientSession() as session:
        iris = Iris360Client._with_hooks("http://h", token="t", session=session, environ={})
        copy = iris.with_options(connection_limit=2)
        assert copy._transport.pool.session is session
        assert copy._transport.pool.connection_limit == 2
        await copy.aclose()
        await iris.aclose()
        assert not session.closed  # never closes a caller's session


def test_with_options_credentials_give_the_copy_its_own_tokens() -> None:
    iris = Iris360Client._with_hooks("http://h", token="t", environ={})
    other = iris.with_options(username="b@example.com", password="pw-b")
    assert other._transport.tokens is not iris._transport.tokens
    assert other._transport.gate is iris._transport.gate
    assert other._transport.pool is iris._transport.pool
    elsewhere = iris.with_options(base_url="http://other", token="t2")
    assert elsewhere.base_url == "http://other"
    assert elsewhere._transport.gate is not iris._transport.gate
    assert elsewhere._transport.budget is not iris._transport.budget
    assert elsewhere._transport.tokens.current_token() == "t2"
    assert iris._transport.tokens.current_token() == "t"


def test_with_options_retry_policy_and_request_settings_share_everything() -> None:
    iris = Iris360Client._with_hooks("http://h", token="t", environ={})
    policy = RetryPolicy(max_retries=1, base=0.01, cap=0.05)
    fast = iris.with_options(retry_policy=policy, proxy="http://127.0.0.1:3128")
    assert fast._transport.policy == policy
    assert fast.config.max_retries == 1
    assert fast.config.proxy == "http://127.0.0.1:3128"
    for name in ("pool", "tokens", "gate", "budget"):
        assert getattr(fast._transport, name) is getattr(iris._transport, name), name
    with pytest.raises(ValueError, match="connection_limit"):
        iris.with_options(connection_limit=0)
    with pytest.raises(TypeError, match="retry_policy"):
        iris.with_options(retry_policy="fast")
