"""Iris360Client: configuration (arguments and environment), lifecycle, copies, namespaces,
public exports, secrets and picklable errors."""

from __future__ import annotations

import gc
import inspect
import pickle
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

import iris360_async
from iris360_async import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    ClientConfig,
    EndpointPaths,
    Iris360Client,
    Iris360Error,
    RateLimitError,
    ResponseDecodeError,
    RetryPolicy,
    Timeout,
)
from iris360_async._config import NOT_GIVEN
from iris360_async._retry import ManualClock, SystemClock
from iris360_async.errors import status_error_class

PASSWORD = "hunter2-secret-pw"
TOKEN = "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.secret-token-sig"
REFRESH = "refresh-secret-value"


@pytest.fixture
async def base_url() -> AsyncIterator[str]:
    calls: list[str] = []

    async def handle(request: web.Request) -> web.Response:
        calls.append(request.path)
        if request.path.endswith("/login"):
            return web.json_response(
                {"email": "The provided credentials are incorrect"}, status=401
            )
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield str(server.make_url("")).rstrip("/")
    finally:
        await server.close()


# -- configuration --------------------------------------------------------------------------------


@pytest.mark.parametrize("target", [Iris360Client, Iris360Client.__init__, RetryPolicy])
def test_public_signatures_show_no_test_hooks_and_readable_defaults(target: Any) -> None:
    signature = inspect.signature(target)
    assert [name for name in signature.parameters if name.startswith("_")] == []
    assert "object at 0x" not in str(signature)
    assert "<built-in" not in str(signature)


def test_not_given_defaults_read_as_such() -> None:
    parameters = inspect.signature(Iris360Client).parameters
    for name in ("timeout", "timeseries_timeout", "max_response_bytes"):
        assert str(parameters[name]).endswith(" = NOT_GIVEN"), name
    assert repr(NOT_GIVEN) == "NOT_GIVEN"
    assert not NOT_GIVEN
    assert pickle.loads(pickle.dumps(NOT_GIVEN)) is NOT_GIVEN
    assert inspect.signature(RetryPolicy).parameters["random"].default is None
    policy = RetryPolicy()
    assert policy.random is None  # random.random
    assert 0.0 <= policy.backoff(0) <= policy.base
    with pytest.raises(TypeError, match="random"):
        RetryPolicy(random=0.5)  # type: ignore[arg-type]


def test_test_hooks_reach_only_the_client_built_with_them() -> None:
    clock = ManualClock()
    hooked = Iris360Client._with_hooks(
        "http://h", clock=clock, random=lambda: 0.0, environ={"IRIS360_TENANT": "from-hook"}
    )
    assert hooked._transport.clock is clock
    assert hooked._transport.policy.backoff(5) == 0.0
    assert hooked.tenant == "from-hook"
    plain = Iris360Client("http://h", tenant="t")
    assert isinstance(plain._transport.clock, SystemClock)
    assert plain._transport.policy.random is None
    with pytest.raises(TypeError):
        Iris360Client("http://h", _clock=clock)  # type: ignore[call-arg]



def test_keyword_configuration_and_defaults() -> None:
    iris = Iris360Client("https://iris.example.com", token="t", tenant="libelium", scope="/")
    config = iris._config
    assert isinstance(config, ClientConfig)
    assert config.api_root == "https://iris.example.com/api/public/v1"
    assert (iris.tenant, iris.scope) == ("libelium", "/")
    assert config.timeout == Timeout()
    assert config.max_retries == 3
    assert config.connection_limit == 100
    assert config.user_agent == f"iris360-async/{iris360_async.__version__}"
    assert config.verify_ssl is True
    assert config.paths == EndpointPaths()
    assert iris._transport.policy == RetryPolicy(max_retries=3)


def test_retry_policy_argument() -> None:
    policy = RetryPolicy(max_retries=5, base=0.1, cap=2.0)
    iris = Iris360Client._with_hooks("http://h", retry_policy=policy, environ={})
    assert iris._transport.policy == policy
    assert iris._config.max_retries == 5
    both = Iris360Client._with_hooks("http://h", retry_policy=policy, max_retries=1, environ={})
    assert both._transport.policy == policy.replace(max_retries=1)
    copy = both.with_options(max_retries=9)
    assert copy._transport.policy == policy.replace(max_retries=9)


