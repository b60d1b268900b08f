"""What a response is and the errors made from it: :class:`RawResponse` (a complete 2xx
answer and its decoding), :func:`decode_error`, :func:`status_error` (a non-2xx answer as an
``errors.*`` exception, secrets masked), :func:`parse_error_body` and :func:`redirect_target`.

Pure: no I/O, no aiohttp, no retries or token handling; it must not import the transport or the
pool.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, TypeVar
from urllib.parse import urljoin, urlsplit

import msgspec

from ._retry import parse_retry_after as _parse_retry_after
from .errors import MAX_ERROR_TEXT as _MAX_ERROR_TEXT
from .errors import (
    APIStatusError,
    RateLimitError,
    RedirectError,
    ResponseDecodeError,
    condense,
    extract_server_message,
    mask_secrets,
    mask_value,
    status_error_class,
)

__all__ = [
    "RawResponse",
    "decode_error",
    "parse_error_body",
    "redirect_target",
    "status_error",
]

T = TypeVar("T")

_ANY_DECODER = msgspec.json.Decoder()
_DECODERS: dict[Any, msgspec.json.Decoder[Any]] = {}
_PATH_IN_MESSAGE = re.compile(r" - at `(\$[^`]*)`$")
_JSON_START = frozenset('{["-0123456789tfn')


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
