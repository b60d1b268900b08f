"""The exception hierarchy of iris360-async.

Every exception the SDK raises on purpose derives from :class:`Iris360Error`::

    Iris360Error
    ├── APIConnectionError            the request never got a response
    │   └── APITimeoutError           ... because a timeout fired
    ├── APIStatusError                the server answered with an error status
    │   ├── RedirectError             3xx (redirects are never followed)
    │   ├── BadRequestError           400
    │   ├── AuthenticationError       401
    │   ├── PermissionDeniedError     403
    │   ├── NotFoundError             404
    │   ├── UnprocessableEntityError  422
    │   ├── RateLimitError            429
    │   └── InternalServerError       5xx
    └── ResponseDecodeError           a 2xx body did not match its schema
        └── ResponseTooLargeError     a body exceeded the client's size limit

Bad arguments raise :class:`ValueError` / :class:`TypeError` before any request is sent.

An error raised while obtaining an access token for a request (its login or refresh failed)
has ``while_authenticating = True``: the request that needed the token was never sent.

Exceptions never carry the access token, the refresh token or the password, and they are
picklable, so they survive multiprocessing and task queues intact. Server text inside them is
condensed (:func:`condense`: an HTML page becomes its title, whitespace is collapsed, the
length is bounded), and any known secret the server echoed (the password, a token) is
replaced by ``***`` in the message, ``text``, ``body`` and ``server_message``.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable
from typing import Any

__all__ = [
    "APIConnectionError",
    "APIStatusError",
    "APITimeoutError",
    "AuthenticationError",
    "BadRequestError",
    "InternalServerError",
    "Iris360Error",
    "NotFoundError",
    "PermissionDeniedError",
    "RateLimitError",
    "RedirectError",
    "ResponseDecodeError",
    "ResponseTooLargeError",
    "UnprocessableEntityError",
    "condense",
    "mask_secrets",
    "mask_value",
    "status_error_class",
]

_MAX_TEXT_IN_MESSAGE = 300
MAX_ERROR_TEXT = 64 * 1024
"""Characters of an error response's raw text kept in ``APIStatusError.text``."""


class Iris360Error(Exception):
    """Base class of every error raised by iris360-async.

    Attributes:
        while_authenticating: ``True`` when the error was raised while obtaining an access
            token for a request (login or refresh failed): that request was never sent.
    """

    while_authenticating: bool = False

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (type(self), self.__dict__.copy()))


def _rebuild(cls: type[Iris360Error], state: dict[str, Any]) -> Iris360Error:
    obj = cls.__new__(cls)
    Exception.__init__(obj, state.get("message", ""))
    obj.__dict__.update(state)
    return obj


class APIConnectionError(Iris360Error):
    """The request did not get a response (DNS, refused, reset, TLS, ...).

    ``request_sent`` tells whether the request may have reached the server: ``False`` only
    when the connection was never established, which makes even a non-idempotent write safe
    to repeat.
    """

    def __init__(
        self,
        message: str,
        *,
        method: str | None = None,
        url: str | None = None,
        request_sent: bool = True,
    ) -> None:
        super().__init__(message)
        self.method = method
        self.url = url
        self.request_sent = request_sent


class APITimeoutError(APIConnectionError):
    """A timeout fired before the response was complete."""


class APIStatusError(Iris360Error):
    """The server answered with a status that is not a success.

    Attributes:
        status: the HTTP status code.
        method: the HTTP method.
        url: the request URL (never contains credentials).
        body: the parsed body: a ``dict``/``list`` for JSON, a ``str`` for a JSON string
            literal or for plain text, ``None`` for an empty body.
        text: the raw response text (known secrets masked, at most :data:`MAX_ERROR_TEXT`
            characters).
        headers: the response headers (a plain ``dict``).
        status_code: the same as ``status``.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int,
        method: str,
        url: str,
        body: Any = None,
        text: str = "",
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.method = method
        self.url = url
        self.body = body
        self.text = text
        self.headers = dict(headers or {})

    @property
    def status_code(self) -> int:
        """The HTTP status code (the same as :attr:`status`)."""
        return self.status

    @property
    def server_message(self) -> str | None:
        """The most human-readable part of the error body, condensed (:func:`condense`), if
        any."""
        message = extract_server_message(self.body)
        if message is None:
            return None
        return condense(message) or None


class RedirectError(APIStatusError):
    """A 3xx answer. Redirects are never followed: nothing is sent to the target.

    Attributes:
        location: the ``Location`` the server named, without credentials or query string
            (``None`` when absent).
    """


    def __init__(self, message: str, *, location: str | None = None, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.location = location


class BadRequestError(APIStatusError):
    """400 Bad Request."""



class AuthenticationError(APIStatusError):
    """401 Unauthorized: missing, invalid or expired credentials."""



class PermissionDeniedError(APIStatusError):
    """403 Forbidden."""



class NotFoundError(APIStatusError):
    """404 Not Found."""



class UnprocessableEntityError(APIStatusError):
    """422 Unprocessable Entity: the server's validation refused the request."""