def test_timeout_accepts_a_number_or_a_timeout() -> None:
    assert Iris360Client("http://h", timeout=5)._config.timeout == Timeout(total=5.0)
    custom = Timeout(connect=1, read=2, total=3, deadline=10)
    assert Iris360Client("http://h", timeout=custom)._config.timeout is custom
    with pytest.raises(TypeError):
        Iris360Client("http://h", timeout="slow")  # type: ignore[arg-type]


def test_bad_arguments_raise_before_any_request() -> None:
    with pytest.raises(ValueError, match="base_url"):
        Iris360Client._with_hooks(environ={})
    with pytest.raises(ValueError, match="http"):
        Iris360Client._with_hooks("iris.example.com", environ={})
    with pytest.raises(ValueError, match="username= was given without a password"):
        Iris360Client._with_hooks("http://h", username="u", environ={})
    with pytest.raises(ValueError, match="max_retries"):
        Iris360Client._with_hooks("http://h", max_retries=-1, environ={})
    with pytest.raises(TypeError, match="session"):
        Iris360Client._with_hooks("http://h", session=object(), environ={})


def test_every_setting_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    env = {
        "IRIS360_BASE_URL": "https://env.example.com",
        "IRIS360_USERNAME": "env@example.com",
        "IRIS360_PASSWORD": PASSWORD,
        "IRIS360_TOKEN": TOKEN,
        "IRIS360_REFRESH_TOKEN": REFRESH,
        "IRIS360_TENANT": "envtenant",
        "IRIS360_SCOPE": "/env",
        "IRIS360_TIMEOUT": "12.5",
        "IRIS360_MAX_RETRIES": "7",
        "IRIS360_CONNECTION_LIMIT": "9",
        "IRIS360_USER_AGENT": "env-agent",
        "IRIS360_LOGIN_PATH": "/auth/login",
        "IRIS360_REFRESH_PATH": "/auth/refresh",
        "IRIS360_IMPORT_FILE_PATH": "/devices/import",
        "IRIS360_CONNECTOR_MODELS_PATH": "/connectors/{id}/models",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    config = Iris360Client()._config
    assert config.base_url == "https://env.example.com"
    assert (config.username, config.password) == ("env@example.com", PASSWORD)
    assert (config.token, config.refresh_token) == (TOKEN, REFRESH)
    assert (config.tenant, config.scope) == ("envtenant", "/env")
    assert config.timeout == Timeout(total=12.5)
    assert (config.max_retries, config.connection_limit) == (7, 9)
    assert config.user_agent == "env-agent"
    assert config.paths == EndpointPaths(
        login="/auth/login", refresh="/auth/refresh", import_file="/devices/import",
        connector_models="/connectors/{id}/models",
    )


def test_explicit_arguments_win_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IRIS360_BASE_URL", "https://env.example.com")
    monkeypatch.setenv("IRIS360_TENANT", "envtenant")
    monkeypatch.setenv("IRIS360_MAX_RETRIES", "7")
    monkeypatch.setenv("IRIS360_TIMEOUT", "12.5")
    monkeypatch.setenv("IRIS360_LOGIN_PATH", "/auth/login")
    iris = Iris360Client(
        "https://arg.example.com", tenant="argtenant", max_retries=0, timeout=3,
        paths=EndpointPaths(login="/sign-in"),
    )
    config = iris._config
    assert config.base_url == "https://arg.example.com"
    assert config.tenant == "argtenant"
    assert config.max_retries == 0
    assert config.timeout == Timeout(total=3.0)
    assert config.paths.login == "/sign-in"


def test_invalid_environment_number_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IRIS360_MAX_RETRIES", "lots")
    with pytest.raises(ValueError, match="IRIS360_MAX_RETRIES"):
        Iris360Client("http://h")


def test_require_tenant_scope() -> None:
    iris = Iris360Client._with_hooks("http://h", tenant="libelium", scope="/", environ={})
    assert iris.require_tenant_scope(None, None) == ("libelium", "/")
    assert iris.require_tenant_scope("other", "/x") == ("other", "/x")
    bare = Iris360Client._with_hooks("http://h", environ={})
    assert bare.require_tenant_scope("t", "/") == ("t", "/")
    with pytest.raises(ValueError, match="tenant and scope required"):
        bare.require_tenant_scope(None, None)
    with pytest.raises(ValueError, match="scope required"):
        bare.require_tenant_scope("t", None)


# -- lifecycle ------------------------------------------------------------------------------------


async def test_session_created_on_enter_and_closed_on_exit(base_url: str) -> None:
    iris = Iris360Client(base_url, token="t")
    assert iris._transport.pool.session is None
    async with iris:
        session = iris._transport.pool.session
        assert session is not None
        assert not session.closed
        await iris._transport.request("GET", "/x")
    assert session.closed
    assert iris.closed
    await iris.aclose()  # idempotent
    with pytest.raises(RuntimeError, match="closed"):
        await iris._transport.request("GET", "/x")


async def test_session_is_created_lazily_without_async_with(base_url: str) -> None:
    iris = Iris360Client(base_url, token="t")
    try:
        await iris._transport.request("GET", "/x")
        assert iris._transport.pool.session is not None
    finally:
        await iris.aclose()
    assert iris._transport.pool.session is not None
    assert iris._transport.pool.session.closed


async def test_caller_owned_session_is_used_and_never_closed(base_url: str) -> None:
    async with aiohttp.ClientSession() as session:
        async with Iris360Client(base_url, token="t", session=session) as iris:
            await iris._transport.request("GET", "/x")
            assert iris._transport.pool.session is session
        assert not session.closed
        await iris.aclose()
        assert not session.closed


async def test_unclosed_client_warns_without_io() -> None:
    iris = Iris360Client("http://127.0.0.1:1", token="t")
    async with aiohttp.ClientSession():  # a loop is running; create the client's session
        iris._transport.pool.get()
    with pytest.warns(ResourceWarning, match="unclosed Iris360Client"):
        iris.__del__()
    await iris.aclose()
    assert not iris._transport.pool.needs_close


async def test_never_used_client_does_not_warn() -> None:
    iris = Iris360Client("http://h", token="t")
    del iris
    gc.collect()  # filterwarnings=error would turn a warning into a failure here


async def test_with_options_shares_session_tokens_gate_and_budget(base_url: str) -> None:
    async with Iris360Client(base_url, token="t", tenant="a", scope="/") as iris:
        patient = iris.with_options(timeout=300, max_retries=6, tenant="b")
        assert patient._config.timeout == Timeout(total=300.0)
        assert patient._config.max_retries == 6
        assert patient._transport.policy.max_retries == 6
        assert (patient.tenant, patient.scope) == ("b", "/")
        assert (iris.tenant, iris._config.max_retries) == ("a", 3)
        for name in ("pool", "tokens", "gate", "budget", "clock"):
            assert getattr(patient._transport, name) is getattr(iris._transport, name), name
        await patient._transport.request("GET", "/x")
        assert patient._transport.pool.session is iris._transport.pool.session
        assert iris.stats.requests == 1  # counters are shared too
        await patient.aclose()  # the copy never closes the shared session
        assert not iris._transport.pool.session.closed  # type: ignore[union-attr]
        await iris._transport.request("GET", "/x")
    assert patient.closed


def test_with_options_rejects_unknown_settings() -> None:
    iris = Iris360Client._with_hooks("http://h", token="t", environ={})
    with pytest.raises(TypeError, match="bogus"):
        iris.with_options(bogus=1)
    with pytest.raises(TypeError, match="profile"):
        iris.with_options(profile="prod")  # a profile is read when a client is built
    with pytest.raises(ValueError, match="password"):
        iris.with_options(username="other@example.com")  # never with the old password


def test_repr_shows_only_base_url_tenant_scope() -> None:
    iris = Iris360Client(
        "http://h", username="u@x", password=PASSWORD, token=TOKEN, refresh_token=REFRESH,
        tenant="libelium", scope="/",
    )
    assert repr(iris) == "Iris360Client(base_url='http://h', tenant='libelium', scope='/')"
    for text in (repr(iris), str(iris), repr(iris._config), str(iris._config),
                 repr(iris._transport.tokens), repr(iris.stats)):
        for secret in (PASSWORD, TOKEN, REFRESH):
            assert secret not in text


async def test_failed_login_error_carries_no_secret(base_url: str) -> None:
    async with Iris360Client(base_url, username="u@x", password=PASSWORD) as iris:
        with pytest.raises(AuthenticationError) as info:
            await iris._transport.request("GET", "/x")
        again = pytest.raises(AuthenticationError)
        with again as info2:
            await iris._transport.request("GET", "/x")
    for exc in (info.value, info2.value):
        blob = str(exc) + repr(exc) + repr(exc.__dict__) + repr(pickle.loads(pickle.dumps(exc)))
        assert PASSWORD not in blob


# -- resource namespaces ---------------------------------------------------------------------------


def test_namespaces_are_attached_lazily_once_per_client() -> None:
    iris = Iris360Client("http://h", token="t")
    for name in ("devices", "entities", "timeseries", "connectors", "auth"):
        assert name not in iris.__dict__
        resource = getattr(iris, name)
        assert getattr(iris, name) is resource
        assert resource._client is iris
    copy = iris.with_options(max_retries=0)
    assert copy.devices is not iris.devices
    assert copy.devices._client is copy


# -- public surface and errors -------------------------------------------------------------------


def test_public_exports() -> None:
    expected = {
        "Iris360Client", "Timeout", "EndpointPaths", "ClientConfig", "RetryPolicy",
        "__version__", "Iris360Error", "APIConnectionError", "APITimeoutError",
        "APIStatusError", "BadRequestError", "AuthenticationError", "PermissionDeniedError",
        "NotFoundError", "UnprocessableEntityError", "RateLimitError", "InternalServerError",
        "ResponseDecodeError",
    }
    assert expected <= set(iris360_async.__all__)
    for name in iris360_async.__all__:
        assert hasattr(iris360_async, name), name
    assert iris360_async.__version__ == "0.1.0"
    assert Iris360Client.__module__ == "iris360_async"


@pytest.mark.parametrize("status", [400, 401, 403, 404, 409, 422, 500, 503])
def test_status_errors_pickle_round_trip(status: int) -> None:
    exc = status_error_class(status)(
        "GET /x -> boom", status=status, method="GET", url="http://h/x",
        body={"message": "boom"}, text='{"message": "boom"}', headers={"X-A": "1"},
    )
    back = pickle.loads(pickle.dumps(exc))
    assert type(back) is type(exc)
    assert str(back) == str(exc)
    for attr in ("status", "method", "url", "body", "text", "headers", "server_message"):
        assert getattr(back, attr) == getattr(exc, attr), attr


def test_other_errors_pickle_round_trip() -> None:
    errors: list[Iris360Error] = [
        RateLimitError("slow down", retry_after=3.5, status=429, method="GET", url="u"),
        APIConnectionError("refused", method="POST", url="u", request_sent=False),
        APITimeoutError("late", method="GET", url="u", request_sent=True),
        ResponseDecodeError("bad", method="GET", url="u", status=200, path="$[0].rows", text="x"),
    ]
    for exc in errors:
        back: Any = pickle.loads(pickle.dumps(exc))
        assert type(back) is type(exc)
        assert back.__dict__ == exc.__dict__
        assert str(back) == str(exc)
    assert isinstance(errors[0], APIStatusError)


# -- settings refused when the client is built ------------------------------------------------


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("http://h:183800", "port out of range"),
        ("http://h:0", "port out of range"),
        ("http://h:http", "port that is not a number"),
        ("http://", "no host"),
        ("https://:443", "no host"),
        ("http://[::1", "not a valid URL"),
        ("https://user:pw-in-url-secret@iris.example.com", "credentials"),
        ("https://:pw-in-url-secret@iris.example.com", "credentials"),
        ("https://iris.example.com/?tenant=x", "query"),
        ("https://iris.example.com/#top", "fragment"),
        ("https://iris example.com", "whitespace"),
        ("ftp://iris.example.com", "http"),
        ("https://iris.example.com/api/public/v1", "which the client adds"),
        ("https://iris.example.com/api/public/v1/", "which the client adds"),
        ("http://127.0.0.1:8080/prefix/api/public/v1", "which the client adds"),
    ],
)
def test_invalid_base_urls_are_refused_naming_the_problem(url: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem) as info:
        Iris360Client._with_hooks(url, environ={})
    assert "pw-in-url-secret" not in str(info.value)
    with pytest.raises(ValueError, match=problem):
        ClientConfig(base_url=url)
    with pytest.raises(ValueError, match=problem):
        Iris360Client._with_hooks(environ={"IRIS360_BASE_URL": url})


