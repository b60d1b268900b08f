"""The one request path every call takes: URL and headers, a connection slot, the attempt,
error mapping, retries and decoding.

Order of one attempt: wait behind the client's 429 gate, get the access token (renewing it if
due), take a connection slot, then start the attempt under aiohttp's timeouts (``connect``,
``read``, and ``total`` cut short by the call's deadline), so waiting for the pool never counts
as a timeout. After a failed attempt :func:`~iris360_async._retry.decide_retry` says whether
and when to repeat it. Non-2xx answers become ``errors.*`` exceptions (a 3xx too: redirects are
never followed); transport failures become :class:`~iris360_async.APIConnectionError` /
:class:`~iris360_async.APITimeoutError` with ``request_sent`` telling whether the server may
have seen the request. An error raised while obtaining the token for a request has
``while_authenticating = True``: that request was never sent. Bodies are read up to
``max_response_bytes``.

What a response is and the errors built from it live in :mod:`._responses`; the session and
connection slots in :mod:`._http_pool`. This module must not know any endpoint's meaning, nor
decide by itself whether a failure may be repeated (that is :mod:`._retry`'s).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import aiohttp
import anyio
import msgspec

from . import _otel
from ._auth import TokenManager
from ._config import ClientConfig, Timeout
from ._http_pool import HTTPPool
from ._logging import get_logger
from ._responses import RawResponse, _url_path, status_error
from ._retry import (
    Clock,
    RateGate,
    RetryBudget,
    RetryMode,
    RetryPolicy,
    decide_retry,
    gate_hold,
)
from .errors import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    Iris360Error,
    RateLimitError,
    ResponseTooLargeError,
    condense,
)

__all__ = ["Transport", "TransportStats"]

T = TypeVar("T")

_log = get_logger(__name__)
_DEBUG = logging.DEBUG
_ENCODER = msgspec.json.Encoder()
_MODES = frozenset({"read", "write", "never"})
MAX_RENEWALS = 3
"""Token renewals (refresh, or login when the refresh is refused) one request may ask for
after 401 answers; a request whose rejected token was already replaced replays without one."""
_MAX_REPLAYS = 2 * MAX_RENEWALS  # replays after 401s, renewed or replaced tokens alike
_TEXT_OF_TOO_LARGE = 4096  # bytes of an oversized body kept for its error's text


@dataclass(frozen=True)
class TransportStats:
    """Counters of one client (shared with its ``with_options`` copies).

    Attributes:
        requests: HTTP attempts sent (retries, replays, logins and refreshes included).
        retries: attempts repeated after a retryable failure.
        replays: requests replayed after a 401 with a renewed token.
        rate_limited: 429 answers received.
        refreshes: refresh requests sent.
        logins: login requests sent.
    """

    requests: int
    retries: int
    replays: int
    rate_limited: int
    refreshes: int
    logins: int


@dataclass(frozen=True, slots=True)
class _Call:
    """What one :meth:`Transport.request` call sends, and how it is repeated."""

    method: str
    path: str
    url: str
    content: bytes | None
    form: Callable[[], aiohttp.FormData] | None
    params: Mapping[str, str] | None
    headers: Mapping[str, str] | None
    authenticated: bool
    retry: RetryMode
    limits: Timeout
    policy: RetryPolicy
    route: str


class _Counters:
    __slots__ = ("rate_limited", "replays", "requests", "retries")

    def __init__(self) -> None:
        self.requests = 0
        self.retries = 0
        self.replays = 0
        self.rate_limited = 0


class Transport:
    """Sends requests for one client configuration.

    Args:
        config: the client configuration (URL, timeouts, user agent).
        pool: the session and connection slots.
        tokens: the token manager.
        gate: the client's shared 429 gate.
        budget: the client's retry budget.
        clock: where time and sleeps come from.
        policy: the retry policy (``config.max_retries`` with default backoff if omitted).
    """

    def __init__(
        self,
        config: ClientConfig,
        *,
        pool: HTTPPool,
        tokens: TokenManager,
        gate: RateGate,
        budget: RetryBudget,
        clock: Clock,
        policy: RetryPolicy | None = None,
        _counters: _Counters | None = None,
    ) -> None:
        self._config = config
        self._pool = pool
        self._tokens = tokens
        self._gate = gate
        self._budget = budget
        self._clock = clock
        self._policy = policy if policy is not None else RetryPolicy(config.max_retries)
        self._counters = _counters if _counters is not None else _Counters()
        self._root = config.api_root
        self._prefix = config.api_prefix
        self._base_headers = {"Accept": "application/json", "User-Agent": config.user_agent}
        self._extra: dict[str, Any] = {"raise_for_status": False, "allow_redirects": False}
        if not pool.verify_ssl:
            self._extra["ssl"] = False
        if config.proxy is not None:
            self._extra["proxy"] = config.proxy

    # -- accessors -------------------------------------------------------------------------

    @property
    def config(self) -> ClientConfig:
        return self._config

    @property
    def tokens(self) -> TokenManager:
        """The token manager (login/refresh live there)."""
        return self._tokens

    @property
    def pool(self) -> HTTPPool:
        return self._pool

    @property
    def gate(self) -> RateGate:
        return self._gate

    @property
    def budget(self) -> RetryBudget:
        return self._budget

    @property
    def policy(self) -> RetryPolicy:
        return self._policy

    @property
    def clock(self) -> Clock:
        return self._clock

    @property
    def stats(self) -> TransportStats:
        """A snapshot of the counters."""
        c = self._counters
        return TransportStats(
            requests=c.requests,
            retries=c.retries,
            replays=c.replays,
            rate_limited=c.rate_limited,
            refreshes=self._tokens.refreshes,
            logins=self._tokens.logins,
        )

    def derive(
        self,
        config: ClientConfig,
        policy: RetryPolicy | None = None,
        *,
        pool: HTTPPool | None = None,
        tokens: TokenManager | None = None,
        own_limits: bool = False,
    ) -> Transport:
        """A transport for ``config`` sharing the counters, the pool and tokens unless new
        ones are given, and the 429 gate and retry budget unless ``own_limits``."""
        return Transport(
            config,
            pool=self._pool if pool is None else pool,
            tokens=self._tokens if tokens is None else tokens,
            gate=RateGate(self._clock) if own_limits else self._gate,
            budget=RetryBudget() if own_limits else self._budget,
            clock=self._clock,
            policy=policy if policy is not None else self._policy.replace(
                max_retries=config.max_retries
            ),
            _counters=self._counters,
        )

    async def auth_send(self, path: str, body: Mapping[str, str]) -> bytes:
        """POST a login/refresh body: unauthenticated, not repeated automatically, except
        once after a 429 whose ``Retry-After`` is at most ``policy.max_auth_retry_after``."""
        content = _ENCODER.encode(body)
        try:
            response = await self.request(
                "POST", path, content=content, authenticated=False, retry="never"
            )
        except RateLimitError as exc:
            wait = exc.retry_after
            if wait is None or wait > self._policy.max_auth_retry_after:
                raise
            self._counters.retries += 1
            if _log.isEnabledFor(logging.INFO):
                _log.info("POST %s: 429, one more attempt after %.3f s", self._prefix + path, wait)
            if wait > 0:
                await self._clock.sleep(wait)
            response = await self.request(
                "POST", path, content=content, authenticated=False, retry="never"
            )
        return response.content

    async def _authenticating(self, pending: Awaitable[str | None]) -> str | None:
        """``await pending`` (a token for a request); an error it raises is marked
        ``while_authenticating``: the request that needed the token was not sent."""
        try:
            return await pending
        except Iris360Error as exc:
            exc.while_authenticating = True
            raise

    def _secrets(self, token: str | None) -> tuple[str, ...]:
        known = self._tokens.secrets()
        return known if token is None or token in known else (*known, token)

    # -- the request path -------------------------------------------------------------------

    async def request_json(self, method: str, path: str, type_: type[T], **kw: Any) -> T:
        """:meth:`request` and decode the body into ``type_``."""
        response = await self.request(method, path, **kw)
        return response.decode(type_)

    async def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        content: bytes | None = None,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        form: Callable[[], aiohttp.FormData] | None = None,
        authenticated: bool = True,
        retry: RetryMode = "read",
        timeout: Timeout | None = None,  # noqa: ASYNC109 - per-attempt aiohttp timeouts
        policy: RetryPolicy | None = None,
        route: str | None = None,
    ) -> RawResponse:
        """Send one API call (with its retries) and return the 2xx response.

        Args:
            method: the HTTP method.
            path: the path under the API root, e.g. ``"/devices/paginate"``.
            json: an object to send as JSON (msgspec Structs welcome).
            content: pre-encoded JSON bytes, sent as is on every attempt.
            params: query parameters.
            headers: extra request headers.
            form: builds a multipart body; called once per attempt.
            authenticated: send ``Authorization: Bearer …`` (and renew it on a 401).
            retry: ``"read"``, ``"write"`` or ``"never"`` (see :data:`RetryMode`).
            timeout: per-attempt timeouts and whole-call deadline (seconds); default from the
                client configuration.
            policy: the retry policy of this call; default: the client's.
            route: the path template (``/connectors/out/{id}``) for traces; default ``path``.

        Raises:
            APIStatusError: the server answered with a non-2xx status (subclass by status).
            APIConnectionError: no response (``APITimeoutError`` when a timeout fired).
        """
        if retry not in _MODES:
            raise ValueError(f"retry must be 'read', 'write' or 'never', not {retry!r}")
        if json is not None:
            if content is not None or form is not None:
                raise TypeError("pass only one of json=, content= or form=")
            content = _ENCODER.encode(json)
        elif content is not None and form is not None:
            raise TypeError("pass only one of json=, content= or form=")
        call = _Call(
            method=method,
            path=path,
            url=self._root + path,
            content=content,
            form=form,
            params=params,
            headers=headers,
            authenticated=authenticated,
            retry=retry,
            limits=self._config.timeout if timeout is None else timeout,
            policy=self._policy if policy is None else policy,
            route=path if route is None else route,
        )
        instruments = _otel.INSTRUMENTS
        if instruments is None:
            return await self._call(call, None)
        trace = instruments.request_started(method, call.route)
        try:
            response = await self._call(call, trace)
        except BaseException as exc:
            trace.finish(None, exc)
            raise
        trace.finish(response.status, None)
        return response

    async def _call(self, call: _Call, trace: _otel.RequestTrace | None) -> RawResponse:
        """The attempts of one call, until a 2xx answer or an error not worth repeating."""
        method, path, limits = call.method, call.path, call.limits
        authenticated, content, form = call.authenticated, call.content, call.form
        clock = self._clock
        deadline_at = None if limits.deadline is None else clock.monotonic() + limits.deadline
        retries = replays = renewals = 0
        error: Iris360Error | None = None
        try:
            while True:
                await self._wait_at_gate(deadline_at, error, call)
                token = await self._token() if authenticated else None
                try:
                    response = await self._send(
                        call,
                        self._headers(token, content is not None, call.headers),
                        content if form is None else form(),
                        deadline_at,
                    )
                except APIConnectionError as exc:
                    error = exc
                else:
                    status = response.status
                    if 200 <= status < 300:
                        self._budget.record_success()
                        return response
                    if status == 401 and authenticated and replays < _MAX_REPLAYS:
                        # Replay with the token that replaced the rejected one; renew it only
                        # when nobody has yet (single flight), at most MAX_RENEWALS times per
                        # request.
                        renewed = self._tokens.replacement_for(token)
                        if renewed is None and renewals < MAX_RENEWALS:
                            renewals += 1
                            renewed = await self._authenticating(
                                self._tokens.token_rejected(token)
                            )
                        if renewed is not None:
                            replays += 1
                            self._counters.replays += 1
                            continue
                    error = self._refusal(response, token, call)
                decision = decide_retry(
                    error,
                    attempt=retries,
                    mode=call.retry,
                    policy=call.policy,
                    now=clock.monotonic(),
                    epoch=clock.time(),
                    deadline_at=deadline_at,
                    gate_remaining=self._gate.remaining(),
                    budget_ok=self._budget.can_retry,
                    authenticated=authenticated,
                )
                if not decision.retry:
                    raise error
                self._budget.try_acquire()
                retries += 1
                self._counters.retries += 1
                if _log.isEnabledFor(_DEBUG):
                    _log.debug(
                        "%s %s: retry %d after %s (%s, %.3f s)",
                        method, self._prefix + path, retries, type(error).__name__,
                        decision.reason, decision.delay,
                    )
                if decision.delay > 0:
                    await clock.sleep(decision.delay)
        finally:
            if trace is not None:
                trace.retries, trace.replays = retries, replays

    # -- the steps of one attempt -----------------------------------------------------------

    async def _wait_at_gate(
        self, deadline_at: float | None, error: Iris360Error | None, call: _Call
    ) -> None:
        """Wait behind the client's 429 gate; a gate that outlasts the call's deadline ends
        the call (with the last attempt's error, if there was one)."""
        wait = self._gate.remaining()
        if wait <= 0:
            return
        if deadline_at is not None and self._clock.monotonic() + wait > deadline_at:
            raise error or self._deadline_error(call)
        await self._gate.wait()

    async def _token(self) -> str | None:
        """The access token for a request, obtained (login/refresh) when there is none yet."""
        token = self._tokens.current_token()
        if token is None:
            token = await self._authenticating(self._tokens.get_token())
        return token

    def _headers(
        self, token: str | None, json_body: bool, extra: Mapping[str, str] | None
    ) -> dict[str, str]:
        headers = self._base_headers.copy()
        if token is not None:
            headers["Authorization"] = "Bearer " + token
        if json_body:
            headers["Content-Type"] = "application/json"
        if extra:
            headers.update(extra)
        return headers

    def _refusal(self, response: RawResponse, token: str | None, call: _Call) -> APIStatusError:
        """The error for a non-2xx answer; a 429 closes the client's gate (see
        :func:`~iris360_async._retry.gate_hold`)."""
        error = status_error(response, now=self._clock.time(), secrets=self._secrets(token))
        if response.status == 401 and call.authenticated and not self._tokens.can_renew:
            # the token was refused and no new one can be had: the request is refused for
            # want of a token, like a failed login
            error.while_authenticating = True
        if response.status == 429:
            self._counters.rate_limited += 1
            if _otel.INSTRUMENTS is not None:
                _otel.INSTRUMENTS.rate_limited(call.method, call.route)
            hold = gate_hold(error, policy=call.policy, authenticated=call.authenticated)
            if hold is not None:
                self._gate.close_for(hold)  # every request of the client waits, not only us
        return error

    def _deadline_error(self, call: _Call) -> APITimeoutError:
        return APITimeoutError(
            f"{call.method} {_url_path(call.url)}: the call's deadline passed before it could "
            "be sent",
            method=call.method,
            url=call.url,
            request_sent=False,
        )

    async def _acquire_slot(self, deadline_at: float | None, call: _Call) -> None:
        """Take a connection slot, waiting at most until the call's deadline."""
        semaphore = self._pool.semaphore
        if deadline_at is None or not semaphore.locked():
            await semaphore.acquire()
            return
        with anyio.move_on_after(max(0.0, deadline_at - self._clock.monotonic())):
            await semaphore.acquire()
            return
        raise self._deadline_error(call)

    def _attempt_limits(
        self, call: _Call, deadline_at: float | None
    ) -> tuple[aiohttp.ClientTimeout, bool]:
        """aiohttp's timeouts for an attempt starting now, and whether the call's deadline
        (rather than ``limits.total``) bounds it."""
        limits = call.limits
        total = limits.total
        capped = False
        if deadline_at is not None:
            remaining = deadline_at - self._clock.monotonic()
            if remaining <= 0:
                raise self._deadline_error(call)
            if total is None or remaining < total:
                total, capped = remaining, True
        client_timeout = aiohttp.ClientTimeout(
            total=total, sock_connect=limits.connect, sock_read=limits.read
        )
        return client_timeout, capped

    def _timeout_error(
        self, exc: asyncio.TimeoutError, call: _Call, attempt: aiohttp.ClientTimeout, capped: bool
    ) -> APITimeoutError:
        """The :class:`APITimeoutError` for a timeout aiohttp raised, naming the limit that
        fired; ``request_sent`` is ``False`` when it fired before a connection existed."""
        limits = call.limits
        if isinstance(exc, aiohttp.ConnectionTimeoutError):
            sent, what = False, f"no connection within {_seconds(limits.connect)}"
        elif isinstance(exc, aiohttp.ServerTimeoutError):
            sent, what = True, f"no data from the server for {_seconds(limits.read)}"
        else:  # the attempt's total, maybe cut short by the call's deadline
            sent = not _while_connecting(exc)
            if capped:
                what = f"the call's deadline of {_seconds(limits.deadline)} passed"
            elif sent:
                what = f"no complete response within {_seconds(attempt.total)}"
            else:
                what = f"no connection within the attempt's total of {_seconds(attempt.total)}"
        waiting = "the response" if sent else "a connection"
        return APITimeoutError(
            f"{call.method} {self._prefix}{call.path}: timed out waiting for {waiting} ({what})",
            method=call.method, url=call.url, request_sent=sent,
        )

    def _too_large(
        self, response: aiohttp.ClientResponse, call: _Call, limit: int, start: bytes
    ) -> ResponseTooLargeError:
        response.close()  # the rest is never read: the connection is not reused
        text = start[:_TEXT_OF_TOO_LARGE].decode("utf-8", "replace")
        return ResponseTooLargeError(
            f"{call.method} {self._prefix}{call.path} -> {response.status}: the response body is "
            f"larger than max_response_bytes ({limit} bytes); it was not read",
            limit=limit,
            method=call.method,
            url=call.url,
            status=response.status,
            path="$",
            text=condense(text, secrets=self._tokens.secrets()),
        )

    async def _read_body(self, response: aiohttp.ClientResponse, call: _Call) -> bytes:
        """The whole body, refused as soon as it grows past ``max_response_bytes`` (counted
        while reading, after decompression)."""
        limit = self._config.max_response_bytes
        if limit is None:
            return await response.read()
        length = response.content_length
        if length is not None and length > limit:
            raise self._too_large(response, call, limit, await response.content.readany())
        if length is not None and "Content-Encoding" not in response.headers:
            return await response.read()  # the size is known and checked
        pieces: list[bytes] = []
        size = 0
        readany = response.content.readany
        while piece := await readany():
            pieces.append(piece)
            size += len(piece)
            if size > limit:
                raise self._too_large(response, call, limit, pieces[0])
        return pieces[0] if len(pieces) == 1 else b"".join(pieces)

    async def _send(
        self, call: _Call, headers: dict[str, str], data: Any, deadline_at: float | None
    ) -> RawResponse:
        """One attempt: a connection slot first, then the attempt under aiohttp's timeouts
        (waiting for the pool is never a timeout)."""
        session = self._pool.get()
        await self._acquire_slot(deadline_at, call)
        try:
            attempt, capped = self._attempt_limits(call, deadline_at)
            return await self._attempt(session, call, headers, data, attempt, capped)
        finally:
            self._pool.semaphore.release()

    async def _attempt(
        self,
        session: aiohttp.ClientSession,
        call: _Call,
        headers: dict[str, str],
        data: Any,
        attempt: aiohttp.ClientTimeout,
        capped: bool,
    ) -> RawResponse:
        method, url, path = call.method, call.url, call.path
        debug = _log.isEnabledFor(_DEBUG)
        started = time.perf_counter() if debug else 0.0
        self._counters.requests += 1
        try:
            async with session.request(
                method,
                url,
                data=data,
                params=call.params,
                headers=headers,
                timeout=attempt,
                **self._extra,
            ) as response:
                body = await self._read_body(response, call)
                result = RawResponse(response.status, response.headers, body, method, url)
        except asyncio.TimeoutError as exc:
            raise self._timeout_error(exc, call, attempt, capped) from exc
        except aiohttp.ClientConnectorError as exc:
            raise APIConnectionError(
                f"{method} {self._prefix}{path}: could not connect: {exc}",
                method=method, url=url, request_sent=False,
            ) from exc
        except (aiohttp.ClientError, OSError) as exc:
            raise APIConnectionError(
                f"{method} {self._prefix}{path}: connection failed: "
                f"{type(exc).__name__}: {exc}",
                method=method, url=url, request_sent=True,
            ) from exc
        if debug:
            _log.debug(
                "%s %s -> %d (%.1f ms)",
                method, self._prefix + path, result.status,
                (time.perf_counter() - started) * 1000.0,
            )
        return result

def _seconds(limit: float | None) -> str:
    return "a while" if limit is None else f"{limit:g} s"


_CONNECTING = aiohttp.BaseConnector.connect.__code__


def _while_connecting(exc: BaseException) -> bool:
    """Whether aiohttp's ``total`` timer fired while the connection was still being set up
    (so nothing was sent). aiohttp then raises a plain ``TimeoutError`` from the cancellation
    it caused, whose traceback still runs through the connector."""
    cause = exc.__cause__
    tb = cause.__traceback__ if isinstance(cause, asyncio.CancelledError) else None
    while tb is not None:
        if tb.tb_frame.f_code is _CONNECTING:
            return True
        tb = tb.tb_next
    return False
