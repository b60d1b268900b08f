"""The connection pool: :class:`HTTPPool`, the aiohttp session (created lazily, closed only
when created here) and the connection slots shared by a client and its ``with_options`` copies.

It owns the session's lifecycle and nothing else: it must not send requests, read responses or
know about tokens and retries (that is the transport's).
"""

from __future__ import annotations

import asyncio

import aiohttp

__all__ = ["HTTPPool"]


class HTTPPool:
    """The aiohttp session and the connection slots shared by a client and its copies.

    Args:
        session: a caller-owned session (never closed here), or ``None`` to create one lazily.
        connection_limit: concurrent requests (and pooled connections) at most.
        verify_ssl: whether TLS certificates are verified.
        trust_env: a session created here takes proxies from ``HTTP_PROXY``/``HTTPS_PROXY``/
            ``NO_PROXY`` (and credentials from ``~/.netrc``).
    """

    def __init__(
        self,
        *,
        session: aiohttp.ClientSession | None,
        connection_limit: int,
        verify_ssl: bool = True,
        trust_env: bool = False,
    ) -> None:
        self._session = session
        self.trust_env = trust_env
        self.owned = session is None
        """Whether the session is created (and closed) here."""
        self.connection_limit = connection_limit
        self.verify_ssl = verify_ssl
        self.semaphore = asyncio.Semaphore(connection_limit)
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
            session = self._session = aiohttp.ClientSession(
                connector=connector, trust_env=self.trust_env
            )
        return session

    async def aclose(self) -> None:
        """Close the session if it was created here (waits for the connections to close);
        idempotent. A caller-owned session is left open."""
        if self.closed:
            return
        self.closed = True
        session = self._session
        if self.owned and session is not None and not session.closed:
            await session.close()