class RateLimitError(APIStatusError):
    """429 Too Many Requests. ``retry_after`` is the server's wait in seconds, if given."""


    def __init__(self, message: str, *, retry_after: float | None = None, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.retry_after = retry_after


class InternalServerError(APIStatusError):
    """5xx: the server failed."""



class ResponseDecodeError(Iris360Error):
    """A success response whose body does not match the expected schema.

    Attributes:
        method, url, status: where it came from.
        path: the offending location inside the body, as msgspec reports it (``$[3].rows``).
        text: the start of the raw body.
    """

    def __init__(
        self,
        message: str,
        *,
        method: str | None = None,
        url: str | None = None,
        status: int | None = None,
        path: str | None = None,
        text: str = "",
    ) -> None:
        super().__init__(message)
        self.method = method
        self.url = url
        self.status = status
        self.path = path
        self.text = text


class ResponseTooLargeError(ResponseDecodeError):
    """A response body exceeded the client's ``max_response_bytes``; it was not read whole.

    Attributes:
        limit: the limit in bytes.
    """

    def __init__(self, message: str, *, limit: int = 0, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.limit = limit


_STATUS_CLASSES: dict[int, type[APIStatusError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    422: UnprocessableEntityError,
    429: RateLimitError,
}


def status_error_class(status: int) -> type[APIStatusError]:
    """The exception class for an HTTP error status."""
    if status >= 500:
        return InternalServerError
    if 300 <= status < 400:
        return RedirectError
    return _STATUS_CLASSES.get(status, APIStatusError)


def extract_server_message(body: Any) -> str | None:
    """Pick the message out of the server's many error shapes (API.md §2.5)."""
    if body is None:
        return None
    if isinstance(body, str):
        return body.strip() or None
    if isinstance(body, dict):
        for key in ("message", "error", "errors", "email"):
            value = body.get(key)
            if isinstance(value, str) and value:
                return value
        detail = body.get("detail")
        if isinstance(detail, str):
            return detail
        if isinstance(detail, list) and detail:
            parts = []
            for item in detail[:3]:
                if isinstance(item, dict):
                    loc = ".".join(str(x) for x in item.get("loc", []) or [])
                    msg = item.get("msg", "")
                    parts.append(f"{loc}: {msg}" if loc else str(msg))
                else:
                    parts.append(str(item))
            return "; ".join(parts)
    return None


def shorten(text: str, limit: int = _MAX_TEXT_IN_MESSAGE) -> str:
    """``text`` cut to ``limit`` characters for use inside an exception message."""
    text = text.strip()
    return text if len(text) <= limit else text[: limit - 1] + "…"


CONDENSED_LIMIT = 200
"""Characters of server text kept in messages, outcome details and journals."""

_TITLE = re.compile(r"<title[^>]*>(.*?)</title\s*>", re.IGNORECASE | re.DOTALL)
_HEADING = re.compile(r"<h[1-3][^>]*>(.*?)</h[1-3]\s*>", re.IGNORECASE | re.DOTALL)
_TAG = re.compile(r"<[^>]+>")
_HTML_START = re.compile(r"\s*(<!doctype\s+html|<html|<head|<body|<center|<h[1-6]|<title)", re.I)
_SPACE = re.compile(r"\s+")
_MASK = "***"


def mask_secrets(text: str, secrets: Iterable[str | None]) -> str:
    """``text`` with every occurrence of a known secret (password, tokens) replaced by
    ``***``. Secrets shorter than 4 characters are masked too; ``None`` entries are ignored."""
    for secret in sorted((s for s in secrets if s), key=len, reverse=True):
        if secret in text:
            text = text.replace(secret, _MASK)
    return text


def mask_value(value: Any, secrets: Iterable[str | None]) -> Any:
    """``value`` (a parsed JSON body) with known secrets masked in every string inside it,
    keys included; other values unchanged. Returns ``value`` itself when nothing is masked."""
    found = tuple(s for s in secrets if s)
    if not found:
        return value
    return _mask_walk(value, found)


def _mask_walk(value: Any, secrets: tuple[str, ...]) -> Any:
    if isinstance(value, str):
        return mask_secrets(value, secrets)
    if isinstance(value, list):
        return [_mask_walk(item, secrets) for item in value]
    if isinstance(value, dict):
        return {
            _mask_walk(key, secrets): _mask_walk(item, secrets) for key, item in value.items()
        }
    return value


def condense(
    text: str, limit: int = CONDENSED_LIMIT, *, secrets: Iterable[str | None] = ()
) -> str:
    """Server text made fit for one line of a message, a detail or a journal.

    An HTML page (a gateway's error page) becomes its ``<title>`` or first heading, tags are
    dropped, whitespace (CR/LF included) is collapsed to single spaces, known ``secrets`` are
    masked, and the result is cut to ``limit`` characters (ending with ``…`` when cut).
    """
    if _HTML_START.match(text):
        found = _TITLE.search(text) or _HEADING.search(text)
        text = found.group(1) if found else _TAG.sub(" ", text)
        text = html.unescape(_TAG.sub(" ", text))
    text = _SPACE.sub(" ", text).strip()
    text = mask_secrets(text, secrets)
    return text if len(text) <= limit else text[: limit - 1] + "…"
