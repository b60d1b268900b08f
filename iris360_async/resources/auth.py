"""``client.auth``: explicit login and refresh (normally the client does both itself)."""

from __future__ import annotations

from .._auth import TokenSet
from ..models.auth import TokenPair
from ._base import APIResource

__all__ = ["AuthResource"]


def _pair(tokens: TokenSet) -> TokenPair:
    return TokenPair(token=tokens.token, refresh_token=tokens.refresh_token)


class AuthResource(APIResource):
    """Login and refresh through the client's token manager, so every request of the client
    uses the tokens obtained here."""

    async def login(self) -> TokenPair:
        """Log in with the configured user name and password.

        Never repeated automatically (repeated failures lock the account).

        Raises:
            ValueError: no credentials configured.
            AuthenticationError: the server refused them.
        """
        return _pair(await self._transport.tokens.login())

    async def refresh(self) -> TokenPair:
        """Exchange the refresh token for a new pair (one login when the refresh is refused
        and credentials are known).

        Raises:
            ValueError: neither a refresh token nor credentials are available.
        """
        return _pair(await self._transport.tokens.refresh())
