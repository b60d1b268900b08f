"""Emulator fault injection: every fault kind, per endpoint or global, switchable at runtime."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from iris360_async.testing import FaultProfile, Iris360Emulator
from iris360_async.testing.faults import REDIRECT_TRAP

SERIALS = [f"SN{i:06d}" for i in range(1, 11)]


class Api:
    def __init__(self, emu: Iris360Emulator, session: aiohttp.ClientSession) -> None:
        self.emu = emu
        self.session = session
        self.token = emu.issue_token().token

    async def bulk(
        self, serials: list[str] = SERIALS, *, follow: bool = False
    ) -> tuple[int, bytes, Any]:
        async with self.session.post(
            self.emu.api_url + "/devices/sendCommandsBulk",
            json={"device_serials": serials, "w_reboot": True},
            headers={"Authorization": f"Bearer {self.token}"},
            allow_redirects=follow,
        ) as resp:
            return resp.status, await resp.read(), resp.headers

    async def devices(self) -> int:
        async with self.session.post(
            self.emu.api_url + "/devices/paginate",
            json={"page": 1, "paginationSize": 1, "orderBy": "id", "orderDirection": False},
            headers={"Authorization": f"Bearer {self.token}"},
        ) as resp:
            await resp.read()
            return resp.status


@pytest.fixture
async def api() -> AsyncIterator[Api]:
    async with Iris360Emulator(devices=10, no_ota_fraction=0.0) as emu, \
            aiohttp.ClientSession() as session:
        yield Api(emu, session)


def applied(emu: Iris360Emulator) -> int:
    return emu.stats.total_applications()


async def test_rate_limit_answers_429_with_retry_after_and_applies_nothing(api: Api) -> None:
    api.emu.set_faults(FaultProfile(rate_limit_rate=1.0, retry_after=7), endpoint="devices.bulk")
    status, body, headers = await api.bulk()
    assert status == 429
    assert json.loads(body) == {"message": "Too Many Attempts."}
    assert headers["Retry-After"] == "7"
    assert applied(api.emu) == 0
    assert api.emu.stats.faults["rate_limit"] == 1


@pytest.mark.parametrize("status", [500, 502, 503, 504])
async def test_server_errors_before_processing(api: Api, status: int) -> None:
    api.emu.set_faults(FaultProfile(error_rate=1.0, error_status=status))
    got, body, headers = await api.bulk()
    assert got == status
    if status == 500:
        assert json.loads(body) == {"message": "Server Error"}
    else:
        assert headers["Content-Type"].startswith("text/html")
    assert applied(api.emu) == 0
    assert api.emu.stats.responses["devices.bulk"][status] == 1


async def test_reset_closes_the_connection_before_processing(api: Api) -> None:
    api.emu.set_faults(FaultProfile(reset_rate=1.0), endpoint="devices.bulk")
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await api.bulk()
    assert applied(api.emu) == 0
    assert api.emu.stats.responses["devices.bulk"][0] == 1


async def test_drop_loses_the_response_after_processing(api: Api) -> None:
    api.emu.set_faults(FaultProfile(drop_rate=1.0), endpoint="devices.bulk")
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await api.bulk()
    assert api.emu.stats.max_applications("w_reboot") == 1
    assert api.emu.stats.commanded_serials() == set(SERIALS)
    api.emu.clear_faults()
    status, _, _ = await api.bulk(SERIALS[:1])
    assert status == 207
    assert api.emu.stats.applications(SERIALS[0], "w_reboot") == 2


async def test_malformed_body_after_processing(api: Api) -> None:
    api.emu.set_faults(FaultProfile(malformed_rate=1.0), endpoint="devices.bulk")
    status, body, headers = await api.bulk()
    assert status == 207
    assert headers["Content-Type"].startswith("application/json")
    with pytest.raises(json.JSONDecodeError):
        json.loads(body)
    assert applied(api.emu) == len(SERIALS)


async def test_slow_response_after_processing(api: Api) -> None:
    api.emu.set_faults(FaultProfile(slow_rate=1.0, slow_delay=30.0), endpoint="devices.bulk")
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(api.bulk(), 0.3)
    assert applied(api.emu) == len(SERIALS)
    assert api.emu.stats.faults["slow"] == 1


async def test_revocation_makes_the_request_and_older_tokens_fail(api: Api) -> None:
    api.emu.set_faults(FaultProfile(revoke_rate=1.0, max_faults=1), endpoint="devices.bulk")
    status, body, _ = await api.bulk()
    assert (status, json.loads(body)) == (401, {"message": "Unauthenticated."})
    assert await api.devices() == 401  # the same token on another endpoint
    api.token = api.emu.issue_token().token
    status, _, _ = await api.bulk()
    assert status == 207


@pytest.mark.parametrize("after", [0, 3, 10])
async def test_forbidden_mid_chunk_commands_the_first_targets(api: Api, after: int) -> None:
    api.emu.set_faults(FaultProfile(forbidden_rate=1.0, forbidden_after=after),
                       endpoint="devices.bulk")
    status, body, _ = await api.bulk()
    assert (status, json.loads(body)) == (403, {"message": "This action is unauthorized."})
    assert api.emu.stats.commanded_serials() == set(SERIALS[:after])


async def test_forbidden_after_a_random_prefix(api: Api) -> None:
    api.emu.set_faults(FaultProfile(forbidden_rate=1.0), endpoint="devices.bulk")
    status, _, _ = await api.bulk()
    assert status == 403
    commanded = api.emu.stats.commanded_serials()
    assert commanded == set(SERIALS[: len(commanded)])
    assert len(commanded) < len(SERIALS)


async def test_per_target_broker_failures(api: Api) -> None:
    api.emu.set_faults(FaultProfile(item_broker_error_rate=1.0), endpoint="devices.bulk")
    status, body, _ = await api.bulk(SERIALS[:2])
    items = json.loads(body)
    assert status == 207
    assert [i["original"]["success"] for i in items] == [[], []]
    assert items[0]["original"]["errors"][0]["entityId"] == "urn:ngsi-ld:Device:SN000001"
    api.emu.set_faults(FaultProfile(item_exception_rate=1.0), endpoint="devices.bulk")
    _, body, _ = await api.bulk(SERIALS[:1])
    assert isinstance(json.loads(body)[0]["original"], str)
    assert applied(api.emu) == 0


async def test_rates_are_seeded_and_reproducible() -> None:
    async def run() -> list[int]:
        async with Iris360Emulator(devices=10, fault_seed=42) as emu, \
                aiohttp.ClientSession() as session:
            api = Api(emu, session)
            emu.set_faults(FaultProfile(error_rate=0.5))
            return [(await api.bulk(SERIALS[:1]))[0] for _ in range(20)]

    first = await run()
    assert first == await run()
    assert set(first) == {207, 500}


async def test_global_profile_spares_auth_endpoints_and_per_endpoint_overrides(
    api: Api,
) -> None:
    emu = api.emu
    emu.set_faults(FaultProfile(error_rate=1.0))
    assert await api.devices() == 500
    async with api.session.post(emu.api_url + "/login",
                                json={"email": emu.username, "password": emu.password}) as r:
        assert r.status == 200
    emu.set_faults(FaultProfile(rate_limit_rate=1.0), endpoint="devices.paginate")
    assert await api.devices() == 429
    emu.set_faults(FaultProfile(error_rate=1.0, error_status=503), endpoint="login")
    async with api.session.post(emu.api_url + "/login",
                                json={"email": emu.username, "password": emu.password}) as r:
        assert r.status == 503
    emu.set_faults(None)  # removes the global profile only
    assert (await api.bulk())[0] == 207
    assert await api.devices() == 429
    emu.clear_faults()
    assert await api.devices() == 200


async def test_max_faults_limits_injections(api: Api) -> None:
    api.emu.set_faults(FaultProfile(error_rate=1.0, max_faults=2))
    statuses = [(await api.bulk(SERIALS[:1]))[0] for _ in range(4)]
    assert statuses == [500, 500, 207, 207]


def test_profile_validation() -> None:
    with pytest.raises(ValueError, match="between 0 and 1"):
        FaultProfile(error_rate=1.5)
    with pytest.raises(ValueError, match="5xx"):
        FaultProfile(error_status=404)
    assert not FaultProfile().active
    assert FaultProfile(drop_rate=0.1).active
    emu = Iris360Emulator(devices=1)
    with pytest.raises(ValueError, match="unknown endpoint"):
        emu.set_faults(FaultProfile(), endpoint="nope")


async def test_forbidden_before_processing_on_other_endpoints(api: Api) -> None:
    api.emu.set_faults(FaultProfile(forbidden_rate=1.0))
    assert await api.devices() == 403
    assert api.emu.stats.faults["forbidden"] == 1


BULK_PATH = "/api/public/v1/devices/sendCommandsBulk"


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
async def test_redirect_before_processing_applies_nothing(api: Api, status: int) -> None:
    api.emu.set_faults(FaultProfile(redirect_rate=1.0, redirect_status=status),
                       endpoint="devices.bulk")
    got, body, headers = await api.bulk()
    assert got == status
    assert headers["Location"] == REDIRECT_TRAP + BULK_PATH
    assert b"Redirecting" in body
    assert applied(api.emu) == 0
    assert api.emu.stats.faults["redirect"] == 1
    assert api.emu.stats.redirect_hits == 0


async def test_redirect_after_processing_has_applied_the_commands(api: Api) -> None:
    api.emu.set_faults(FaultProfile(redirect_after_rate=1.0, redirect_status=303),
                       endpoint="devices.bulk")
    got, _, headers = await api.bulk()
    assert (got, headers["Location"]) == (303, REDIRECT_TRAP + BULK_PATH)
    assert api.emu.stats.commanded_serials() == set(SERIALS)
    assert api.emu.stats.max_applications("w_reboot") == 1
    assert api.emu.stats.faults["redirect_after"] == 1


async def test_the_redirect_trap_counts_clients_that_follow(api: Api) -> None:
    api.emu.set_faults(FaultProfile(redirect_after_rate=1.0, redirect_status=303),
                       endpoint="devices.bulk")
    got, body, _ = await api.bulk(follow=True)  # 303: aiohttp follows with a GET
    assert got == 404
    assert b"could not be found" in body
    assert api.emu.stats.redirect_hits == 1
    assert applied(api.emu) == len(SERIALS)  # applied once, by the first request only


async def test_redirect_to_the_same_url_loops(api: Api) -> None:
    api.emu.set_faults(
        FaultProfile(redirect_rate=1.0, redirect_location="{path}", max_faults=2),
        endpoint="devices.bulk",
    )
    got, _, headers = await api.bulk()
    assert (got, headers["Location"]) == (307, BULK_PATH)
    got, _, _ = await api.bulk(follow=True)  # 307 again, then the re-POST is processed
    assert got == 207
    assert api.emu.stats.requests["devices.bulk"] == 3
    assert api.emu.stats.redirect_hits == 0
    assert applied(api.emu) == len(SERIALS)


@pytest.mark.parametrize("after", [False, True])
async def test_redirect_on_login(api: Api, after: bool) -> None:
    emu = api.emu
    location = "https://elsewhere.invalid/login"
    rates = {"redirect_after_rate": 1.0} if after else {"redirect_rate": 1.0}
    emu.set_faults(FaultProfile(redirect_location=location, **rates), endpoint="login")
    async with api.session.post(emu.api_url + "/login", allow_redirects=False,
                                json={"email": emu.username, "password": emu.password}) as r:
        assert (r.status, r.headers["Location"]) == (307, location)
        assert emu.password not in await r.text()
    assert emu.stats.logins == (1 if after else 0)  # after processing: a token was issued


def test_redirect_profile_validation() -> None:
    with pytest.raises(ValueError, match="redirect_status"):
        FaultProfile(redirect_status=304)
    with pytest.raises(ValueError, match="redirect_location"):
        FaultProfile(redirect_location="/x\r\nSet-Cookie: a=b")
    with pytest.raises(ValueError, match="revoke_burst"):
        FaultProfile(revoke_burst=0)
    assert FaultProfile(redirect_after_rate=0.1).active


@pytest.mark.parametrize(("status", "title"), [(500, "500 Internal Server Error"),
                                               (503, "503 Service Temporarily Unavailable")])
async def test_gateway_html_error_page_on_request(api: Api, status: int, title: str) -> None:
    api.emu.set_faults(FaultProfile(error_rate=1.0, error_status=status, error_html=True))
    got, body, headers = await api.bulk()
    assert got == status
    assert headers["Content-Type"].startswith("text/html")
    text = body.decode()
    assert f"<title>{title}</title>" in text
    assert "\r\n" in text
    assert "openresty" in text
    assert applied(api.emu) == 0


async def test_json_error_body_for_any_5xx_on_request(api: Api) -> None:
    api.emu.set_faults(FaultProfile(error_rate=1.0, error_status=502, error_html=False))
    got, body, _ = await api.bulk()
    assert (got, json.loads(body)) == (502, {"message": "Server Error"})


async def test_revoke_burst_revokes_the_replay_after_a_refresh_too(api: Api) -> None:
    api.emu.set_faults(FaultProfile(revoke_rate=1.0, revoke_burst=2, max_faults=1),
                       endpoint="devices.bulk")
    assert (await api.bulk())[0] == 401
    api.token = api.emu.issue_token().token  # as a client would after refreshing
    assert (await api.bulk())[0] == 401      # the second revocation of the storm
    api.token = api.emu.issue_token().token
    assert (await api.bulk())[0] == 207
    assert api.emu.stats.faults["revoke"] == 2


async def test_bulk_requests_received_are_counted_per_serial(api: Api) -> None:
    emu = api.emu
    assert (await api.bulk(SERIALS[:2]))[0] == 207
    emu.set_faults(FaultProfile(rate_limit_rate=1.0, max_faults=1), endpoint="devices.bulk")
    assert (await api.bulk(SERIALS[1:3]))[0] == 429
    emu.set_faults(FaultProfile(reset_rate=1.0, max_faults=1), endpoint="devices.bulk")
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await api.bulk(SERIALS[2:3])
    api.token = "not-a-token"
    assert (await api.bulk(["SN000009", "NOT-IN-FLEET"]))[0] == 401
    assert emu.stats.bulk_received == {
        "SN000001": 1, "SN000002": 2, "SN000003": 2, "SN000009": 1, "NOT-IN-FLEET": 1,
    }
    assert applied(emu) == 2
    emu.stats.reset()
    assert emu.stats.bulk_received == {}
