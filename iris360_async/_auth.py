"""Access tokens: login, refresh, JWT expiry, proactive refresh and single flight.

However many requests are in flight, one expiry (or one rejected token) causes exactly one
refresh call; every waiter reuses its outcome. A refresh that is refused or fails falls back
to one login when credentials are known. A refused login is remembered and never repeated
automatically, since repeated failures lock the account (a 429 is waited out once, by the
transport's ``auth_send``). Tokens never appear in ``repr``, logs or exceptions.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import msgspec

from ._config import ClientConfig
from ._logging import get_logger
from ._retry import Clock
from .errors import (
    APIConnectionError,
    APIStatusError,
    AuthenticationError,
    BadRequestError,
    InternalServerError,
    Iris360Error,
    RateLimitError,
    ResponseDecodeError,
    UnprocessableEntityError,
)

__all__ = [
    "LOGIN_PASSWORD_FIELD",
    "LOGIN_USERNAME_FIELD",
    "REFRESH_TOKEN_FIELD",
    "AuthSender",
    "TokenManager",
    "TokenSet",
    "jwt_expiry",
]

LOGIN_USERNAME_FIELD = "username"
"""Body field that carries the user name (an e-mail address) in the login request."""
LOGIN_PASSWORD_FIELD = "password"
"""Body field that carries the password in the login request."""
REFRESH_TOKEN_FIELD = "refreshToken"
"""Body field that carries the refresh token in the refresh request."""

_ACCESS_KEYS = ("token", "access_token", "accessToken")
_REFRESH_KEYS = ("refreshToken", "refresh_token")
_REFUSED_REFRESH = (AuthenticationError, BadRequestError, UnprocessableEntityError)
_REMEMBERED_LOGIN_STATUSES = frozenset({400, 401, 403, 422})
_TRANSIENT = (APIConnectionError, InternalServerError, RateLimitError)
_PROACTIVE_PAUSE = 5.0  # seconds between proactive attempts after a transient failure

AuthSender = Callable[[str, Mapping[str, str]], Awaitable[bytes]]
"""``send(path, body) -> response body``: POSTs ``body`` as JSON to the API path without
authentication or automatic retries; raises ``errors.*`` on failure."""

_log = get_logger(__name__)
_DECODE = msgspec.json.Decoder()


def jwt_expiry(token: str) -> float | None:
    """The ``exp`` claim of a JWT in seconds since the epoch, or ``None`` when the token is
    opaque or carries no usable ``exp``. The signature is not checked."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    payload = parts[1]
    try:
        raw = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
        claims = _DECODE.decode(raw)
    except (ValueError, msgspec.DecodeError):
        return None
    if not isinstance(claims, dict):
        return None
    exp = claims.get("exp")
    if isinstance(exp, bool) or not isinstance(exp, (int, float)):
        return None
    return float(exp)


@dataclass(frozen=True)
class TokenSet:
    """The tokens currently held. ``repr`` never shows them.

    Attributes:
        token: the access token (``Authorization: Bearer …``).
        refresh_token: the refresh token, if any.
        expires_at: the access token's expiry in seconds since the epoch, ``None`` if unknown.
    """

    token: str = field(repr=False)
    refresh_token: str | None = field(default=None, repr=False)
    expires_at: float | None = None

    def __repr__(self) -> str:
        refresh = "None" if self.refresh_token is None else "'***'"
        return f"TokenSet(token='***', refresh_token={refresh}, expires_at={self.expires_at!r})"


