"""The request plumbing of the emulator: routing, authentication, faults, latency, statistics.

Endpoint logic lives in :mod:`.endpoints`; this module wraps every handler so each request is
counted, checked for a valid token, exposed to the installed faults and delayed by the latency
model while it holds a capacity slot.
"""

from __future__ import annotations

import asyncio
import functools
import random
import re
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import msgspec
from aiohttp import web

from .faults import FaultInjector, FaultProfile

if TYPE_CHECKING:
    from .config import LatencyModel
    from .stats import EmulatorStats
    from .tokens import TokenAuthority

__all__ = [
    "Handler",
    "Plumbing",
    "Router",
    "json_response",
    "redirect_response",
    "text_response",
]

Handler = Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]
Impl = Callable[[web.BaseRequest, "FaultProfile | None"], Awaitable[web.StreamResponse]]
Receive = Callable[[web.BaseRequest], Awaitable[None]]

UNAUTHENTICATED = b'{"message":"Unauthenticated."}'
TOO_MANY = b'{"message":"Too Many Attempts."}'
SERVER_ERROR = b'{"message":"Server Error"}'
FORBIDDEN = b'{"message":"This action is unauthorized."}'
_GATEWAY_PAGE = (
    "<html>\r\n<head><title>{status} {reason}</title></head>\r\n<body>\r\n<center><h1>{status} "
    "{reason}</h1></center>\r\n<hr><center>openresty</center>\r\n</body>\r\n</html>\r\n"
)
_REASONS = {
    500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Temporarily Unavailable",
    504: "Gateway Time-out",
}


def redirect_response(status: int, location: str) -> web.Response:
    """A 3xx with ``Location`` and a short HTML body (as a framework's redirect has)."""
    body = f'<html><body>Redirecting to <a href="{location}">{location}</a>.</body></html>'
    return web.Response(
        text=body, status=status, content_type="text/html", headers={"Location": location}
    )


def json_response(body: bytes, status: int = 200) -> web.Response:
    """A response with a pre-encoded JSON body."""
    return web.Response(body=body, status=status, content_type="application/json")


def text_response(text: str, status: int) -> web.Response:
    """A plain-text (``text/html``, as Laravel's ``response($string)``) response."""
    return web.Response(text=text, status=status, content_type="text/html")


def server_error(status: int, html: bool | None = None) -> web.Response:
    """The body a 5xx carries: by default (``html=None``) Laravel's JSON for 500 and the
    gateway's HTML page otherwise; ``html=True``/``False`` force the HTML page / the JSON."""
    if html is False or (html is None and status == 500):
        return json_response(SERVER_ERROR, status)
    reason = _REASONS.get(status, "Server Error")
    return text_response(_GATEWAY_PAGE.format(status=status, reason=reason), status)


MATCH: Any = (
    web.RequestKey("iris360_match", dict) if hasattr(web, "RequestKey") else "iris360_match"
)
"""Key of the path parameters in the request's storage (``request[MATCH]["id"]``)."""


def path_params(request: web.BaseRequest) -> dict[str, str]:
    """The ``{name}`` values the router matched for ``request``."""
    params: dict[str, str] = request.get(MATCH, {})
    return params


def _wants_json(request: web.BaseRequest) -> bool:
    accept = request.headers.get("Accept", "")
    return "json" in accept or "+json" in accept


class _Disconnect(Exception):
    """Raised to end a request by closing its connection without any response."""


