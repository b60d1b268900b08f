"""Emulator authentication: login, JWT access tokens, rotating refresh tokens, expiry, revocation,
throttling."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from iris360_async.testing import EmulatorPaths, Iris360Emulator


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


async def post(
    session: aiohttp.ClientSession, url: str, body: Any, token: str | None = None
) -> tuple[int, Any]:
    headers = {"Accept": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    async with session.post(url, json=body, headers=headers) as resp:
        return resp.status, json.loads(await resp.read())


async def login(session: aiohttp.ClientSession, emu: Iris360Emulator) -> dict[str, Any]:
    status, body = await post(
        session, emu.api_url + "/login", {"email": emu.username, "password": emu.password}
    )
    assert status == 200, body
    return dict(body)


def claims(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    return dict(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))))


async def paginate(session: aiohttp.ClientSession, emu: Iris360Emulator, token: str | None) -> int:
    body = {"page": 1, "paginationSize": 1, "orderBy": "devices.id", "orderDirection": False}
    status, _ = await post(session, emu.api_url + "/devices/paginate", body, token)
    return status


async def test_login_returns_a_jwt_with_sub_and_exp(session: aiohttp.ClientSession) -> None:
    async with Iris360Emulator(devices=5, clock_start=1_800_000_000, token_ttl=120) as emu:
        body = await login(session, emu)
        assert set(body) == {"id", "token", "refreshToken"}
        header = json.loads(base64.urlsafe_b64decode(body["token"].split(".")[0] + "=="))
        assert header == {"alg": "HS256", "typ": "JWT"}
        c = claims(body["token"])
        assert c["exp"] == 1_800_000_120
        assert c["sub"]
        assert emu.stats.logins == 1
        assert await paginate(session, emu, body["token"]) == 200


async def test_username_field_is_accepted_too(session: aiohttp.ClientSession) -> None:
    async with Iris360Emulator(devices=1) as emu:
        status, body = await post(session, emu.api_url + "/login",
                                  {"username": emu.username.upper(), "password": emu.password})
        assert status == 200
        assert "token" in body


async def test_wrong_credentials(session: aiohttp.ClientSession) -> None:
    async with Iris360Emulator(devices=1) as emu:
        status, body = await post(session, emu.api_url + "/login",
                                  {"email": emu.username, "password": "nope"})
        assert (status, body) == (401, {"email": "The provided credentials are incorrect"})
        status, body = await post(session, emu.api_url + "/login", {})
        assert status == 422
        assert body["message"] == "The email field is required. (and 1 more error)"
        assert body["errors"] == {"email": ["The email field is required."],
                                  "password": ["The password field is required."]}
        assert emu.stats.logins == 0
        assert emu.stats.login_failures == 2


@pytest.mark.parametrize("header", [None, "Bearer nonsense", "Bearer a.b.c", "Token x"])
async def test_missing_or_invalid_token_is_unauthenticated(
    session: aiohttp.ClientSession, header: str | None
) -> None:
    async with Iris360Emulator(devices=1) as emu:
        headers = {} if header is None else {"Authorization": header}
        async with session.post(emu.api_url + "/devices/paginate", json={}, headers=headers) as r:
            assert r.status == 401
            assert await r.json() == {"message": "Unauthenticated."}
        assert emu.stats.unauthenticated == 1


async def test_token_signed_by_another_emulator_is_rejected(
    session: aiohttp.ClientSession,
) -> None:
    async with Iris360Emulator(devices=1) as a, Iris360Emulator(devices=1) as b:
        token = (await login(session, a))["token"]
        assert await paginate(session, b, token) == 401


async def test_access_token_expires_with_the_emulator_clock(
    session: aiohttp.ClientSession,
) -> None:
    async with Iris360Emulator(devices=1, token_ttl=60) as emu:
        token = (await login(session, emu))["token"]
        emu.advance(59)
        assert await paginate(session, emu, token) == 200
        emu.advance(1)
        assert await paginate(session, emu, token) == 401


async def test_refresh_rotates_and_old_refresh_token_is_single_use(
    session: aiohttp.ClientSession,
) -> None:
    async with Iris360Emulator(devices=1, token_ttl=60) as emu:
        first = await login(session, emu)
        emu.advance(61)
        url = emu.api_url + "/refresh-token"
        status, second = await post(session, url, {"refreshToken": first["refreshToken"]})
        assert status == 200
        assert set(second) == {"token", "refreshToken"}
        assert second["refreshToken"] != first["refreshToken"]
        assert await paginate(session, emu, second["token"]) == 200
        assert await paginate(session, emu, first["token"]) == 401
        status, body = await post(session, url, {"refreshToken": first["refreshToken"]})
        assert (status, body) == (401, {"error": "Invalid refresh token"})
        status, third = await post(session, url, {"refreshToken": second["refreshToken"]})
        assert status == 200
        assert third["refreshToken"] not in (first["refreshToken"], second["refreshToken"])
        status, body = await post(session, url, {})
        assert status == 422
        assert body["errors"] == {"refreshToken": ["The refresh token field is required."]}
        assert (emu.stats.refreshes, emu.stats.refresh_failures) == (2, 2)


async def test_refresh_token_expires(session: aiohttp.ClientSession) -> None:
    async with Iris360Emulator(devices=1, refresh_ttl=100) as emu:
        first = await login(session, emu)
        emu.advance(100)
        status, body = await post(session, emu.api_url + "/refresh-token",
                                  {"refreshToken": first["refreshToken"]})
        assert (status, body) == (401, {"error": "Invalid refresh token"})


async def test_revocation_invalidates_issued_tokens(session: aiohttp.ClientSession) -> None:
    async with Iris360Emulator(devices=1) as emu:
        pair = await login(session, emu)
        emu.revoke_tokens()
        assert await paginate(session, emu, pair["token"]) == 401
        status, fresh = await post(session, emu.api_url + "/refresh-token",
                                   {"refreshToken": pair["refreshToken"]})
        assert status == 200
        assert await paginate(session, emu, fresh["token"]) == 200
        emu.revoke_tokens(refresh_tokens=True)
        status, _ = await post(session, emu.api_url + "/refresh-token",
                               {"refreshToken": fresh["refreshToken"]})
        assert status == 401


async def test_issue_token_skips_the_login_endpoint(session: aiohttp.ClientSession) -> None:
    async with Iris360Emulator(devices=1) as emu:
        pair = emu.issue_token()
        assert await paginate(session, emu, pair.token) == 200
        assert emu.stats.logins == 0


async def test_auth_rate_limit_answers_429_with_retry_after(
    session: aiohttp.ClientSession,
) -> None:
    async with Iris360Emulator(devices=1, auth_rate_limit=3, clock_start=1_800_000_000) as emu:
        for _ in range(3):
            await login(session, emu)
        async with session.post(emu.api_url + "/login",
                                json={"email": emu.username, "password": emu.password}) as r:
            assert r.status == 429
            assert await r.json() == {"message": "Too Many Attempts."}
            assert r.headers["Retry-After"] == "60"
            assert r.headers["X-RateLimit-Limit"] == "3"
            assert r.headers["X-RateLimit-Remaining"] == "0"
        emu.advance(60)
        await login(session, emu)


async def test_paths_are_configurable(session: aiohttp.ClientSession) -> None:
    paths = EmulatorPaths(login="/auth/login", refresh="/auth/refresh")
    async with Iris360Emulator(devices=1, paths=paths) as emu:
        status, _ = await post(session, emu.api_url + "/login",
                               {"email": emu.username, "password": emu.password})
        assert status == 404
        status, body = await post(session, emu.api_url + "/auth/login",
                                  {"email": emu.username, "password": emu.password})
        assert status == 200
        status, _ = await post(session, emu.api_url + "/auth/refresh",
                               {"refreshToken": body["refreshToken"]})
        assert status == 200


async def test_client_endpoint_paths_object_is_accepted() -> None:
    from iris360_async._config import EndpointPaths

    emu = Iris360Emulator(devices=1, paths=EndpointPaths(import_file="/devices/upload"))
    assert emu.config.paths.import_file == "/devices/upload"
    assert emu.config.paths.login == "/login"


async def test_laravel_without_accept_json(session: aiohttp.ClientSession) -> None:
    async with Iris360Emulator(devices=1, require_accept_json=True) as emu:
        async with session.post(emu.api_url + "/devices/paginate", json={},
                                headers={"Accept": "*/*"}) as r:
            assert r.status == 500
        async with session.post(emu.api_url + "/devices/paginate", json={},
                                headers={"Accept": "application/json"}) as r:
            assert r.status == 401
        token = emu.issue_token().token
        async with session.post(emu.api_url + "/devices/paginate", json={},
                                headers={"Authorization": f"Bearer {token}", "Accept": "*/*"},
                                allow_redirects=False) as r:
            assert r.status == 302
        status, _ = await post(session, emu.api_url + "/devices/paginate", {}, token)
        assert status == 422


def test_secrets_stay_out_of_reprs() -> None:
    emu = Iris360Emulator(devices=1)
    pair = emu.issue_token()
    assert pair.token not in repr(pair)
    assert pair.refresh_token not in repr(pair)
    assert emu.password not in repr(emu.config)
    assert emu.password not in repr(emu)
