"""How the command line turns exceptions into one line on stderr and an exit code."""

from __future__ import annotations

from collections.abc import Iterable

from ..errors import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    Iris360Error,
    PermissionDeniedError,
    RateLimitError,
    ResponseDecodeError,
)

__all__ = [
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_TERMINATED",
    "EXIT_USAGE",
    "CliError",
    "credentials_advice",
    "describe_error",
    "redact",
    "timeout_advice",
]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT
EXIT_TERMINATED = 143  # 128 + SIGTERM


class CliError(Exception):
    """An error the command line reports itself: one message, one exit code."""

    def __init__(self, message: str, exit_code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code


def _where(method: str | None, url: str | None) -> str:
    parts = [p for p in (method, url) if p]
    return " ".join(parts)


def describe_error(
    exc: BaseException,
    *,
    timeout: tuple[float, str] | None = None,
    server: str | None = None,
    token: bool = False,
) -> tuple[str, int]:
    """The message (without the ``iris360: error:`` prefix) and exit code for ``exc``.

    ``timeout`` is the attempt timeout in seconds and its origin (``--timeout 30``), named
    when a request timed out. ``server`` is the server URL and where it came from
    (``https://iris.example.com (IRIS360_BASE_URL)``), named when the server cannot be
    reached or has no login route; ``token`` says the credentials were an access token.
    """
    if isinstance(exc, CliError):
        return exc.message, exc.exit_code
    if isinstance(exc, AuthenticationError):
        detail = (exc.server_message or "credentials refused").rstrip(".")
        return f"authentication failed (HTTP 401): {detail}; {credentials_advice(token)}", (
            EXIT_USAGE
        )
    if isinstance(exc, PermissionDeniedError):
        detail = exc.server_message or "permission denied"
        return f"permission denied (HTTP 403) on {_where(exc.method, exc.url)}: {detail}", (
            EXIT_USAGE
        )
    if isinstance(exc, RateLimitError):
        wait = f"; retry after {exc.retry_after:g} s" if exc.retry_after is not None else ""
        return f"rate limited (HTTP 429) on {_where(exc.method, exc.url)}{wait}", EXIT_FAILED
    if isinstance(exc, APIStatusError):
        detail = exc.server_message or exc.message
        message = f"HTTP {exc.status} from {_where(exc.method, exc.url)}: {detail}"
        if exc.status == 404 and (exc.url or "").endswith("/login") and server:
            message = message.rstrip(".") + (
                f"; is the server URL right? {server} (the API root /api/public/v1 is "
                "added to it)"
            )
        return message, EXIT_FAILED
    if isinstance(exc, APITimeoutError):
        return _timeout_message(exc, timeout), EXIT_USAGE
    if isinstance(exc, APIConnectionError):
        return f"cannot connect to the server: {exc.message}{_server_advice(exc, server)}", (
            EXIT_USAGE
        )
    if isinstance(exc, ResponseDecodeError):
        at = f" at {exc.path}" if exc.path else ""
        return (
            f"unexpected response from {_where(exc.method, exc.url)}{at}: {exc.message}",
            EXIT_FAILED,
        )
    if isinstance(exc, Iris360Error):
        return exc.message, EXIT_FAILED
    if isinstance(exc, (ValueError, TypeError)):
        return str(exc), EXIT_USAGE
    if isinstance(exc, OSError):
        name = f" {exc.filename}" if exc.filename else ""
        return f"{exc.strerror or exc}{':' + name if name else ''}", EXIT_USAGE
    return f"unexpected {type(exc).__name__}: {exc} (run with --debug for details)", EXIT_FAILED


def credentials_advice(token: bool) -> str:
    """What to check after the server refused the credentials."""
    if token:
        return "the access token (--token or IRIS360_TOKEN) is wrong or expired: get a new one"
    return "check the username and the password (IRIS360_PASSWORD)"


def _server_advice(exc: APIConnectionError, server: str | None) -> str:
    if server is None:
        return ""
    if "WRONG_VERSION_NUMBER" in exc.message and server.startswith("https://"):
        return f"; the server does not speak https: is the server URL right? {server}"
    return f"; check the server URL {server} and that the server is running"


def _timeout_message(exc: APITimeoutError, timeout: tuple[float, str] | None) -> str:
    where = _where(exc.method, exc.url) or exc.message
    if not exc.request_sent:
        return (
            f"timed out connecting to the server ({where}); check --base-url and the network"
        )
    if timeout is None:
        return f"timed out: {where}; raise --timeout (seconds) if the server is slow"
    seconds, origin = timeout
    advice = timeout_advice(seconds)
    return f"timed out after {seconds:g} s ({origin}) waiting for {where}; {advice}"


def timeout_advice(seconds: float) -> str:
    """What to do about a request that timed out after ``seconds``."""
    return f"raise --timeout (e.g. --timeout {seconds * 2:g}) if the server is slow"


def redact(text: str, secrets: Iterable[str | None]) -> str:
    """``text`` with every secret (of 4 characters or more) replaced by ``***``."""
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, "***")
    return text
