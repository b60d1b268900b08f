"""Proxies: ``proxy=`` / ``IRIS360_PROXY`` and ``trust_env=`` (``HTTP_PROXY``/``NO_PROXY``),
against a tiny forward proxy on 127.0.0.1 (an aiohttp server that forwards absolute-form
``http://`` requests)."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from iris360_async import APIConnectionError, Iris360Client

PROXY_PASSWORD = "proxy-secret-pw"


@dataclass
class Servers:
    upstream: str
    proxy: str
    proxy_port: int
    upstream_seen: list[str] = field(default_factory=list)
    proxy_seen: list[tuple[str, str | None]] = field(default_factory=list)


@pytest.fixture
async def servers() -> AsyncIterator[Servers]:
    async def connector(request: web.Request) -> web.Response:
        box.upstream_seen.append(request.path)
        return web.json_response({"id": 7, "name": "c", "type": "mqtt"})

    async def forward(request: web.Request) -> web.Response:
        target = request.raw_path  # absolute form: http://host:port/path
        box.proxy_seen.append((target, request.headers.get("Proxy-Authorization")))
        assert target.startswith("http://127.0.0.1:")  # never anywhere else
        headers = {k: v for k, v in request.headers.items() if k.lower() != "proxy-authorization"}
        async with aiohttp.ClientSession() as session, session.request(
            request.method, target, headers=headers, data=await request.read()
        ) as answer:
            return web.Response(
                body=await answer.read(), status=answer.status, content_type=answer.content_type
            )

    upstream_app = web.Application()
    upstream_app.router.add_get("/api/public/v1/connectors/out/{id}", connector)
    proxy_app = web.Application()
    proxy_app.router.add_route("*", "/{tail:.*}", forward)
    async with TestServer(upstream_app, host="127.0.0.1") as up, TestServer(
        proxy_app, host="127.0.0.1"
    ) as proxy:
        box = Servers(
            upstream=str(up.make_url("")).rstrip("/"),
            proxy=f"http://127.0.0.1:{proxy.port}",
            proxy_port=proxy.port,
        )
        yield box


async def test_proxy_argument_sends_every_request_through_the_proxy(servers: Servers) -> None:
    async with Iris360Client._with_hooks(
        servers.upstream, token="t", proxy=servers.proxy, environ={}
    ) as iris:
        connector = await iris.connectors.out.get(7)
    assert connector.id == 7
    assert servers.proxy_seen == [(servers.upstream + "/api/public/v1/connectors/out/7", None)]
    assert servers.upstream_seen == ["/api/public/v1/connectors/out/7"]


async def test_iris360_proxy_variable_and_proxy_credentials(servers: Servers) -> None:
    proxy = f"http://ops:{PROXY_PASSWORD}@127.0.0.1:{servers.proxy_port}"
    env = {"IRIS360_PROXY": proxy}
    async with Iris360Client._with_hooks(servers.upstream, token="t", environ=env) as iris:
        await iris.connectors.out.get(7)
        assert PROXY_PASSWORD not in repr(iris.config)
        assert "***@127.0.0.1" in repr(iris.config)
    [(_, authorization)] = servers.proxy_seen
    assert authorization == "Basic " + base64.b64encode(f"ops:{PROXY_PASSWORD}".encode()).decode()


async def test_caller_session_gets_the_proxy_per_request(servers: Servers) -> None:
    async with aiohttp.ClientSession() as session, Iris360Client._with_hooks(
        servers.upstream, token="t", session=session, proxy=servers.proxy, environ={}
    ) as iris:
        await iris.connectors.out.get(7)
    assert len(servers.proxy_seen) == 1


async def test_trust_env_takes_http_proxy_and_honours_no_proxy(
    servers: Servers, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy",
                 "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", servers.proxy)
    async with Iris360Client._with_hooks(servers.upstream, token="t", environ={}) as iris:
        await iris.connectors.out.get(7)
    assert servers.proxy_seen == []  # trust_env is off by default
    async with Iris360Client._with_hooks(
        servers.upstream, token="t", trust_env=True, environ={}
    ) as iris:
        await iris.connectors.out.get(7)
    assert len(servers.proxy_seen) == 1
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    async with Iris360Client._with_hooks(
        servers.upstream, token="t", environ={"IRIS360_TRUST_ENV": "true"}
    ) as iris:
        assert iris.config.trust_env is True
        await iris.connectors.out.get(7)
    assert len(servers.proxy_seen) == 1  # NO_PROXY: direct
    assert len(servers.upstream_seen) == 3


async def test_an_unreachable_proxy_is_a_connection_error_without_its_password(
    servers: Servers,
) -> None:
    dead = f"http://ops:{PROXY_PASSWORD}@127.0.0.1:9"
    async with Iris360Client._with_hooks(
        servers.upstream, token="t", proxy=dead, max_retries=0, environ={}
    ) as iris:
        with pytest.raises(APIConnectionError) as caught:
            await iris.connectors.out.get(7)
    assert caught.value.request_sent is False
    assert PROXY_PASSWORD not in str(caught.value)
    assert servers.upstream_seen == []


@pytest.mark.parametrize(
    ("proxy", "error"),
    [("socks5://127.0.0.1:1080", ValueError), ("http://", ValueError),
     ("http://h:99999", ValueError), (3128, TypeError)],
)
def test_bad_proxies_are_refused_when_the_client_is_built(proxy: object, error: type) -> None:
    with pytest.raises(error, match="proxy"):
        Iris360Client._with_hooks("http://h", token="t", proxy=proxy, environ={})


def test_bad_trust_env_is_refused() -> None:
    with pytest.raises(TypeError, match="trust_env"):
        Iris360Client._with_hooks("http://h", token="t", trust_env="yes", environ={})
    with pytest.raises(ValueError, match="IRIS360_TRUST_ENV"):
        Iris360Client._with_hooks("http://h", token="t", environ={"IRIS360_TRUST_ENV": "maybe"})
