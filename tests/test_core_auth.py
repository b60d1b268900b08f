"""TokenManager without HTTP: single flight, fallbacks, lockout protection, proactive refresh."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from collections.abc import Mapping
from typing import Any

import anyio
import pytest

from iris360_async._auth import (
    LOGIN_USERNAME_FIELD,
    REFRESH_TOKEN_FIELD,
    TokenManager,
    jwt_expiry,
)
from iris360_async._config import ClientConfig
from iris360_async._retry import ManualClock
from iris360_async.errors import (
    APIConnectionError,
    AuthenticationError,
    InternalServerError,
    RateLimitError,
    ResponseDecodeError,
    status_error_class,
)

PASSWORD = "hunter2-secret-pw"


def jwt(exp: Any = None, **claims: Any) -> str:
    def b64(data: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    payload = dict(claims)
    if exp is not None:
        payload["exp"] = exp
    return f"{b64({'alg': 'HS256', 'typ': 'JWT'})}.{b64(payload)}.c2lnbmF0dXJl"


def error(status: int, body: Any = None, **kw: Any) -> Exception:
    return status_error_class(status)(
        f"POST /x -> {status}", status=status, method="POST", url="http://h/x", body=body, **kw
    )


class FakeAuthServer:
    """Scripted login/refresh endpoint: counts calls, can block them until released."""

    def __init__(self, clock: ManualClock, lifetime: float = 3600.0) -> None:
        self.clock = clock
        self.lifetime = lifetime
        self.calls: list[tuple[str, dict[str, str]]] = []
        self.refresh_replies: list[Any] = []
        self.login_replies: list[Any] = []
        self.release = asyncio.Event()
        self.release.set()
        self.issued = 0

    def tokens(self) -> bytes:
        self.issued += 1
        return json.dumps(
            {
                "token": jwt(self.clock.time() + self.lifetime, n=self.issued),
                "refreshToken": f"refresh-{self.issued}",
            }
        ).encode()

    @property
    def refreshes(self) -> int:
        return sum(1 for path, _ in self.calls if path == "/refresh-token")

    @property
    def logins(self) -> int:
        return sum(1 for path, _ in self.calls if path == "/login")

    async def send(self, path: str, body: Mapping[str, str]) -> bytes:
        self.calls.append((path, dict(body)))
        await self.release.wait()
        replies = self.refresh_replies if path == "/refresh-token" else self.login_replies
        reply = replies.pop(0) if replies else None
        if isinstance(reply, Exception):
            raise reply
        if isinstance(reply, bytes):
            return reply
        return self.tokens()


def manager(
    clock: ManualClock, server: FakeAuthServer, **config: Any
) -> TokenManager:
    cfg = ClientConfig(base_url="http://h", **config)
    return TokenManager(cfg, clock=clock, send=server.send)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def server(clock: ManualClock) -> FakeAuthServer:
    return FakeAuthServer(clock)


# -- JWT ------------------------------------------------------------------------------------------


def test_jwt_expiry_reads_exp_without_checking_the_signature() -> None:
    assert jwt_expiry(jwt(1_700_000_123)) == 1_700_000_123.0
    assert jwt_expiry(jwt(1.5)) == 1.5


@pytest.mark.parametrize(
    "token",
    ["opaque-token", "a.b", "a.!!!.c", jwt(None), jwt("soon"), jwt(True),
     "x." + base64.urlsafe_b64encode(b"[1]").decode() + ".y"],
)
def test_jwt_expiry_unknown_for_opaque_or_odd_tokens(token: str) -> None:
    assert jwt_expiry(token) is None


# -- login and refresh ----------------------------------------------------------------------------


async def test_first_token_comes_from_one_login_with_the_email_field(
    clock: ManualClock, server: FakeAuthServer
) -> None:
    tm = manager(clock, server, username="ops@example.com", password=PASSWORD)
    token = await tm.get_token()
    assert token is not None
    assert server.calls == [
        ("/login", {LOGIN_USERNAME_FIELD: "ops@example.com", "password": PASSWORD})
    ]
    assert LOGIN_USERNAME_FIELD == "username"
    assert await tm.get_token() == token
    assert server.logins == 1
    assert tm.tokens is not None
    assert tm.tokens.refresh_token == "refresh-1"


async def test_rotating_refresh_token_is_always_replaced(
    clock: ManualClock, server: FakeAuthServer
) -> None:
    tm = manager(clock, server, token="old", refresh_token="r0")
    first = await tm.refresh()
    assert server.calls[-1] == ("/refresh-token", {REFRESH_TOKEN_FIELD: "r0"})
    assert first.refresh_token == "refresh-1"
    await tm.refresh()
    assert server.calls[-1] == ("/refresh-token", {REFRESH_TOKEN_FIELD: "refresh-1"})


async def test_access_token_and_refresh_token_aliases_are_accepted(
    clock: ManualClock, server: FakeAuthServer
) -> None:
    server.refresh_replies.append(b'{"access_token": "A", "refresh_token": "R"}')
    tm = manager(clock, server, token="old", refresh_token="r0")
    pair = await tm.refresh()
    assert (pair.token, pair.refresh_token) == ("A", "R")


@pytest.mark.parametrize("reply", [b"[]", b"not json", b'{"id": 3}'])
async def test_token_response_without_token_is_a_decode_error_without_secrets(
    clock: ManualClock, server: FakeAuthServer, reply: bytes
) -> None:
    server.refresh_replies.append(reply)
    tm = manager(clock, server, token="old", refresh_token="r0")
    with pytest.raises(ResponseDecodeError) as info:
        await tm.refresh()
    assert "r0" not in str(info.value)
    assert info.value.path in ("$", "$.token")


async def test_single_flight_two_hundred_waiters_one_refresh(
    clock: ManualClock, server: FakeAuthServer
) -> None:
    tm = manager(clock, server, token="expired-one", refresh_token="r0")
    server.release.clear()
    results: list[str | None] = []

    async def caller() -> None:
        results.append(await tm.token_rejected("expired-one"))

    async with anyio.create_task_group() as tg:
        for _ in range(200):
            tg.start_soon(caller)
        await anyio.wait_all_tasks_blocked()
        server.release.set()
    assert server.refreshes == 1
    assert server.logins == 0
    assert len(set(results)) == 1
    assert results[0] not in (None, "expired-one")


async def test_rejected_token_already_replaced_replays_without_refresh(
    clock: ManualClock, server: FakeAuthServer
) -> None:
    tm = manager(clock, server, token="t1", refresh_token="r0")
    new = await tm.token_rejected("t1")
    assert server.refreshes == 1
    # A request that was sent with t1 and fails later must not refresh again.
    assert await tm.token_rejected("t1") == new
    assert server.refreshes == 1


async def test_waiters_share_a_failed_refresh_instead_of_repeating_it(
    clock: ManualClock, server: FakeAuthServer
) -> None:
    server.refresh_replies.append(error(503))
    tm = manager(clock, server, token="t1", refresh_token="r0")
    server.release.clear()
    outcomes: list[BaseException] = []

    async def caller() -> None:
        try:
            await tm.token_rejected("t1")
        except InternalServerError as exc:
            outcomes.append(exc)

    async with anyio.create_task_group() as tg:
        for _ in range(50):
            tg.start_soon(caller)
        await anyio.wait_all_tasks_blocked()
        server.release.set()
    assert server.refreshes == 1
    assert len(outcomes) == 50


@pytest.mark.parametrize("status", [400, 401, 422])
async def test_refused_refresh_falls_back_to_exactly_one_login(
    clock: ManualClock, server: FakeAuthServer, status: int
) -> None:
    server.refresh_replies.append(error(status, {"error": "Invalid refresh token"}))
    tm = manager(
        clock, server, token="t1", refresh_token="r0", username="u@x", password=PASSWORD
    )
    token = await tm.token_rejected("t1")
    assert token not in (None, "t1")
    assert (server.refreshes, server.logins) == (1, 1)


async def test_refused_refresh_without_credentials_raises(
    clock: ManualClock, server: FakeAuthServer
) -> None:
    server.refresh_replies.append(error(401, {"error": "Invalid refresh token"}))
    tm = manager(clock, server, token="t1", refresh_token="r0")
    with pytest.raises(AuthenticationError):
        await tm.token_rejected("t1")
    assert server.logins == 0
    assert not tm.can_renew  # the dead refresh token is dropped


@pytest.mark.parametrize("status", [401, 403, 422])
async def test_failed_login_is_never_repeated_automatically(
    clock: ManualClock, server: FakeAuthServer, status: int
) -> None:
    server.login_replies.append(
        error(status, {"email": "The provided credentials are incorrect"})
    )
    tm = manager(clock, server, username="u@x", password=PASSWORD)
    with pytest.raises(status_error_class(status)):
        await tm.get_token()
    for _ in range(20):
        with pytest.raises(AuthenticationError, match="refused earlier") as info:
            await tm.get_token()
        assert info.value.status == status
        assert PASSWORD not in str(info.value)
    assert server.logins == 1
    # An explicit login forgets the failure and tries once more.
    tokens = await tm.login()
    assert tokens.token
    assert server.logins == 2


async def test_many_concurrent_callers_with_bad_credentials_make_one_login(
    clock: ManualClock, server: FakeAuthServer
) -> None:
    server.login_replies.append(error(401, {"email": "The provided credentials are incorrect"}))
    tm = manager(clock, server, username="u@x", password=PASSWORD)
    server.release.clear()
    failures = 0

    async def caller() -> None:
        nonlocal failures
        try:
            await tm.get_token()
        except AuthenticationError:
            failures += 1

    async with anyio.create_task_group() as tg:
        for _ in range(100):
            tg.start_soon(caller)
        await anyio.wait_all_tasks_blocked()
        server.release.set()
    assert failures == 100
    assert server.logins == 1


@pytest.mark.parametrize("path", ["/login", "/refresh-token"])
async def test_auth_rate_limit_is_raised_not_looped(
    clock: ManualClock, server: FakeAuthServer, path: str
) -> None:
    reply = error(429, {"message": "Too Many Attempts."}, retry_after=60.0)
    if path == "/login":
        server.login_replies.append(reply)
        tm = manager(clock, server, username="u@x", password=PASSWORD)
        call = tm.login
    else:
        server.refresh_replies.append(reply)
        tm = manager(clock, server, token="t", refresh_token="r0")
        call = tm.refresh
    with pytest.raises(RateLimitError):
        await call()
    assert len(server.calls) == 1


# -- proactive refresh ----------------------------------------------------------------------------


async def test_proactive_refresh_happens_margin_seconds_before_exp(
    clock: ManualClock, server: FakeAuthServer
) -> None:
    start = clock.time()
    tm = manager(clock, server, token=jwt(start + 100), refresh_token="r0", refresh_margin=30)
    assert tm.expires_at == start + 100
    clock.advance(69)
    assert await tm.get_token() == jwt(start + 100)
    assert server.refreshes == 0
    clock.advance(2)  # 71 s: inside the 30 s margin
    token = await tm.get_token()
    assert server.refreshes == 1
    assert token != jwt(start + 100)
    assert jwt_expiry(token or "") == clock.time() + server.lifetime


async def test_proactive_refresh_is_single_flight(
    clock: ManualClock, server: FakeAuthServer
) -> None:
    start = clock.time()
    tm = manager(clock, server, token=jwt(start + 100), refresh_token="r0", refresh_margin=30)
    clock.advance(80)
    server.release.clear()
    tokens: list[str | None] = []

    async def caller() -> None:
        tokens.append(await tm.get_token())

    async with anyio.create_task_group() as tg:
        for _ in range(200):
            tg.start_soon(caller)
        await anyio.wait_all_tasks_blocked()
        server.release.set()
    assert server.refreshes == 1
    assert len(set(tokens)) == 1
    assert tokens[0] != jwt(start + 100)


async def test_margin_never_exceeds_half_the_lifetime(
    clock: ManualClock, server: FakeAuthServer
) -> None:
    start = clock.time()
    tm = manager(clock, server, token=jwt(start + 20), refresh_token="r0", refresh_margin=30)
    clock.advance(9)
    await tm.get_token()
    assert server.refreshes == 0  # 30 s margin on a 20 s token would refresh on every call
    clock.advance(2)
    await tm.get_token()
    assert server.refreshes == 1


async def test_opaque_token_has_unknown_expiry_and_is_never_refreshed_proactively(
    clock: ManualClock, server: FakeAuthServer
) -> None:
    tm = manager(clock, server, token="opaque", refresh_token="r0")
    clock.advance(10**9)
    assert await tm.get_token() == "opaque"
    assert server.calls == []


async def test_transient_proactive_failure_keeps_the_still_valid_token(
    clock: ManualClock, server: FakeAuthServer, caplog: pytest.LogCaptureFixture
) -> None:
    start = clock.time()
    old = jwt(start + 100)
    server.refresh_replies.append(APIConnectionError("down", request_sent=False))
    tm = manager(clock, server, token=old, refresh_token="r0", refresh_margin=30)
    clock.advance(80)
    with caplog.at_level(logging.WARNING, logger="iris360_async"):
        assert await tm.get_token() == old
    assert server.refreshes == 1
    assert await tm.get_token() == old  # paused: no storm of refreshes
    assert server.refreshes == 1
    clock.advance(6)
    assert await tm.get_token() != old
    assert server.refreshes == 2


async def test_no_token_and_no_credentials_means_unauthenticated(
    clock: ManualClock, server: FakeAuthServer
) -> None:
    tm = manager(clock, server)
    assert await tm.get_token() is None
    assert await tm.token_rejected(None) is None
    assert server.calls == []
    with pytest.raises(ValueError, match="username"):
        await tm.login()
    with pytest.raises(ValueError, match="refresh"):
        await tm.refresh()


async def test_repr_and_token_set_hide_tokens(clock: ManualClock, server: FakeAuthServer) -> None:
    tm = manager(clock, server, token="sekrit-access", refresh_token="sekrit-refresh")
    pair = tm.tokens
    assert pair is not None
    for text in (repr(tm), str(tm), repr(pair), str(pair)):
        assert "sekrit" not in text
