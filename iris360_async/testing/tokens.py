"""Access and refresh tokens as the emulator issues them.

Access tokens are HS256 JWTs with ``sub``, ``iat``, ``exp`` (seconds since the epoch, emulator
clock) and a ``gen`` claim; revoking bumps the generation so every token issued before stops
working. Refresh tokens are opaque, single use and rotate on every refresh.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections import OrderedDict
from dataclasses import dataclass, field

import msgspec

from .clock import EmulatorClock

__all__ = ["TokenAuthority", "TokenPair"]

_HEADER = base64.urlsafe_b64encode(b'{"alg":"HS256","typ":"JWT"}').rstrip(b"=")
_MAX_CACHED = 50_000
_MAX_REFRESH_TOKENS = 100_000


def _b64(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


def _unb64(data: str) -> bytes:
    return base64.urlsafe_b64decode(data + "=" * (-len(data) % 4))


class _Claims(msgspec.Struct):
    sub: str
    exp: float
    gen: int


@dataclass(frozen=True)
class TokenPair:
    """An issued access token and its refresh token (both hidden from ``repr``)."""

    token: str = field(repr=False)
    refresh_token: str = field(repr=False)


class TokenAuthority:
    """Issues and checks tokens for one user.

    Args:
        clock: the emulator clock (expiry is checked against it).
        subject: the ``sub`` claim.
        access_ttl: access token lifetime, in seconds.
        refresh_ttl: refresh token lifetime, in seconds.
        secret: HMAC key; random when omitted.
    """

    def __init__(
        self,
        clock: EmulatorClock,
        *,
        subject: str,
        access_ttl: float,
        refresh_ttl: float,
        secret: bytes | None = None,
    ) -> None:
        self._clock = clock
        self.subject = subject
        self.access_ttl = access_ttl
        self.refresh_ttl = refresh_ttl
        self._secret = secret if secret is not None else secrets.token_bytes(32)
        self._generation = 0
        self._counter = 0
        self._valid: dict[str, float] = {}
        self._refresh: OrderedDict[str, float] = OrderedDict()
        self._claims_decoder = msgspec.json.Decoder(_Claims)

    def _sign(self, signing_input: bytes) -> bytes:
        return _b64(hmac.new(self._secret, signing_input, hashlib.sha256).digest())

    def issue(self) -> TokenPair:
        """A new access token and a new refresh token."""
        now = self._clock.now()
        self._counter += 1
        payload = msgspec.json.encode(
            {
                "sub": self.subject,
                "iat": int(now),
                "exp": int(now + self.access_ttl),
                "gen": self._generation,
                "jti": f"{self._counter}-{secrets.token_hex(4)}",
                "typ": "Bearer",
            }
        )
        signing_input = _HEADER + b"." + _b64(payload)
        token = (signing_input + b"." + self._sign(signing_input)).decode()
        refresh = secrets.token_urlsafe(32)
        self._refresh[refresh] = now + self.refresh_ttl
        while len(self._refresh) > _MAX_REFRESH_TOKENS:
            self._refresh.popitem(last=False)
        return TokenPair(token=token, refresh_token=refresh)

    def check(self, token: str) -> bool:
        """Whether ``token`` is a valid, unexpired, unrevoked access token."""
        exp = self._valid.get(token)
        if exp is None:
            exp = self._verify(token)
            if exp is None:
                return False
            if len(self._valid) >= _MAX_CACHED:
                self._valid.clear()
            self._valid[token] = exp
        return exp > self._clock.now()

    def _verify(self, token: str) -> float | None:
        parts = token.split(".")
        if len(parts) != 3:
            return None
        signing_input = f"{parts[0]}.{parts[1]}".encode()
        if not hmac.compare_digest(self._sign(signing_input), parts[2].encode()):
            return None
        try:
            claims = self._claims_decoder.decode(_unb64(parts[1]))
        except (msgspec.DecodeError, ValueError):
            return None
        if claims.gen != self._generation or claims.sub != self.subject:
            return None
        return claims.exp

    def rotate(self, refresh_token: str) -> TokenPair | None:
        """Spend ``refresh_token`` for a new pair; ``None`` when it is unknown, used or expired."""
        exp = self._refresh.pop(refresh_token, None)
        if exp is None or exp <= self._clock.now():
            return None
        return self.issue()

    def revoke_all(self, *, refresh_tokens: bool = False) -> None:
        """Invalidate every access token issued so far (and every refresh token too when
        ``refresh_tokens`` is true)."""
        self._generation += 1
        self._valid.clear()
        if refresh_tokens:
            self._refresh.clear()
