"""Fault injection: which failures the emulator simulates, and how often.

A :class:`FaultProfile` is an immutable set of rates (probabilities between 0 and 1, drawn from a
seeded generator, so a run is reproducible). Profiles are installed on a running emulator, for
every endpoint or for one, and can be swapped at any time::

    emu.set_faults(FaultProfile(error_rate=0.1))                         # every API endpoint
    emu.set_faults(FaultProfile(drop_rate=1.0), endpoint="devices.bulk")  # one endpoint
    emu.clear_faults()

Endpoint keys: ``login``, ``refresh``, ``devices.paginate``, ``devices.bulk``,
``devices.import``, ``entities.paginate``, ``entities.latest``, ``timeseries``,
``connectors.paginate``, ``connectors.get``, ``connectors.models``. The global profile applies to
every endpoint except ``login`` and ``refresh``; a per-endpoint profile replaces the global one
for its endpoint (install one on ``login`` to disturb authentication).

Order in which a request meets the faults: token revocation, connection reset, 429, 5xx,
redirect, 403 (except on ``devices.bulk``) -- all before any processing; then the request is
processed (commands applied; on ``devices.bulk`` a 403 comes mid-chunk, the first targets
already commanded); then lost response, redirect after processing, malformed body and slow
response.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, fields

__all__ = ["ENDPOINTS", "REDIRECT_TRAP", "FaultInjector", "FaultProfile"]

ENDPOINTS: tuple[str, ...] = (
    "login",
    "refresh",
    "devices.paginate",
    "devices.bulk",
    "devices.import",
    "entities.paginate",
    "entities.latest",
    "timeseries",
    "connectors.paginate",
    "connectors.get",
    "connectors.models",
)

AUTH_ENDPOINTS = frozenset({"login", "refresh"})

REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})

REDIRECT_TRAP = "/redirected"
"""Path prefix of the default redirect target: the emulator answers 404 there and counts every
request (``stats.redirect_hits``), so a test can prove that no client followed a redirect."""


@dataclass(frozen=True)
class FaultProfile:
    """Rates of simulated failures; every rate is a probability per request in ``[0, 1]``.

    Attributes:
        error_rate: answer ``error_status`` before processing anything.
        error_status: status of those errors (500, 502, 503 or 504 are typical).
        error_html: the body of those errors: ``None`` (default) answers 500 with Laravel's
            JSON ``{"message": "Server Error"}`` and other statuses with the gateway's HTML page
            (nginx/openresty style, CRLF line ends); ``True`` the HTML page for every status;
            ``False`` the JSON body for every status.
        rate_limit_rate: answer 429 ``{"message": "Too Many Attempts."}`` before processing.
        retry_after: value of the ``Retry-After`` header of those 429s, in whole seconds.
        reset_rate: close the connection before processing (no response; nothing applied).
        drop_rate: process the request (commands applied), then close the connection without
            a response.
        slow_rate: process the request, then wait ``slow_delay`` seconds before answering.
        slow_delay: the delay of slow responses, in seconds (real time).
        malformed_rate: process the request, then answer its success status with a truncated
            JSON body.
        revoke_rate: invalidate every issued access token before handling the request (the
            request itself then fails with 401, as do all requests with older tokens).
        revoke_burst: a drawn revocation also revokes the tokens before each of the next
            ``revoke_burst - 1`` requests of the same endpoint (a 401 storm: the request replayed
            after a successful refresh meets a second revocation).
        redirect_rate: answer ``redirect_status`` with a ``Location`` before processing
            (nothing applied).
        redirect_after_rate: process the request (commands applied, tokens issued), then
            answer ``redirect_status`` with a ``Location`` instead of the result.
        redirect_status: 301, 302, 303, 307 or 308.
        redirect_location: the ``Location`` header; ``{path}`` is replaced by the request's
            path. The default sends clients to the emulator's trap (``/redirected/...``), which
            answers 404 and counts every request in ``stats.redirect_hits``; ``"{path}"``
            redirects to the same URL (a loop); an absolute URL names another origin.
        forbidden_rate: answer 403 ``{"message": "This action is unauthorized."}``; on
            ``devices.bulk`` after commanding the first ``forbidden_after`` targets (as the real
            server does when one target may not be updated), elsewhere before processing.
        forbidden_after: how many targets are commanded before the 403; ``None`` draws a number
            in ``[0, len(targets))``.
        item_broker_error_rate: ``devices.bulk`` only, per target: the context broker rejects the
            update (``original`` is a broker reply object with an ``errors`` list; nothing
            applied).
        item_exception_rate: ``devices.bulk`` only, per target: ``original`` is an exception
            text string (a broker timeout; nothing applied).
        max_faults: stop injecting after this many faults from this profile (``None``: never).
    """

    error_rate: float = 0.0
    error_status: int = 500
    error_html: bool | None = None
    rate_limit_rate: float = 0.0
    retry_after: int = 1
    reset_rate: float = 0.0
    drop_rate: float = 0.0
    slow_rate: float = 0.0
    slow_delay: float = 30.0
    malformed_rate: float = 0.0
    revoke_rate: float = 0.0
    revoke_burst: int = 1
    redirect_rate: float = 0.0
    redirect_after_rate: float = 0.0
    redirect_status: int = 307
    redirect_location: str = REDIRECT_TRAP + "{path}"
    forbidden_rate: float = 0.0
    forbidden_after: int | None = None
    item_broker_error_rate: float = 0.0
    item_exception_rate: float = 0.0
    max_faults: int | None = None

    def __post_init__(self) -> None:
        for f in fields(self):
            if f.name.endswith("_rate"):
                value = getattr(self, f.name)
                if not 0.0 <= value <= 1.0:
                    raise ValueError(f"FaultProfile.{f.name} must be between 0 and 1")
        if not 500 <= self.error_status <= 599:
            raise ValueError("FaultProfile.error_status must be a 5xx status")
        if self.retry_after < 0 or self.slow_delay < 0:
            raise ValueError("FaultProfile delays must not be negative")
        if self.forbidden_after is not None and self.forbidden_after < 0:
            raise ValueError("FaultProfile.forbidden_after must not be negative")
        if self.redirect_status not in REDIRECT_STATUSES:
            raise ValueError("FaultProfile.redirect_status must be 301, 302, 303, 307 or 308")
        if self.revoke_burst < 1:
            raise ValueError("FaultProfile.revoke_burst must be at least 1")
        if not self.redirect_location or any(c in self.redirect_location for c in "\r\n"):
            raise ValueError("FaultProfile.redirect_location must be a non-empty single line")

    @property
    def active(self) -> bool:
        """Whether any rate is non-zero."""
        return any(getattr(self, f.name) > 0 for f in fields(self) if f.name.endswith("_rate"))

    @property
    def has_item_faults(self) -> bool:
        """Whether per-target bulk faults are configured."""
        return self.item_broker_error_rate > 0 or self.item_exception_rate > 0


class FaultInjector:
    """Holds the installed profiles and draws faults from one seeded generator.

    Args:
        seed: seed of the random generator (reproducible fault sequences).
    """

    def __init__(self, seed: int = 0) -> None:
        self._rng = random.Random(seed)
        self._global: FaultProfile | None = None
        self._per_endpoint: dict[str, FaultProfile] = {}
        self._used: dict[int, int] = {}
        self._burst: dict[str, int] = {}

    def set(self, profile: FaultProfile | None, endpoint: str | None = None) -> None:
        """Install ``profile`` globally (``endpoint=None``) or for one endpoint; ``None``
        removes it."""
        if endpoint is not None and endpoint not in ENDPOINTS:
            raise ValueError(f"unknown endpoint key {endpoint!r}; expected one of {ENDPOINTS}")
        if endpoint is None:
            self._global = profile if profile is not None and profile.active else None
        elif profile is None:
            self._per_endpoint.pop(endpoint, None)
        else:
            self._per_endpoint[endpoint] = profile
        self._used.clear()
        self._burst.clear()

    def clear(self) -> None:
        """Remove every profile."""
        self._global = None
        self._per_endpoint.clear()
        self._used.clear()
        self._burst.clear()

    def reseed(self, seed: int) -> None:
        """Restart the random sequence from ``seed``."""
        self._rng.seed(seed)

    def profile_for(self, endpoint: str) -> FaultProfile | None:
        """The profile that applies to ``endpoint`` (``None`` when no fault can happen)."""
        if self._per_endpoint:
            profile = self._per_endpoint.get(endpoint)
            if profile is not None:
                return profile if profile.active else None
        if endpoint in AUTH_ENDPOINTS:
            return None
        return self._global

    def draw(self, profile: FaultProfile, rate: float) -> bool:
        """Whether a fault of probability ``rate`` happens now (counts toward ``max_faults``)."""
        if rate <= 0.0:
            return False
        if profile.max_faults is not None and self._used.get(id(profile), 0) >= profile.max_faults:
            return False
        if rate >= 1.0 or self._rng.random() < rate:
            key = id(profile)
            self._used[key] = self._used.get(key, 0) + 1
            return True
        return False

    def revoke_now(self, profile: FaultProfile, endpoint: str) -> bool:
        """Whether tokens are revoked before this request of ``endpoint``: a drawn revocation
        or one of the ``revoke_burst - 1`` requests following it."""
        left = self._burst.get(endpoint, 0)
        if left > 0:
            self._burst[endpoint] = left - 1
            return True
        if self.draw(profile, profile.revoke_rate):
            if profile.revoke_burst > 1:
                self._burst[endpoint] = profile.revoke_burst - 1
            return True
        return False

    def randint_below(self, n: int) -> int:
        """A seeded integer in ``[0, n)`` (0 when ``n`` is 0)."""
        return self._rng.randrange(n) if n > 0 else 0
