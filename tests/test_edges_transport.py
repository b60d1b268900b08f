"""Transport and auth at the edges, against small hostile servers on 127.0.0.1: errors while
obtaining a token, redirects (never followed), repeated 401s, 429 on login/refresh, body size
limits, gateway pages and echoed secrets."""

from __future__ import annotations

import asyncio
import json
import pickle
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest
import test_core_transport
from aiohttp import web
from test_core_transport import (
    PASSWORD,
    PREFIX,
    TOKEN,
    ScriptedServer,
    jwt,
    reply,
    serving,
)

from iris360_async.errors import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    InternalServerError,
    Iris360Error,
    RateLimitError,
    RedirectError,
    ResponseDecodeError,
    ResponseTooLargeError,
)
from iris360_async.testing import FaultProfile, Iris360Emulator

USER = "ops@example.com"
server = test_core_transport.server  # the scripted server fixture
inject = test_core_transport.inject  # the fixture making the next session requests raise


class Elsewhere:
    """A second server (another port): the target of hostile redirects. Records every request."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str, bytes]] = []
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        self.requests.append((request.method, request.path_qs, await request.read()))
        return web.json_response({"token": "stolen", "refreshToken": "stolen"})


@pytest.fixture
async def elsewhere() -> AsyncIterator[Elsewhere]:
    target = Elsewhere()
    async with serving(target.handle) as target.url:
        yield target


def redirect(status: int, location: str, body: str = "") -> web.Response:
    return web.Response(status=status, headers={"Location": location}, text=body)


def tokens_reply(n: int = 1) -> web.Response:
    return reply(200, {"token": jwt(2_000_000_000, n), "refreshToken": f"refresh-{n}"})


def blob(exc: BaseException) -> str:
    """Everything an exception shows or carries, pickled form included."""
    parts = [str(exc), repr(exc), repr(exc.__dict__)]
    parts.append(repr(pickle.loads(pickle.dumps(exc)).__dict__))
    parts.append(pickle.dumps(exc).decode("latin-1"))
    return "\n".join(parts)


# -- 1. errors while obtaining a token ---------------------------------------------------------


@pytest.mark.parametrize(
    ("login_reply", "cls"),
    [
        (reply(503, {"message": "down"}), InternalServerError),
        (reply(500, text="<html><title>500 Internal</title></html>", content_type="text/html"),
         InternalServerError),
        (reply(401, {"email": "The provided credentials are incorrect"}), AuthenticationError),
        (reply(429, {"message": "Too Many Attempts."}), RateLimitError),
        (reply(200, text="not json", content_type="text/plain"), ResponseDecodeError),
        (reply(200, {"no": "token"}), ResponseDecodeError),
        (redirect(307, "/elsewhere"), RedirectError),
    ],
)
async def test_login_failure_reaches_the_request_marked_while_authenticating(
    server: ScriptedServer, login_reply: web.Response, cls: type[Iris360Error]
) -> None:
    server.on("POST", "/login", login_reply)
    server.on("POST", "/devices/sendCommandsBulk", reply(207, []))
    async with server.client(username=USER, password=PASSWORD) as iris:
        with pytest.raises(cls) as info:
            await iris._transport.request(
                "POST", "/devices/sendCommandsBulk", json={}, retry="write"
            )
    assert info.value.while_authenticating is True
    assert server.calls_to("/devices/sendCommandsBulk") == []  # the write was never sent
    assert len(server.calls_to("/login")) == 1


@pytest.mark.parametrize(
    ("error", "cls"),
    [
        (aiohttp.ServerTimeoutError("read timed out"), APITimeoutError),
        (aiohttp.ServerDisconnectedError(), APIConnectionError),
    ],
)
async def test_login_timeout_or_lost_connection_is_not_an_error_of_the_write(
    server: ScriptedServer,
    inject: Callable[..., list[int]],
    error: BaseException,
    cls: type[APIConnectionError],
) -> None:
    server.on("POST", "/devices/sendCommandsBulk", reply(207, []))
    async with server.client(username=USER, password=PASSWORD) as iris:
        inject(error)  # the login attempt fails after it was sent
        with pytest.raises(cls) as info:
            await iris._transport.request(
                "POST", "/devices/sendCommandsBulk", json={}, retry="write"
            )
    assert info.value.request_sent is True  # ... of the login
    assert info.value.while_authenticating is True  # the write itself never left
    assert server.calls_to("/devices/sendCommandsBulk") == []


async def test_refresh_failure_after_a_401_is_marked_while_authenticating(
    server: ScriptedServer,
) -> None:
    server.on("POST", "/refresh-token", reply(503, {"message": "down"}))
    server.on("GET", "/p", reply(401, {"message": "Unauthenticated."}))
    async with server.client(token=TOKEN, refresh_token="refresh-token-0") as iris:
        with pytest.raises(InternalServerError) as info:
            await iris._transport.request("GET", "/p")
    assert info.value.while_authenticating is True
    assert len(server.calls_to("/p")) == 1


async def test_proactive_refresh_failure_with_an_expired_token_is_marked(
    server: ScriptedServer,
) -> None:
    expired = jwt(server.clock.time() - 10)
    server.on("POST", "/refresh-token", reply(502, {"message": "bad gateway"}))
    server.on("GET", "/p", reply(200, {}))
    async with server.client(token=expired, refresh_token="refresh-token-0") as iris:
        with pytest.raises(InternalServerError) as info:
            await iris._transport.request("GET", "/p")
    assert info.value.while_authenticating is True
    assert server.calls_to("/p") == []


async def test_single_flight_waiters_all_get_the_mark(server: ScriptedServer) -> None:
    async def slow_login(request: web.Request) -> web.Response:
        await asyncio.sleep(0.01)
        return reply(503, {"message": "down"})

    server.on("POST", "/login", slow_login)
    server.on("GET", "/p", reply(200, {}))
    async with server.client(username=USER, password=PASSWORD) as iris:
        outcomes = await asyncio.gather(
            *(iris._transport.request("GET", "/p", retry="never") for _ in range(20)),
            return_exceptions=True,
        )
    assert all(isinstance(o, InternalServerError) for o in outcomes)
    assert all(o.while_authenticating for o in outcomes if isinstance(o, Iris360Error))
    assert len(server.calls_to("/login")) == 1
    assert server.calls_to("/p") == []


async def test_explicit_login_failure_is_not_marked(server: ScriptedServer) -> None:
    server.on("POST", "/login", reply(503, {"message": "down"}))
    async with server.client(username=USER, password=PASSWORD) as iris:
        with pytest.raises(InternalServerError) as info:
            await iris.auth.login()
    assert info.value.while_authenticating is False


# -- 2. redirects are never followed ------------------------------------------------------------


async def test_login_307_to_another_origin_sends_nothing_there(
    server: ScriptedServer, elsewhere: Elsewhere
) -> None:
    port = elsewhere.url.rsplit(":", 1)[1]
    location = f"http://thief:secret@127.0.0.1:{port}/steal?key=abc#frag"
    server.on("POST", "/login", redirect(307, location, body="<p>moved, body not shown</p>"))
    server.on("GET", "/p", reply(200, {}))
    async with server.client(username=USER, password=PASSWORD) as iris:
        with pytest.raises(RedirectError) as info:
            await iris._transport.request("GET", "/p")
    exc = info.value
    assert elsewhere.requests == []
    assert len(server.calls_to("/login")) == 1
    assert exc.status == exc.status_code == 307
    assert exc.location == f"http://127.0.0.1:{port}/steal"
    assert exc.while_authenticating is True
    assert str(exc) == (
        f"POST {PREFIX}/login -> 307 Temporary Redirect: redirect to "
        f"http://127.0.0.1:{port}/steal not followed"
    )
    for hidden in ("secret", "key=abc", "body not shown", PASSWORD):
        assert hidden not in str(exc)
    assert PASSWORD not in blob(exc)


async def test_refresh_307_never_sends_the_refresh_token_elsewhere(
    server: ScriptedServer, elsewhere: Elsewhere
) -> None:
    server.on("POST", "/refresh-token", redirect(307, elsewhere.url + "/refresh-token"))
    server.on("GET", "/p", reply(401, {"message": "Unauthenticated."}))
    async with server.client(token=TOKEN, refresh_token="refresh-secret-0") as iris:
        with pytest.raises(RedirectError) as info:
            await iris._transport.request("GET", "/p")
    assert info.value.while_authenticating is True
    assert info.value.location == elsewhere.url + "/refresh-token"
    assert elsewhere.requests == []
    assert len(server.calls_to("/refresh-token")) == 1


async def test_303_after_a_bulk_write_is_raised_and_the_write_sent_once(
    server: ScriptedServer, elsewhere: Elsewhere
) -> None:
    server.on("POST", "/devices/sendCommandsBulk", redirect(303, elsewhere.url + "/done"))
    async with server.client(token=TOKEN) as iris:
        with pytest.raises(RedirectError) as info:
            await iris.devices.send_commands_bulk(["S1", "S2"], {"w_ota": True})
    assert info.value.status == 303
    assert info.value.while_authenticating is False
    assert elsewhere.requests == []
    assert len(server.calls_to("/devices/sendCommandsBulk")) == 1


async def test_same_url_307_loop_posts_exactly_once(server: ScriptedServer) -> None:
    server.on("POST", "/devices/sendCommandsBulk",
              redirect(307, PREFIX + "/devices/sendCommandsBulk"))
    async with server.client(token=TOKEN) as iris:
        with pytest.raises(RedirectError) as info:
            await iris._transport.request(
                "POST", "/devices/sendCommandsBulk", json=["S1"], retry="write"
            )
    assert info.value.location == server.base_url + PREFIX + "/devices/sendCommandsBulk"
    assert len(server.calls_to("/devices/sendCommandsBulk")) == 1


@pytest.mark.parametrize("status", [301, 302, 307, 308])
async def test_redirect_on_a_read_is_an_error_and_never_retried(
    server: ScriptedServer, elsewhere: Elsewhere, status: int
) -> None:
    server.on("GET", "/p", redirect(status, elsewhere.url + "/p"))
    async with server.client(token=TOKEN) as iris:
        with pytest.raises(RedirectError) as info:
            await iris._transport.request("GET", "/p", retry="read")
        assert iris.stats.retries == 0
    assert info.value.status == status
    assert elsewhere.requests == []
    assert len(server.calls_to("/p")) == 1


async def test_redirect_without_location(server: ScriptedServer) -> None:
    server.on("GET", "/p", web.Response(status=302, text="moved"))
    async with server.client(token=TOKEN) as iris:
        with pytest.raises(RedirectError) as info:
            await iris._transport.request("GET", "/p")
    assert info.value.location is None
    assert str(info.value).endswith("redirect to no usable Location not followed")


# -- 4. repeated 401s ---------------------------------------------------------------------------


async def test_two_revocations_in_quick_succession_the_request_still_succeeds() -> None:
    from emulator_support import client_for

    async with Iris360Emulator(devices=5) as emu:
        emu.set_faults(FaultProfile(revoke_rate=1.0, max_faults=2), endpoint="devices.paginate")
        async with client_for(emu) as iris:
            devices = await iris.devices.paginate(page_size=5, max_items=5).collect()
            assert len(devices) == 5
            assert iris.stats.refreshes == 2
            assert iris.stats.replays == 2


async def test_fifty_concurrent_requests_after_a_revocation_make_one_refresh() -> None:
    from emulator_support import client_for

    async with Iris360Emulator(devices=5) as emu, client_for(emu) as iris:
        await iris.devices.paginate(page_size=1, max_items=1).collect()
        emu.revoke_tokens()
        before = emu.stats.refreshes
        pages = await asyncio.gather(
            *(iris.devices.paginate(page_size=1, max_items=1).collect() for _ in range(50))
        )
        assert all(len(p) == 1 for p in pages)
        assert emu.stats.refreshes - before == 1
        assert iris.stats.refreshes == 1


async def test_repeated_401s_renew_while_refreshes_succeed(server: ScriptedServer) -> None:
    state = {"n": 0, "rejections": 2}

    async def refresh(request: web.Request) -> web.Response:
        state["n"] += 1
        return reply(200, {"token": f"token-{state['n']}", "refreshToken": f"r{state['n']}"})

    async def protected(request: web.Request) -> web.Response:
        if state["rejections"]:  # revoked again right after every refresh, twice
            state["rejections"] -= 1
            return reply(401, {"message": "Unauthenticated."})
        return reply(200, {})

    server.on("POST", "/refresh-token", refresh)
    server.on("POST", "/devices/sendCommandsBulk", protected)
    async with server.client(token=TOKEN, refresh_token="r0") as iris:
        response = await iris._transport.request(
            "POST", "/devices/sendCommandsBulk", json=[], retry="write"
        )
    assert response.status == 200
    assert [c.headers["Authorization"] for c in server.calls_to("/devices/sendCommandsBulk")] == [
        f"Bearer {TOKEN}", "Bearer token-1", "Bearer token-2"
    ]


async def test_refresh_and_login_both_failing_fails_the_request_marked(
    server: ScriptedServer,
) -> None:
    server.on("POST", "/refresh-token", reply(401, {"message": "refresh token revoked"}))
    server.on("POST", "/login", reply(503, {"message": "down"}))
    server.on("GET", "/p", reply(401, {"message": "Unauthenticated."}))
    async with server.client(
        token=TOKEN, refresh_token="r-secret-0", username=USER, password=PASSWORD
    ) as iris:
        with pytest.raises(InternalServerError) as info:
            await iris._transport.request("GET", "/p")
    assert info.value.while_authenticating is True
    assert len(server.calls_to("/refresh-token")) == 1
    assert len(server.calls_to("/login")) == 1
    assert len(server.calls_to("/p")) == 1


@pytest.mark.parametrize("failure", [reply(503, {"message": "down"}), "reset"])
async def test_a_refresh_that_fails_falls_back_to_one_login(
    server: ScriptedServer, failure: Any
) -> None:
    calls = {"p": 0}

    async def protected(request: web.Request) -> web.Response:
        calls["p"] += 1
        if request.headers.get("Authorization") == "Bearer fresh":
            return reply(200, {})
        return reply(401, {"message": "Unauthenticated."})

    async def reset(request: web.Request) -> web.Response:
        assert request.transport is not None
        request.transport.close()
        return reply(500, {})

    server.on("POST", "/refresh-token", reset if failure == "reset" else failure)
    server.on("POST", "/login", reply(200, {"token": "fresh", "refreshToken": "r1"}))
    server.on("GET", "/p", protected)
    async with server.client(
        token=TOKEN, refresh_token="r-secret-0", username=USER, password=PASSWORD
    ) as iris:
        response = await iris._transport.request("GET", "/p")
    assert response.status == 200
    assert len(server.calls_to("/refresh-token")) == 1
    assert len(server.calls_to("/login")) == 1
    assert calls["p"] == 2


async def test_a_401_that_no_new_token_can_answer_is_marked(server: ScriptedServer) -> None:
    server.on("POST", "/devices/sendCommandsBulk", reply(401, {"message": "Unauthenticated."}))
    async with server.client(token=TOKEN) as iris:  # no refresh token, no credentials
        with pytest.raises(AuthenticationError) as info:
            await iris.devices.send_commands_bulk(["S1"], {"w_ota": True})
    assert info.value.while_authenticating is True
    assert len(server.calls_to("/devices/sendCommandsBulk")) == 1


# -- 14. a 429 on login/refresh is honoured once ------------------------------------------------


def too_many(retry_after: str | None) -> web.Response:
    headers = {} if retry_after is None else {"Retry-After": retry_after}
    return reply(429, {"message": "Too Many Attempts."}, headers=headers)


@pytest.mark.parametrize("wait", ["0", "5", "30"])
async def test_login_429_is_waited_out_once(server: ScriptedServer, wait: str) -> None:
    server.on("POST", "/login", too_many(wait), tokens_reply())
    server.on("GET", "/p", reply(200, {}))
    async with server.client(username=USER, password=PASSWORD) as iris:
        await iris._transport.request("GET", "/p")
    logins = server.calls_to("/login")
    assert len(logins) == 2
    assert logins[1].at - logins[0].at == float(wait)
    assert float(wait) in server.clock.sleeps or wait == "0"


async def test_refresh_429_is_waited_out_once(server: ScriptedServer) -> None:
    server.on("POST", "/refresh-token", too_many("2"), tokens_reply())
    server.on("GET", "/p", reply(401, {"message": "Unauthenticated."}), reply(200, {}))
    async with server.client(token=TOKEN, refresh_token="r0") as iris:
        await iris._transport.request("GET", "/p")
    assert len(server.calls_to("/refresh-token")) == 2
    assert server.clock.sleeps == [2.0]


@pytest.mark.parametrize("retry_after", [None, "31", "soon"])
async def test_login_429_without_a_usable_short_wait_raises_at_once(
    server: ScriptedServer, retry_after: str | None
) -> None:
    server.on("POST", "/login", too_many(retry_after))
    async with server.client(username=USER, password=PASSWORD) as iris:
        with pytest.raises(RateLimitError) as info:
            await iris._transport.request("GET", "/p")
    assert info.value.while_authenticating is True
    assert len(server.calls_to("/login")) == 1
    assert server.clock.sleeps == []


async def test_login_429_twice_is_never_a_loop(server: ScriptedServer) -> None:
    server.on("POST", "/login", too_many("1"))
    async with server.client(username=USER, password=PASSWORD) as iris:
        with pytest.raises(RateLimitError):
            await iris._transport.request("GET", "/p")
        with pytest.raises(RateLimitError):
            await iris.auth.login()
    assert len(server.calls_to("/login")) == 4  # two calls, one extra attempt each


@pytest.mark.parametrize("status", [400, 401, 403, 422])
async def test_refused_credentials_are_never_retried(server: ScriptedServer, status: int) -> None:
    server.on("POST", "/login", reply(status, {"message": "no"}, headers={"Retry-After": "0"}))
    async with server.client(username=USER, password=PASSWORD) as iris:
        with pytest.raises(APIStatusError) as info:
            await iris._transport.request("GET", "/p")
    assert info.value.while_authenticating is True
    assert len(server.calls_to("/login")) == 1


# -- 10. response body size limit ---------------------------------------------------------------


def chunked(total: int, piece: int = 4096) -> Callable[[web.Request], Any]:
    async def handler(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        sent = 0
        try:
            while sent < total:
                await response.write(b"x" * piece)
                sent += piece
            await response.write_eof()
        except (ConnectionResetError, aiohttp.ClientConnectionResetError):
            pass
        return response

    return handler


@pytest.mark.parametrize(
    "timeout",
    [None, 5.0],  # the default timeouts, and a per-attempt total of 5 s
)
async def test_a_chunked_body_over_the_limit_stops_being_read(
    server: ScriptedServer, timeout: float | None
) -> None:
    server.on("GET", "/big", chunked(1_000_000))
    kw: dict[str, Any] = {} if timeout is None else {"timeout": timeout}
    async with server.client(token=TOKEN, max_response_bytes=10_000, **kw) as iris:
        with pytest.raises(ResponseTooLargeError) as info:
            await iris._transport.request("GET", "/big", retry="read")
        assert iris.stats.retries == 0
    exc = info.value
    assert isinstance(exc, ResponseDecodeError)
    assert (exc.limit, exc.status, exc.method) == (10_000, 200, "GET")
    assert exc.url == server.base_url + PREFIX + "/big"
    assert exc.text.startswith("xxx")
    assert len(exc.text) <= 200
    assert "10000 bytes" in str(exc)
    assert len(server.calls_to("/big")) == 1


async def test_content_length_over_the_limit_is_refused_before_reading(
    server: ScriptedServer,
) -> None:
    server.on("GET", "/big", reply(200, text='{"rows": "' + "y" * 50_000 + '"}'))
    server.on("GET", "/small", reply(200, {"ok": True}))
    async with server.client(token=TOKEN, max_response_bytes=1_000) as iris:
        with pytest.raises(ResponseTooLargeError) as info:
            await iris._transport.request("GET", "/big")
        assert info.value.text.startswith('{"rows": "yyy')
        assert (await iris._transport.request("GET", "/small")).content == b'{"ok": true}'


async def test_error_bodies_are_limited_too_and_none_means_no_limit(
    server: ScriptedServer,
) -> None:
    server.on("GET", "/err", reply(500, text="z" * 5_000, content_type="text/plain"))
    server.on("GET", "/big", chunked(200_000))
    async with server.client(token=TOKEN, max_response_bytes=1_000) as iris:
        with pytest.raises(ResponseTooLargeError):
            await iris._transport.request("GET", "/err")
    async with server.client(token=TOKEN, max_response_bytes=None) as iris:
        response = await iris._transport.request("GET", "/big")
        assert len(response.content) >= 200_000


# -- 11. server text condensed, secrets masked --------------------------------------------------

NGINX_503 = (
    "<html>\r\n<head><title>503 Service Temporarily Unavailable</title></head>\r\n<body>\r\n"
    "<center><h1>503 Service Temporarily Unavailable</h1></center>\r\n"
    "<hr><center>openresty</center>\r\n</body>\r\n</html>\r\n"
)


async def test_gateway_page_becomes_its_title_on_one_line(server: ScriptedServer) -> None:
    server.on("POST", "/devices/sendCommandsBulk",
              reply(503, text=NGINX_503, content_type="text/html"))
    async with server.client(token=TOKEN) as iris:
        with pytest.raises(InternalServerError) as info:
            await iris._transport.request(
                "POST", "/devices/sendCommandsBulk", json=[], retry="write"
            )
    exc = info.value
    assert str(exc).endswith("503 Service Temporarily Unavailable")
    assert "\n" not in str(exc)
    assert "\r" not in str(exc)
    assert exc.server_message == "503 Service Temporarily Unavailable"
    assert exc.status == exc.status_code == 503
    assert exc.text == NGINX_503  # the raw text stays available


async def test_login_500_echoing_the_password_never_shows_it(server: ScriptedServer) -> None:
    echo = {"message": f"could not check password {PASSWORD} for {USER}",
            "input": {"password": PASSWORD, "list": [PASSWORD]}}
    server.on("POST", "/login", reply(500, echo))
    async with server.client(username=USER, password=PASSWORD) as iris:
        with pytest.raises(InternalServerError) as info:
            await iris._transport.request("GET", "/p")
    exc = info.value
    assert PASSWORD not in blob(exc)
    assert PASSWORD not in exc.text
    assert PASSWORD not in repr(exc.body)
    assert exc.server_message == f"could not check password *** for {USER}"
    assert exc.body["input"] == {"password": "***", "list": ["***"]}


async def test_login_plain_text_echo_of_the_password_is_masked(server: ScriptedServer) -> None:
    server.on("POST", "/login", reply(502, text=f"upstream said: {PASSWORD}\r\n",
                                      content_type="text/plain"))
    async with server.client(username=USER, password=PASSWORD) as iris:
        with pytest.raises(InternalServerError) as info:
            await iris._transport.request("GET", "/p")
    assert PASSWORD not in blob(info.value)
    assert str(info.value).endswith("upstream said: ***")


async def test_tokens_echoed_by_a_request_error_are_masked(server: ScriptedServer) -> None:
    server.on("GET", "/p", reply(500, {"error": f"bad header Bearer {TOKEN}"},
                                 headers={"X-Echo": TOKEN}))
    async with server.client(token=TOKEN, refresh_token="refresh-secret-value") as iris:
        with pytest.raises(InternalServerError) as info:
            await iris._transport.request("GET", "/p")
    exc = info.value
    assert TOKEN not in blob(exc)
    assert exc.server_message == "bad header Bearer ***"
    assert exc.headers["X-Echo"] == "***"


async def test_raw_error_text_is_bounded(server: ScriptedServer) -> None:
    server.on("GET", "/p", reply(500, text="e" * 200_000, content_type="text/plain"))
    async with server.client(token=TOKEN) as iris:
        with pytest.raises(InternalServerError) as info:
            await iris._transport.request("GET", "/p")
    assert len(info.value.text) == 64 * 1024
    assert len(str(info.value)) < 300


async def test_decode_error_text_is_condensed_in_resources_too(server: ScriptedServer) -> None:
    server.on("POST", "/devices/paginate",
              reply(200, text=NGINX_503.replace("503", "200"), content_type="text/html"))
    async with server.client(token=TOKEN) as iris:
        with pytest.raises(ResponseDecodeError) as info:
            await iris.devices.paginate(page_size=1, max_items=1).collect()
    assert info.value.text == "200 Service Temporarily Unavailable"
    assert info.value.path == "$"
    assert str(info.value).startswith(f"POST {PREFIX}/devices/paginate -> 200:")


def test_status_code_is_an_alias_of_status() -> None:
    for status in (301, 400, 404, 409, 429, 503, 599):
        from iris360_async.errors import status_error_class

        exc = status_error_class(status)("x", status=status, method="GET", url="u")
        assert exc.status_code == status
    with pytest.raises(AttributeError):
        exc.status_code = 1  # type: ignore[misc]


def test_json_body_with_secret_keys_is_masked_too() -> None:
    from iris360_async.errors import mask_value

    body = {PASSWORD: [1, {"k": f"x{PASSWORD}y"}], "n": None, "f": 1.5}
    assert mask_value(body, [PASSWORD]) == {"***": [1, {"k": "x***y"}], "n": None, "f": 1.5}
    assert mask_value(body, []) is body
    assert json.dumps(mask_value(body, [None, PASSWORD])).count(PASSWORD) == 0


@pytest.mark.parametrize("timeout", [None, 5.0])
async def test_a_small_compressed_body_that_inflates_past_the_limit_is_stopped(
    server: ScriptedServer, timeout: float | None
) -> None:
    import gzip

    packed = gzip.compress(b"0" * 2_000_000)
    assert len(packed) < 10_000  # its Content-Length passes the check
    server.on("GET", "/bomb", web.Response(
        status=200, body=packed,
        headers={"Content-Encoding": "gzip", "Content-Type": "application/json"},
    ))
    kw: dict[str, Any] = {} if timeout is None else {"timeout": timeout}
    async with server.client(token=TOKEN, max_response_bytes=100_000, **kw) as iris:
        with pytest.raises(ResponseTooLargeError) as info:
            await iris._transport.request("GET", "/bomb")
    assert info.value.limit == 100_000
    assert info.value.text.startswith("000")
