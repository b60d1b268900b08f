"""Login and token refresh."""

from __future__ import annotations

from aiohttp import web

from ..faults import FaultProfile
from ..server import json_response
from ..validation import LaravelValidator
from .base import (
    EndpointBase,
    encode,
    validation,
)

__all__ = ["AuthEndpoints"]


class AuthEndpoints(EndpointBase):
    """Login and token refresh."""

    def _throttled(self) -> web.Response | None:
        limit = self.config.auth_rate_limit
        if limit is None:
            return None
        now = self.clock.now()
        window = [t for t in self._auth_window if t > now - 60.0]
        self._auth_window = window
        if len(window) >= limit:
            retry = max(1, int(window[0] + 60.0 - now + 0.999))
            response = json_response(b'{"message":"Too Many Attempts."}', 429)
            response.headers["Retry-After"] = str(retry)
            response.headers["X-RateLimit-Limit"] = str(limit)
            response.headers["X-RateLimit-Remaining"] = "0"
            return response
        window.append(now)
        return None

    async def login(self, request: web.BaseRequest, profile: FaultProfile | None) -> web.Response:
        """``POST /login`` -> ``{"id", "token", "refreshToken"}``."""
        throttled = self._throttled()
        if throttled is not None:
            return throttled
        data = await self._json_body(request)
        if not isinstance(data, dict):
            data = {}
        field = "username" if "username" in data and "email" not in data else "email"
        v = LaravelValidator(data)
        user = v.string(field, required=True)
        password = v.string("password", required=True)
        if not v.ok:
            self.stats.login_failures += 1
            return validation(v)
        await self.plumbing.work(1)
        assert user is not None
        assert password is not None
        if user.strip().lower() != self.config.username.lower() or password != self.config.password:
            self.stats.login_failures += 1
            return json_response(b'{"email":"The provided credentials are incorrect"}', 401)
        pair = self.tokens.issue()
        self.stats.logins += 1
        return json_response(
            encode({"id": self.config.user_id, "token": pair.token,
                     "refreshToken": pair.refresh_token})
        )

    async def refresh(self, request: web.BaseRequest, profile: FaultProfile | None) -> web.Response:
        """``POST /refresh-token`` -> ``{"token", "refreshToken"}`` (the old one is spent)."""
        throttled = self._throttled()
        if throttled is not None:
            return throttled
        data = await self._json_body(request)
        v = LaravelValidator(data if isinstance(data, dict) else {})
        token = v.string("refreshToken", required=True)
        if not v.ok:
            self.stats.refresh_failures += 1
            return validation(v)
        await self.plumbing.work(1)
        assert token is not None
        pair = self.tokens.rotate(token)
        if pair is None:
            self.stats.refresh_failures += 1
            return json_response(b'{"error":"Invalid refresh token"}', 401)
        self.stats.refreshes += 1
        return json_response(encode({"token": pair.token, "refreshToken": pair.refresh_token}))