class TokenManager:
    """Holds and renews the access token of one client (shared by its ``with_options`` copies).

    Args:
        config: the client configuration (credentials, tokens, paths, ``refresh_margin``).
        clock: where time comes from; ``clock.time()`` is compared with the JWT ``exp``.
        send: how login/refresh requests are sent (the transport binds it with :meth:`bind`).
        username_field: the login body field carrying the user name.
    """

    def __init__(
        self,
        config: ClientConfig,
        *,
        clock: Clock,
        send: AuthSender | None = None,
        username_field: str = LOGIN_USERNAME_FIELD,
    ) -> None:
        self._clock = clock
        self._send = send
        self._username = config.username
        self._password = config.password
        self._login_path = config.paths.login
        self._refresh_path = config.paths.refresh
        self._margin = config.refresh_margin
        self._username_field = username_field
        self._lock = asyncio.Lock()
        self._epoch = 0
        self._last_error: Iris360Error | None = None
        self._login_error: APIStatusError | None = None
        self._access: str | None = None
        self._refresh: str | None = config.refresh_token
        self._expires_at: float | None = None
        self._refresh_at: float | None = None
        self.refreshes = 0
        """Refresh requests sent."""
        self.logins = 0
        """Login requests sent."""
        if config.token is not None:
            self._set(config.token, config.refresh_token)

    def __repr__(self) -> str:
        return (
            f"TokenManager(has_token={self._access is not None}, "
            f"expires_at={self._expires_at!r}, refreshes={self.refreshes}, logins={self.logins})"
        )

    def bind(self, send: AuthSender) -> None:
        """Set how login/refresh requests are sent (done by the transport)."""
        self._send = send

    # -- state ----------------------------------------------------------------------------

    @property
    def has_credentials(self) -> bool:
        """Whether a user name and password are known (login is possible)."""
        return self._username is not None and self._password is not None

    @property
    def can_renew(self) -> bool:
        """Whether a new access token can be obtained (refresh token or credentials)."""
        return self._refresh is not None or self.has_credentials

    @property
    def expires_at(self) -> float | None:
        """Expiry of the current access token, seconds since the epoch (``None``: unknown)."""
        return self._expires_at

    @property
    def tokens(self) -> TokenSet | None:
        """The tokens currently held, or ``None`` before the first login."""
        if self._access is None:
            return None
        return TokenSet(self._access, self._refresh, self._expires_at)

    def set_tokens(self, token: str, refresh_token: str | None = None) -> None:
        """Use these tokens from now on (expiry read from the JWT ``exp``)."""
        self._set(token, refresh_token if refresh_token is not None else self._refresh)

    def secrets(self) -> tuple[str, ...]:
        """The secrets known now (password, access token, refresh token), for masking server
        text that echoes one of them. Never log or show the result."""
        return tuple(s for s in (self._password, self._access, self._refresh) if s)

    def current_token(self) -> str | None:
        """The access token if it can be used as is (synchronous fast path), else ``None``."""
        token = self._access
        if token is None:
            return None
        refresh_at = self._refresh_at
        if refresh_at is not None and self._clock.time() >= refresh_at and self.can_renew:
            return None
        return token

    # -- what the transport calls ---------------------------------------------------------

    async def get_token(self) -> str | None:
        """An access token for the next request, renewing it first when it is due.

        Returns ``None`` when there is no token and no way to get one (the request then goes
        out unauthenticated and the server decides).
        """
        token = self.current_token()
        if token is not None:
            return token
        stale = self._access
        if stale is None and not self.can_renew:
            return None
        try:
            return await self._renew(stale, proactive=True)
        except _TRANSIENT:
            # The old token still works: keep using it and try again a little later.
            now = self._clock.time()
            if stale is not None and self._access == stale and not self._expired(now):
                pause = now + _PROACTIVE_PAUSE
                expires = self._expires_at
                self._refresh_at = pause if expires is None else min(pause, expires)
                if _log.isEnabledFor(logging.WARNING):
                    _log.warning("proactive token refresh failed; keeping the current token")
                return stale
            raise

    async def token_rejected(self, used: str | None) -> str | None:
        """After a 401 for a request sent with ``used``: the token to replay with.

        If the token was already replaced meanwhile, returns the current one without a new
        refresh. Returns ``None`` when nothing can be renewed (the 401 stands).
        """
        current = self._access
        if current is not None and current != used:
            return current
        if not self.can_renew:
            return None
        return await self._renew(used, proactive=False)

    def replacement_for(self, used: str | None) -> str | None:
        """The current token if it differs from ``used`` (someone renewed it), else ``None``.

        Never starts a refresh.
        """
        current = self._access
        if current is not None and current != used:
            return current
        return None

    # -- explicit calls -------------------------------------------------------------------

    async def login(self) -> TokenSet:
        """Log in now with the configured credentials (forgets an earlier refused login).

        Raises:
            ValueError: no user name/password configured.
            AuthenticationError: the server refused the credentials.
        """
        if not self.has_credentials:
            raise ValueError("login needs username and password (or IRIS360_USERNAME/PASSWORD)")
        async with self._lock:
            self._login_error = None
            await self._attempt(self._login)
        return self._token_set()

    async def refresh(self) -> TokenSet:
        """Refresh now (falls back to one login when the refresh is refused).

        Raises:
            ValueError: neither a refresh token nor credentials are available.
        """
        if not self.can_renew:
            raise ValueError("refresh needs a refresh token or username and password")
        async with self._lock:
            await self._attempt(self._obtain)
        return self._token_set()

    # -- internals ------------------------------------------------------------------------

    def _token_set(self) -> TokenSet:
        assert self._access is not None
        return TokenSet(self._access, self._refresh, self._expires_at)

    def _expired(self, now: float) -> bool:
        return self._expires_at is not None and now >= self._expires_at

    def _set(self, token: str, refresh_token: str | None) -> None:
        exp = jwt_expiry(token)
        self._access = token
        self._refresh = refresh_token
        self._expires_at = exp
        if exp is None:
            self._refresh_at = None
        else:
            lifetime = max(0.0, exp - self._clock.time())
            # Never refresh earlier than half the lifetime, whatever the margin.
            self._refresh_at = exp - min(self._margin, lifetime / 2)

    async def _renew(self, stale: str | None, *, proactive: bool) -> str | None:
        epoch = self._epoch
        async with self._lock:
            if self._epoch != epoch:
                # An attempt finished while we waited: share its outcome.
                if self._last_error is not None:
                    raise copy.copy(self._last_error)
                return self._access
            current = self._access
            if current is not None and current != stale:
                return current
            if proactive and self.current_token() is not None:
                return current
            if not self.can_renew:
                return current
            await self._attempt(self._obtain)
            return self._access

    async def _attempt(self, action: Callable[[], Awaitable[None]]) -> None:
        """Run ``action`` under the lock and publish its outcome to the waiters."""
        try:
            await action()
        except Iris360Error as exc:
            self._last_error = exc
            self._epoch += 1
            raise
        self._last_error = None
        self._epoch += 1

    async def _obtain(self) -> None:
        if self._refresh is not None:
            try:
                await self._refresh_now()
                return
            except _REFUSED_REFRESH:
                self._refresh = None
                if not self.has_credentials:
                    raise
                if _log.isEnabledFor(logging.INFO):
                    _log.info("refresh token refused; logging in again")
            except Iris360Error as exc:
                # A refresh that failed (5xx, lost connection, timeout, redirect, unreadable
                # answer) falls back to one login as well: a request is given up only when a
                # refresh and a login both failed.
                if not self.has_credentials:
                    raise
                if _log.isEnabledFor(logging.INFO):
                    _log.info("refresh failed (%s); logging in instead", type(exc).__name__)
        await self._login()

    async def _refresh_now(self) -> None:
        assert self._refresh is not None
        send = self._sender()
        self.refreshes += 1
        content = await send(self._refresh_path, {REFRESH_TOKEN_FIELD: self._refresh})
        self._store(content, self._refresh_path)

    async def _login(self) -> None:
        remembered = self._login_error
        if remembered is not None:
            raise AuthenticationError(
                f"login was refused earlier ({remembered.status}); it is not repeated "
                "automatically because repeated failures lock the account. Fix the "
                "credentials or call client.auth.login() to try again.",
                status=remembered.status,
                method=remembered.method,
                url=remembered.url,
                body=remembered.body,
                text=remembered.text,
                headers=remembered.headers,
            )
        if self._username is None or self._password is None:
            raise ValueError("login needs username and password")
        send = self._sender()
        self.logins += 1
        body = {self._username_field: self._username, LOGIN_PASSWORD_FIELD: self._password}
        try:
            content = await send(self._login_path, body)
        except APIStatusError as exc:
            if exc.status in _REMEMBERED_LOGIN_STATUSES:
                self._login_error = exc
            raise
        self._store(content, self._login_path)

    def _sender(self) -> AuthSender:
        if self._send is None:
            raise RuntimeError("TokenManager is not bound to a transport")
        return self._send

    def _store(self, content: bytes, path: str) -> None:
        try:
            data: Any = _DECODE.decode(content)
        except msgspec.DecodeError:
            data = None
        if not isinstance(data, dict):
            raise ResponseDecodeError(
                f"POST {path}: the token response is not a JSON object", path="$"
            )
        token = _first_str(data, _ACCESS_KEYS)
        if token is None:
            raise ResponseDecodeError(
                f"POST {path}: the token response has no 'token'", path="$.token"
            )
        refresh = _first_str(data, _REFRESH_KEYS)
        previous = self._access
        # Rotating refresh tokens: always keep the newest one.
        self._set(token, refresh if refresh is not None else self._refresh)
        due = self._refresh_at
        if token == previous or (due is not None and due <= self._clock.time()):
            # Renewing again early cannot help: the server answered the token it had (or one
            # whose exp is already past by our clock, a skewed clock). Use it until a 401.
            self._refresh_at = None


def _first_str(data: dict[str, Any], keys: tuple[str, ...]) -> str | None:
    for key in keys:
        value = data.get(key)
        if isinstance(value, str) and value:
            return value
    return None
