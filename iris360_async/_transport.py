"""The one request path every call takes: URL and headers, a connection slot, the attempt,
error mapping, retries and decoding.

Order of one attempt: wait behind the client's 429 gate, get the access token (renewing it if
due), take a connection slot, then start the attempt's timeout, so waiting for the pool never
counts as a timeout. Non-2xx answers become ``errors.*`` exceptions (a 3xx too: redirects are
never followed); transport failures become :class:`~iris360_async.APIConnectionError` /
:class:`~iris360_async.APITimeoutError` with ``request_sent`` telling whether the server may
have seen the request. An error raised while obtaining the token for a request has
``while_authenticating = True``: that request was never sent. Bodies are read up to
``max_response_bytes``.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, TypeVar
from urllib.parse import urljoin, urlsplit

import aiohttp
import anyio
import msgspec

from ._auth import TokenManager
from ._config import ClientConfig, Timeout
from ._logging import get_logger
from ._retry import Clock, RateGate, RetryBudget, RetryMode, RetryPolicy, is_retryable
from ._retry import parse_retry_after as _parse_retry_after
from ._watchdog import Expiry, Watchdog
from .errors import MAX_ERROR_TEXT as _MAX_ERROR_TEXT
from .errors import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    Iris360Error,
    RateLimitError,
    RedirectError,
    ResponseDecodeError,
    ResponseTooLargeError,
    condense,
    extract_server_message,
    mask_secrets,
    mask_value,
    status_error_class,
)

__all__ = [
    "HTTPPool",
    "RawResponse",
    "RetryMode",
    "Transport",
    "TransportStats",
    "decode_error",
    "parse_error_body",
    "status_error",
]

T = TypeVar("T")

_log = get_logger(__name__)
_DEBUG = logging.DEBUG
_ENCODER = msgspec.json.Encoder()
_ANY_DECODER = msgspec.json.Decoder()
_DECODERS: dict[Any, msgspec.json.Decoder[Any]] = {}
_PATH_IN_MESSAGE = re.compile(r" - at `(\$[^`]*)`$")
_JSON_START = frozenset('{["-0123456789tfn')
_MODES = frozenset({"read", "write", "never"})
MAX_RENEWALS = 3
"""Token renewals (refresh, or login when the refresh is refused) one request may ask for
after 401 answers; a request whose rejected token was already replaced replays without one."""
_MAX_REPLAYS = 2 * MAX_RENEWALS  # replays after 401s, renewed or replaced tokens alike
_TEXT_OF_TOO_LARGE = 4096  # bytes of an oversized body kept for its error's text


def _decoder(type_: Any) -> msgspec.json.Decoder[Any]:
    decoder = _DECODERS.get(type_)
    if decoder is None:
        decoder = _DECODERS[type_] = msgspec.json.Decoder(type_)
    return decoder


def _header(headers: Mapping[str, str], lower_name: str) -> str | None:
    for key, value in headers.items():
        if key.lower() == lower_name:
            return value
    return None


def _url_path(url: str) -> str:
    return urlsplit(url).path or "/"


@dataclass(frozen=True, slots=True)
class RawResponse:
    """A complete 2xx response.

    Attributes:
        status: the HTTP status.
        headers: the response headers (case-insensitive mapping).
        content: the body bytes.
        method: the request method.
        url: the request URL (no query string, no credentials).
    """

    status: int
    headers: Mapping[str, str]
    content: bytes
    method: str
    url: str

    @property
    def text(self) -> str:
        """The body decoded as UTF-8 (invalid bytes replaced)."""
        return self.content.decode("utf-8", "replace")

    def decode(self, type_: type[T]) -> T:
        """The body decoded as JSON into ``type_`` (a msgspec Struct, ``list[...]``, ...).

        Raises:
            ResponseDecodeError: the body is not JSON or does not match ``type_``; ``path``
                names the offending location (``$[0].rows``).
        """
        try:
            result: T = _decoder(type_).decode(self.content)
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            name = getattr(type_, "__name__", None) or repr(type_)
            raise decode_error(self, name, exc) from None
        return result


def decode_error(response: RawResponse, expected: str, exc: Exception) -> ResponseDecodeError:
    """The :class:`ResponseDecodeError` for a 2xx body that msgspec refused.

    Args:
        response: the response.
        expected: what the body should have been, for the message (``"Page[Device]"``).
        exc: msgspec's ``ValidationError`` or ``DecodeError`` (its path goes to ``.path``).
    """
    reason = str(exc)
    match = _PATH_IN_MESSAGE.search(reason)
    return ResponseDecodeError(
        f"{response.method} {_url_path(response.url)} -> {response.status}: the response does "
        f"not match {expected}: {reason}",
        method=response.method,
        url=response.url,
        status=response.status,
        path=match.group(1) if match else "$",
        text=condense(response.text),
    )


def parse_error_body(text: str) -> Any:
    """An error body as leniently as possible: JSON whenever it looks like JSON (whatever the
    ``Content-Type``), a JSON string literal as ``str``, otherwise the stripped text; ``None``
    for an empty body."""
    stripped = text.strip()
    if not stripped:
        return None
    if stripped[0] in _JSON_START:
        try:
            return _ANY_DECODER.decode(stripped)
        except msgspec.DecodeError:
            pass
    return stripped


def redirect_target(location: str | None, url: str) -> str | None:
    """Where a ``Location`` header points, resolved against the request ``url``, without
    credentials, query string or fragment; ``None`` when absent or unreadable."""
    if not location or not location.strip():
        return None
    try:
        target = urlsplit(urljoin(url, location.strip()))
        host = target.hostname
        port = target.port
    except ValueError:
        return None
    if not host or target.scheme not in ("http", "https"):
        return None
    if ":" in host:
        host = f"[{host}]"
    netloc = host if port is None else f"{host}:{port}"
    return f"{target.scheme}://{netloc}{target.path}"


def status_error(
    response: RawResponse, *, now: float | None = None, secrets: tuple[str, ...] = ()
) -> APIStatusError:
    """The exception for a non-2xx response.

    The message reads like ``POST /api/public/v1/devices/paginate -> 422 Unprocessable Entity:
    The page field is required.``: server text condensed (an HTML page becomes its title, one
    line, at most 200 characters). For a 3xx it names the target, never the body.

    Args:
        response: the response.
        now: the current time in seconds since the epoch (for an HTTP-date ``Retry-After``).
        secrets: known secrets (password, tokens), masked as ``***`` wherever the server's
            text appears: message, ``text``, ``body``, ``headers``.
    """
    status = response.status
    raw = response.text
    body = mask_value(parse_error_body(raw), secrets)
    text = mask_secrets(raw, secrets)[:_MAX_ERROR_TEXT]
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = ""
    message = f"{response.method} {_url_path(response.url)} -> {status} {phrase}".rstrip()
    cls = status_error_class(status)
    fields: dict[str, Any] = {
        "status": status,
        "method": response.method,
        "url": response.url,
        "body": body,
        "text": text,
        "headers": {key: mask_secrets(value, secrets) for key, value in response.headers.items()},
    }
    if cls is RedirectError:
        location = redirect_target(_header(response.headers, "location"), response.url)
        target = location if location is not None else "no usable Location"
        return RedirectError(
            f"{message}: redirect to {target} not followed", location=location, **fields
        )
    detail = extract_server_message(body)
    if detail is None and body is not None:
        detail = text
    if detail:
        detail = condense(detail, secrets=secrets)
    if detail:
        message = f"{message}: {detail}"
    if cls is RateLimitError:
        retry_after = _parse_retry_after(
            response.headers.get("Retry-After"), time.time() if now is None else now
        )
        return RateLimitError(message, retry_after=retry_after, **fields)
    return cls(message, **fields)


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


class _Counters:
    __slots__ = ("rate_limited", "replays", "requests", "retries")

    def __init__(self) -> None:
        self.requests = 0
        self.retries = 0
        self.replays = 0
        self.rate_limited = 0


class HTTPPool:
    """The aiohttp session and the connection slots shared by a client and its copies.

    Args:
        session: a caller-owned session (never closed here), or ``None`` to create one lazily.
        connection_limit: concurrent requests (and pooled connections) at most.
        verify_ssl: whether TLS certificates are verified.
    """

    def __init__(
        self,
        *,
        session: aiohttp.ClientSession | None,
        connection_limit: int,
        verify_ssl: bool = True,
    ) -> None:
        self._session = session
        self.owned = session is None
        """Whether the session is created (and closed) here."""
        self.connection_limit = connection_limit
        self.verify_ssl = verify_ssl
        self.semaphore = asyncio.Semaphore(connection_limit)
        self.watchdog = Watchdog()
        """The timeouts of the requests in flight."""
        self.closed = False

    @property
    def session(self) -> aiohttp.ClientSession | None:
        """The session, if one exists."""
        return self._session

    @property
    def needs_close(self) -> bool:
        """Whether a session created here is still open."""
        return (
            self.owned
            and not self.closed
            and self._session is not None
            and not self._session.closed
        )

    def get(self) -> aiohttp.ClientSession:
        """The session, created on first use (call inside the event loop)."""
        session = self._session
        if self.closed:
            raise RuntimeError("the client is closed")
        if session is None:
            connector = aiohttp.TCPConnector(
                limit=self.connection_limit,
                limit_per_host=0,
                ssl=bool(self.verify_ssl),
            )
            session = self._session = aiohttp.ClientSession(connector=connector)
        return session

    async def aclose(self) -> None:
        """Close the session if it was created here (waits for the connections to close);
        idempotent. A caller-owned session is left open."""
        if self.closed:
            return
        self.closed = True
        self.watchdog.close()
        session = self._session
        if self.owned and session is not None and not session.closed:
            await session.close()


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
        self._connect_timeouts: dict[float | None, aiohttp.ClientTimeout] = {}

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

    def derive(self, config: ClientConfig, policy: RetryPolicy | None = None) -> Transport:
        """A transport for ``config`` sharing the pool, tokens, gate, budget and counters."""
        return Transport(
            config,
            pool=self._pool,
            tokens=self._tokens,
            gate=self._gate,
            budget=self._budget,
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
        url = self._root + path
        if timeout is None:
            timeout = self._config.timeout
        clock = self._clock
        gate = self._gate
        tokens = self._tokens
        policy = self._policy
        deadline_at = None if timeout.deadline is None else clock.monotonic() + timeout.deadline
        retries = 0
        replays = 0
        renewals = 0
        error: Iris360Error | None = None
        while True:
            if gate.until:
                wait = gate.remaining()
                if wait > 0:
                    if deadline_at is not None and clock.monotonic() + wait > deadline_at:
                        raise error or self._deadline_error(method, url)
                    await gate.wait()
            token: str | None = None
            if authenticated:
                token = tokens.current_token()
                if token is None:
                    token = await self._authenticating(tokens.get_token())
            request_headers = self._base_headers.copy()
            if token is not None:
                request_headers["Authorization"] = "Bearer " + token
            if content is not None:
                request_headers["Content-Type"] = "application/json"
            if headers:
                request_headers.update(headers)
            attempt_total = timeout.total
            if deadline_at is not None:
                remaining = deadline_at - clock.monotonic()
                if remaining <= 0:
                    raise error or self._deadline_error(method, url)
                if attempt_total is None or remaining < attempt_total:
                    attempt_total = remaining
            try:
                response = await self._send(
                    method,
                    url,
                    path,
                    request_headers,
                    content if form is None else form(),
                    params,
                    timeout,
                    attempt_total,
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
                    # Replay with the token that replaced the rejected one; renew it only when
                    # nobody has yet (single flight), at most MAX_RENEWALS times per request.
                    renewed = tokens.replacement_for(token)
                    if renewed is None and renewals < MAX_RENEWALS:
                        renewals += 1
                        renewed = await self._authenticating(tokens.token_rejected(token))
                    if renewed is not None:
                        replays += 1
                        self._counters.replays += 1
                        continue
                error = status_error(response, now=clock.time(), secrets=self._secrets(token))
                if status == 401 and authenticated and not tokens.can_renew:
                    # the token was refused and no new one can be had: the request is
                    # refused for want of a token, like a failed login
                    error.while_authenticating = True
                if status == 429:
                    self._counters.rate_limited += 1
                    asked = error.retry_after if isinstance(error, RateLimitError) else None
                    if authenticated and asked is not None and asked <= policy.max_retry_after:
                        gate.close_for(asked)  # every request of the client waits, not only us
            # -- a failed attempt: repeat it or raise --------------------------------------
            if retries >= policy.max_retries or not is_retryable(error, retry):
                raise error
            delay = 0.0
            if isinstance(error, RateLimitError) and error.retry_after is not None:
                if error.retry_after > policy.max_retry_after:
                    raise error
                if not authenticated:  # login/refresh: their limit is per route, no gate
                    delay = error.retry_after
            else:
                delay = policy.backoff(retries)
                if isinstance(error, APIStatusError):  # e.g. 503 with Retry-After
                    asked = _parse_retry_after(_header(error.headers, "retry-after"), clock.time())
                    if asked is not None:
                        if asked > policy.max_retry_after:
                            raise error
                        delay = asked
            if deadline_at is not None:
                wait = max(delay, gate.remaining())
                if clock.monotonic() + wait >= deadline_at:
                    raise error
            if not self._budget.try_acquire():
                raise error
            retries += 1
            self._counters.retries += 1
            if _log.isEnabledFor(_DEBUG):
                _log.debug(
                    "%s %s: retry %d after %s (%.3f s)",
                    method, self._prefix + path, retries, type(error).__name__, delay,
                )
            if delay > 0:
                await clock.sleep(delay)

    def _deadline_error(self, method: str, url: str) -> APITimeoutError:
        return APITimeoutError(
            f"{method} {_url_path(url)}: the call's deadline passed before it could be sent",
            method=method,
            url=url,
            request_sent=False,
        )

    def _connect_timeout(self, connect: float | None) -> aiohttp.ClientTimeout:
        found = self._connect_timeouts.get(connect)
        if found is None:
            found = self._connect_timeouts[connect] = aiohttp.ClientTimeout(
                total=None, sock_connect=connect
            )
        return found

    def _too_large(
        self,
        response: aiohttp.ClientResponse,
        method: str,
        url: str,
        path: str,
        limit: int,
        start: bytes,
    ) -> ResponseTooLargeError:
        response.close()  # the rest is never read: the connection is not reused
        text = start[:_TEXT_OF_TOO_LARGE].decode("utf-8", "replace")
        return ResponseTooLargeError(
            f"{method} {self._prefix}{path} -> {response.status}: the response body is larger "
            f"than max_response_bytes ({limit} bytes); it was not read",
            limit=limit,
            method=method,
            url=url,
            status=response.status,
            path="$",
            text=condense(text, secrets=self._tokens.secrets()),
        )

    def _expired_error(
        self,
        method: str,
        url: str,
        path: str,
        expiry: Expiry,
        limits: Timeout,
        total: float | None,
    ) -> APITimeoutError:
        if expiry == "read":
            what = f"no data from the server for {limits.read:g} s"
        elif limits.total is None or (total is not None and total < limits.total):
            what = f"the call's deadline of {limits.deadline:g} s passed"
        else:
            what = f"no complete response within {total:g} s"
        return APITimeoutError(
            f"{method} {self._prefix}{path}: timed out waiting for the response ({what})",
            method=method, url=url, request_sent=True,
        )

    async def _send(
        self,
        method: str,
        url: str,
        path: str,
        headers: dict[str, str],
        data: Any,
        params: Mapping[str, str] | None,
        limits: Timeout,
        total: float | None,
        deadline_at: float | None,
    ) -> RawResponse:
        """One attempt. ``total``: its whole time (the call's deadline included)."""
        pool = self._pool
        session = pool.get()
        semaphore = pool.semaphore
        # The slot first, then the attempt's timeout: waiting for the pool is not a timeout.
        if deadline_at is not None and semaphore.locked():
            acquired = False
            with anyio.move_on_after(max(0.0, deadline_at - self._clock.monotonic())):
                await semaphore.acquire()
                acquired = True
            if not acquired:
                raise self._deadline_error(method, url)
        else:
            await semaphore.acquire()
        debug = _log.isEnabledFor(_DEBUG)
        started = time.perf_counter() if debug else 0.0
        # aiohttp's own timers where the watchdog could not be as exact: for uploads (aiohttp's
        # read timeout starts once the body is written), when the attempt's total may end
        # while connecting (aiohttp then tells that nothing was sent), and outside a task
        task = asyncio.current_task()
        own_timers = (
            task is None
            or isinstance(data, aiohttp.FormData)
            or (total is not None and (limits.connect is None or total <= limits.connect))
        )
        if own_timers:
            client_timeout = aiohttp.ClientTimeout(
                total=total, sock_connect=limits.connect, sock_read=limits.read
            )
        else:  # the watchdog keeps total and read; aiohttp only the connect timeout
            client_timeout = self._connect_timeout(limits.connect)
        watchdog = pool.watchdog
        watch = None
        try:
            self._counters.requests += 1
            if not own_timers:
                assert task is not None
                watch = watchdog.start(task, total, limits.read)
            async with session.request(
                method,
                url,
                data=data,
                params=params,
                headers=headers,
                timeout=client_timeout,
                **self._extra,
            ) as response:
                limit = self._config.max_response_bytes
                length = response.content_length
                if limit is not None and length is not None and length > limit:
                    first = await response.content.readany()
                    raise self._too_large(response, method, url, path, limit, first)
                if watch is None and (
                    limit is None
                    or (length is not None and "Content-Encoding" not in response.headers)
                ):  # read whole: no limit, or a size already checked (not so if compressed)
                    body = await response.read()
                else:  # piece by piece: every piece restarts the read timeout
                    if watch is not None:
                        watch.progress()
                    pieces: list[bytes] = []
                    size = 0
                    readany = response.content.readany
                    while piece := await readany():
                        if watch is not None:
                            watch.progress()
                        pieces.append(piece)
                        size += len(piece)
                        if limit is not None and size > limit:
                            raise self._too_large(
                                response, method, url, path, limit, pieces[0]
                            )
                    body = pieces[0] if len(pieces) == 1 else b"".join(pieces)
                result = RawResponse(response.status, response.headers, body, method, url)
        except asyncio.CancelledError:
            if watch is None or not watch.timed_out():
                raise  # cancelled from elsewhere
        except aiohttp.ConnectionTimeoutError as exc:
            raise APITimeoutError(
                f"{method} {self._prefix}{path}: timed out connecting: {exc}",
                method=method, url=url, request_sent=False,
            ) from exc
        except (aiohttp.ServerTimeoutError, asyncio.TimeoutError) as exc:
            raise APITimeoutError(
                f"{method} {self._prefix}{path}: timed out waiting for the response",
                method=method, url=url, request_sent=True,
            ) from exc
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
        finally:
            if watch is not None:
                watchdog.stop(watch)
                watch.timed_out()  # after an expiry, however the attempt ended: rebalance
            semaphore.release()
        if watch is not None and watch.expired is not None:  # timed out (or finished late)
            raise self._expired_error(method, url, path, watch.expired, limits, total)
        if debug:
            _log.debug(
                "%s %s -> %d (%.1f ms)",
                method, self._prefix + path, result.status,
                (time.perf_counter() - started) * 1000.0,
            )
        return result