@pytest.mark.parametrize(
    "url", ["https://iris.example.com", "http://127.0.0.1:8080/", "http://[::1]:9000/prefix"]
)
def test_valid_base_urls_are_accepted(url: str) -> None:
    assert Iris360Client._with_hooks(url, environ={}).base_url == url


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -1.0, 0, -0.5])
def test_timeouts_must_be_finite_and_positive(value: float) -> None:
    for field in ("connect", "read", "total", "deadline"):
        with pytest.raises(ValueError, match=f"Timeout.{field}"):
            Timeout(**{field: value})
    with pytest.raises(ValueError, match="timeout"):
        Iris360Client._with_hooks("http://h", timeout=value, environ={})


@pytest.mark.parametrize("value", [True, False, "10", [1]])
def test_timeouts_must_be_numbers(value: Any) -> None:
    with pytest.raises(TypeError, match=r"Timeout\.total"):
        Timeout(total=value)
    with pytest.raises(TypeError):
        Iris360Client._with_hooks("http://h", timeout=value, environ={})


@pytest.mark.parametrize(
    ("name", "raw"),
    [
        ("IRIS360_TIMEOUT", "nan"), ("IRIS360_TIMEOUT", "inf"), ("IRIS360_TIMEOUT", "-3"),
        ("IRIS360_TIMEOUT", "0"), ("IRIS360_TIMEOUT", "soon"),
        ("IRIS360_MAX_RETRIES", "-1"), ("IRIS360_MAX_RETRIES", "1.5"),
        ("IRIS360_CONNECTION_LIMIT", "0"), ("IRIS360_CONNECTION_LIMIT", "nan"),
        ("IRIS360_MAX_RESPONSE_BYTES", "0"), ("IRIS360_MAX_RESPONSE_BYTES", "lots"),
        ("IRIS360_MAX_RESPONSE_BYTES", "1e6"),
    ],
)
def test_bad_environment_numbers_name_the_variable(name: str, raw: str) -> None:
    with pytest.raises(ValueError, match=name):
        Iris360Client._with_hooks("http://h", environ={name: raw})


