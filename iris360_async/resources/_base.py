"""What every resource class shares: the client, its transport and its configuration."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import msgspec

from .._config import NotGiven, Timeout
from .._responses import decode_error
from .._retry import RetryPolicy

if TYPE_CHECKING:
    from .._client import Iris360Client
    from .._responses import RawResponse

__all__ = ["APIResource", "call_options", "decode_response"]

T = TypeVar("T")


class APIResource:
    """Base of the resource namespaces (``client.devices`` …).

    Args:
        client: the owning client; requests go through ``client._transport``.
    """

    def __init__(self, client: Iris360Client) -> None:
        self._client = client
        self._transport = client._transport
        self._config = client._config

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._client!r})"

    def _options(
        self,
        timeout: Timeout | float | NotGiven | None,
        max_retries: int | None,
        retry_policy: RetryPolicy | None,
        default_timeout: Timeout | None = None,
    ) -> dict[str, Any]:
        """:func:`call_options` with this client's retry policy."""
        return call_options(
            timeout,
            max_retries,
            retry_policy,
            default_timeout=default_timeout,
            client_policy=self._transport.policy,
        )


def call_options(
    timeout: Timeout | float | NotGiven | None,
    max_retries: int | None,
    retry_policy: RetryPolicy | None,
    *,
    default_timeout: Timeout | None = None,
    client_policy: RetryPolicy | None = None,
) -> dict[str, Any]:
    """The ``timeout=``/``policy=`` keywords of ``Transport.request`` for one call's
    overrides, checked before anything is sent.

    Args:
        timeout: a :class:`Timeout`, a number of seconds (the per-attempt total), ``None``
            (no timeouts) or ``NOT_GIVEN`` (``default_timeout``, else the client's).
        max_retries: repeats after the first attempt (an integer >= 0), or ``None``.
        retry_policy: a :class:`RetryPolicy` for this call, or ``None``; ``max_retries``
            overrides its own.
        default_timeout: the timeout when none is given (``None``: the client's).
        client_policy: the client's policy, which ``max_retries`` alone modifies.

    Raises:
        TypeError, ValueError: a bad timeout, ``max_retries`` or ``retry_policy``.
    """
    options: dict[str, Any] = {}
    if isinstance(timeout, NotGiven):
        if default_timeout is not None:
            options["timeout"] = default_timeout
    else:
        options["timeout"] = Timeout.coerce(timeout)
    if retry_policy is not None and not isinstance(retry_policy, RetryPolicy):
        raise TypeError(f"retry_policy must be a RetryPolicy, not {type(retry_policy).__name__}")
    if max_retries is not None:
        if isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 0:
            raise ValueError(f"max_retries must be an integer >= 0, not {max_retries!r}")
        base = retry_policy or client_policy or RetryPolicy()
        retry_policy = base.replace(max_retries=max_retries)
    if retry_policy is not None:
        options["policy"] = retry_policy
    return options


def decode_response(response: RawResponse, decode: Callable[[bytes], T], name: str) -> T:
    """``decode(response.content)``, turning msgspec errors into :class:`ResponseDecodeError`.

    Args:
        response: the 2xx response.
        decode: the decoding function (a ``msgspec.json.Decoder.decode`` or a lenient helper).
        name: what the body should be, for the message (``"list[EntityAttribute]"``).
    """
    try:
        return decode(response.content)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise decode_error(response, name, exc) from None
