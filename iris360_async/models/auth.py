"""Authentication shapes: the login and refresh bodies and the token pair they return.

None of these show a secret in ``repr``.
"""

from __future__ import annotations

import msgspec

__all__ = ["LoginRequest", "RefreshRequest", "TokenPair"]


class LoginRequest(msgspec.Struct, frozen=True):
    """Body of the login call: user e-mail and password."""

    username: str
    password: str

    def __repr__(self) -> str:
        return f"LoginRequest(username={self.username!r}, password='***')"


class RefreshRequest(msgspec.Struct, frozen=True):
    """Body of the refresh call (wire name ``refreshToken``)."""

    refresh_token: str = msgspec.field(name="refreshToken")

    def __repr__(self) -> str:
        return "RefreshRequest(refresh_token='***')"


class TokenPair(msgspec.Struct, frozen=True):
    """An access token and the refresh token issued with it.

    Attributes:
        token: JWT access token for ``Authorization: Bearer``.
        refresh_token: wire name ``refreshToken``; a refresh returns a new one each time
            (``None`` when the client was given an access token only).
        id: platform user id (login only).
    """

    token: str
    refresh_token: str | None = msgspec.field(default=None, name="refreshToken")
    id: int | None = None

    def __repr__(self) -> str:
        refresh = "None" if self.refresh_token is None else "'***'"
        return f"TokenPair(token='***', refresh_token={refresh}, id={self.id!r})"