@pytest.mark.parametrize("value", [None, 0, 1, "no", "false", ""])
def test_verify_ssl_must_be_exactly_true_or_false(value: Any) -> None:
    with pytest.raises(TypeError, match="verify_ssl"):
        Iris360Client._with_hooks("https://h", verify_ssl=value, environ={})
    with pytest.raises(TypeError, match="verify_ssl"):
        ClientConfig(base_url="https://h", verify_ssl=value)


def test_verify_ssl_false_warns_once_per_client(caplog: pytest.LogCaptureFixture) -> None:
    import logging

    with caplog.at_level(logging.WARNING, logger="iris360_async"):
        iris = Iris360Client._with_hooks("https://h", verify_ssl=False, environ={})
        iris.with_options(max_retries=0)
        iris.with_options(timeout=3)
        Iris360Client._with_hooks("https://h", environ={})
    warnings_ = [r for r in caplog.records if "TLS certificate verification is off" in r.message]
    assert len(warnings_) == 1
    assert warnings_[0].levelno == logging.WARNING
    assert iris._transport._extra["ssl"] is False


def test_max_response_bytes_setting() -> None:
    default = Iris360Client._with_hooks("http://h", environ={})
    assert default.config.max_response_bytes == 64 * 1024 * 1024
    assert Iris360Client._with_hooks("http://h", max_response_bytes=None, environ={}).config \
        .max_response_bytes is None
    env = {"IRIS360_MAX_RESPONSE_BYTES": "4096"}
    assert Iris360Client._with_hooks("http://h", environ=env).config.max_response_bytes == 4096
    env = {"IRIS360_MAX_RESPONSE_BYTES": "none"}
    assert Iris360Client._with_hooks("http://h", environ=env).config.max_response_bytes is None
    assert Iris360Client._with_hooks(
        "http://h", max_response_bytes=10, environ={"IRIS360_MAX_RESPONSE_BYTES": "4096"}
    ).config.max_response_bytes == 10
    copy = Iris360Client._with_hooks("http://h", environ={}).with_options(max_response_bytes=100)
    assert copy.config.max_response_bytes == 100
    for bad in (0, -1):
        with pytest.raises(ValueError, match="max_response_bytes"):
            Iris360Client._with_hooks("http://h", max_response_bytes=bad, environ={})
    for wrong in (True, 1.5, "10"):
        with pytest.raises(TypeError, match="max_response_bytes"):
            Iris360Client._with_hooks("http://h", max_response_bytes=wrong, environ={})


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -1.0])
def test_refresh_margin_and_retry_policy_must_be_finite(value: float) -> None:
    with pytest.raises(ValueError, match="refresh_margin"):
        Iris360Client._with_hooks("http://h", refresh_margin=value, environ={})
    if value != -1.0:
        with pytest.raises(ValueError, match="max_retry_after"):
            RetryPolicy(max_retry_after=value)
        with pytest.raises(ValueError, match="max_auth_retry_after"):
            RetryPolicy(max_auth_retry_after=value)