class Plumbing:
    """Shared state of the request wrapper.

    Args:
        stats: where requests are counted.
        tokens: the token authority checking ``Authorization: Bearer``.
        faults: the fault injector.
        latency: the initial latency model.
        capacity: at most this many requests are processed at once (``None``: unlimited).
        seed: seed of the latency jitter.
        require_accept_json: answer like Laravel when ``Accept: application/json`` is missing.
    """

    def __init__(
        self,
        *,
        stats: EmulatorStats,
        tokens: TokenAuthority,
        faults: FaultInjector,
        latency: LatencyModel,
        capacity: int | None,
        seed: int,
        require_accept_json: bool = False,
    ) -> None:
        self.stats = stats
        self.tokens = tokens
        self.faults = faults
        self.latency = latency
        self.capacity = capacity
        self._slots: asyncio.Semaphore | None = None
        self._rng = random.Random(seed)
        self.require_accept_json = require_accept_json

    def bind_loop(self) -> None:
        """Create the loop-bound objects (call from the serving event loop)."""
        if self.capacity is not None:
            self._slots = asyncio.Semaphore(self.capacity)

    def authorized(self, request: web.BaseRequest) -> bool:
        """Whether the request carries a valid access token."""
        header = request.headers.get("Authorization")
        if header is None or not header.startswith("Bearer "):
            return False
        return self.tokens.check(header[7:].strip())

    async def work(self, items: int) -> None:
        """Spend the simulated processing time of a request with ``items`` items."""
        model = self.latency
        if model.zero:
            return
        delay = model.base + model.per_item * items
        if model.jitter:
            delay += self._rng.random() * model.jitter
        if delay > 0:
            await asyncio.sleep(delay)

    async def redirect_trap(self, request: web.BaseRequest) -> web.StreamResponse:
        """The default target of redirect faults: counts the request, answers 404."""
        self.stats.redirect_hits += 1
        await request.read()
        message = f"The route {request.path.lstrip('/')} could not be found."
        return json_response(msgspec.json.encode({"message": message}), 404)

    def route(
        self,
        endpoint: str,
        impl: Impl,
        *,
        authenticated: bool = True,
        on_receive: Receive | None = None,
    ) -> Handler:
        """Wrap ``impl`` (the endpoint logic) into an aiohttp handler for ``endpoint``;
        ``on_receive(request)`` runs first for every request received, before any fault."""
        stats = self.stats

        async def handler(request: web.BaseRequest) -> web.StreamResponse:
            stats.requests[endpoint] += 1
            stats.in_flight += 1
            if stats.in_flight > stats.max_in_flight:
                stats.max_in_flight = stats.in_flight
            status = 0
            try:
                if on_receive is not None:
                    await on_receive(request)
                response = await self._handle(request, endpoint, impl, authenticated)
                status = response.status
                return response
            except _Disconnect:
                transport = request.transport
                if transport is not None:
                    transport.abort()
                raise asyncio.CancelledError() from None
            finally:
                stats.in_flight -= 1
                stats.record_response(endpoint, status)

        return handler

    async def _handle(
        self, request: web.BaseRequest, endpoint: str, impl: Impl, authenticated: bool
    ) -> web.StreamResponse:
        profile = self.faults.profile_for(endpoint)
        if profile is not None:
            early = self._pre_faults(profile, endpoint, request)
            if early is not None:
                return early
        if authenticated and not self.authorized(request):
            self.stats.unauthenticated += 1
            if self.require_accept_json and not _wants_json(request):
                return server_error(500)
            return json_response(UNAUTHENTICATED, 401)
        slots = self._slots
        if slots is None:
            response = await impl(request, profile)
        else:
            stats = self.stats
            async with slots:
                stats.processing += 1
                if stats.processing > stats.max_processing:
                    stats.max_processing = stats.processing
                try:
                    response = await impl(request, profile)
                finally:
                    stats.processing -= 1
        if response.status == 422 and self.require_accept_json and not _wants_json(request):
            return web.Response(status=302, headers={"Location": str(request.url.origin())})
        if profile is not None and response.status < 300:
            return await self._post_faults(profile, endpoint, response, request)
        return response

    @staticmethod
    def _redirect(profile: FaultProfile, request: web.BaseRequest) -> web.Response:
        location = profile.redirect_location.replace("{path}", request.path)
        return redirect_response(profile.redirect_status, location)

    def _pre_faults(
        self, profile: FaultProfile, endpoint: str, request: web.BaseRequest
    ) -> web.Response | None:
        faults = self.faults
        count = functools.partial(self.stats.count_fault, endpoint)
        if faults.revoke_now(profile, endpoint):
            count("revoke")
            self.tokens.revoke_all()
        if faults.draw(profile, profile.reset_rate):
            count("reset")
            raise _Disconnect
        if faults.draw(profile, profile.rate_limit_rate):
            count("rate_limit")
            response = json_response(TOO_MANY, 429)
            response.headers["Retry-After"] = str(profile.retry_after)
            return response
        if faults.draw(profile, profile.error_rate):
            count("error")
            return server_error(profile.error_status, profile.error_html)
        if faults.draw(profile, profile.redirect_rate):
            count("redirect")
            return self._redirect(profile, request)
        if endpoint != "devices.bulk" and faults.draw(profile, profile.forbidden_rate):
            count("forbidden")
            return json_response(FORBIDDEN, 403)
        return None

    async def _post_faults(
        self,
        profile: FaultProfile,
        endpoint: str,
        response: web.StreamResponse,
        request: web.BaseRequest,
    ) -> web.StreamResponse:
        faults = self.faults
        count = functools.partial(self.stats.count_fault, endpoint)
        if faults.draw(profile, profile.drop_rate):
            count("drop")
            raise _Disconnect
        if faults.draw(profile, profile.redirect_after_rate):
            count("redirect_after")
            return self._redirect(profile, request)
        if faults.draw(profile, profile.malformed_rate) and isinstance(response, web.Response):
            count("malformed")
            body = response.body
            raw = body if isinstance(body, bytes) else b"[]"
            truncated = raw[: max(1, len(raw) // 2)]
            if truncated == raw:
                truncated = raw[:-1] if len(raw) > 1 else b"{"
            response = web.Response(
                body=truncated, status=response.status, content_type="application/json"
            )
        if faults.draw(profile, profile.slow_rate):
            count("slow")
            await asyncio.sleep(profile.slow_delay)
        return response


class Router:
    """Maps ``(method, path)`` to handlers for aiohttp's low-level server (no application,
    middleware or URL-dispatcher overhead on the hot path).

    Paths may contain ``{name}`` placeholders (``{name:.+}`` to span slashes); the matched values
    are stored in ``request["match"]``.
    """

    def __init__(self) -> None:
        self._exact: dict[tuple[str, str], Handler] = {}
        self._patterns: list[tuple[str, re.Pattern[str], Handler]] = []

    def add(self, method: str, path: str, handler: Handler) -> None:
        """Route ``method path`` to ``handler``."""
        if "{" not in path:
            self._exact[(method, path)] = handler
            return
        regex = ""
        for literal, name, pattern in re.findall(r"([^{]*)(?:\{(\w+)(?::([^}]+))?\})?", path):
            regex += re.escape(literal)
            if name:
                regex += f"(?P<{name}>{pattern or '[^/]+'})"
        self._patterns.append((method, re.compile(regex), handler))

    async def __call__(self, request: web.BaseRequest) -> web.StreamResponse:
        handler = self._exact.get((request.method, request.path))
        if handler is not None:
            return await handler(request)
        path = request.path
        wrong_method = False
        for method, regex, candidate in self._patterns:
            match = regex.fullmatch(path)
            if match is not None:
                if method != request.method:
                    wrong_method = True
                    continue
                request[MATCH] = match.groupdict()
                return await candidate(request)
        if not wrong_method:
            wrong_method = any(p == path for _, p in self._exact)
        if wrong_method:
            message = f"The {request.method} method is not supported for route {path.lstrip('/')}."
            return json_response(msgspec.json.encode({"message": message}), 405)
        message = f"The route {path.lstrip('/')} could not be found."
        return json_response(msgspec.json.encode({"message": message}), 404)
