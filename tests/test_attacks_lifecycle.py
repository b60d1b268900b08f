"""Hostile servers and fakes against the token manager and the command lifecycle."""

from __future__ import annotations

import json

import anyio
import pytest
from test_core_auth import FakeAuthServer, jwt, manager

from iris360_async._retry import ManualClock

# -- authentication -------------------------------------------------------------------------------


async def test_tokens_issued_already_expired_by_our_clock_are_not_refreshed_per_request() -> None:
    # The server's clock is ten minutes behind ours: every token it issues has an ``exp``
    # in our past. Proactive refresh cannot help; renewing on every request would double
    # the traffic (and hammer the refresh endpoint). Use the token until the server says 401.
    clock = ManualClock()
    server = FakeAuthServer(clock, lifetime=-600)
    tm = manager(clock, server, username="ops@example.com", password="pw")
    first = await tm.get_token()
    for _ in range(10):
        assert await tm.get_token() == first
    assert (server.logins, server.refreshes) == (1, 0)
    # a rejection still renews, once
    assert await tm.token_rejected(first) not in (None, first)
    assert server.refreshes == 1


async def test_a_hundred_requests_at_expiry_of_a_skewed_token_make_one_refresh() -> None:
    clock = ManualClock()
    server = FakeAuthServer(clock, lifetime=-600)
    tm = manager(clock, server, token=jwt(clock.time() + 100), refresh_token="r0")
    clock.advance(100)
    server.release.clear()
    tokens: list[str | None] = []

    async def caller() -> None:
        tokens.append(await tm.get_token())

    async with anyio.create_task_group() as tg:
        for _ in range(100):
            tg.start_soon(caller)
        await anyio.wait_all_tasks_blocked()
        server.release.set()
    for _ in range(10):
        tokens.append(await tm.get_token())
    assert server.refreshes == 1
    assert len(set(tokens)) == 1


async def test_a_refresh_answering_the_same_token_is_not_repeated_before_a_401() -> None:
    clock = ManualClock()
    server = FakeAuthServer(clock)
    tm = manager(clock, server, username="ops@example.com", password="pw", refresh_margin=30)
    token = await tm.get_token()
    assert token is not None
    same = json.dumps({"token": token, "refreshToken": "refresh-1"}).encode()
    server.refresh_replies.extend([same] * 50)
    clock.advance(server.lifetime - 20)  # inside the margin: one proactive refresh
    assert await tm.get_token() == token
    assert server.refreshes == 1
    for _ in range(40):  # up to and past the expiry: the server gave what it has
        clock.advance(1)
        assert await tm.get_token() == token
    assert server.refreshes == 1
    # the server rejects it: one reactive refresh per rejection, no loop
    assert await tm.token_rejected(token) == token
    assert server.refreshes == 2


@pytest.mark.parametrize("body", [b"<html><body>Login ok</body></html>", b"", b"[]", b"null"])
async def test_a_login_answering_200_with_no_token_object_is_a_decode_error_without_secrets(
    body: bytes,
) -> None:
    from iris360_async.errors import ResponseDecodeError

    clock = ManualClock()
    server = FakeAuthServer(clock)
    server.login_replies.append(body)
    tm = manager(clock, server, username="ops@example.com", password="hunter2-pw")
    with pytest.raises(ResponseDecodeError) as info:
        await tm.get_token()
    assert "hunter2-pw" not in repr(info.value) + str(info.value)
    assert "/login" in str(info.value)
    assert await tm.get_token() is not None  # the next request logs in again
