"""What every resource class shares: the client, its transport and its configuration."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

import msgspec

from .._transport import decode_error

if TYPE_CHECKING:
    from .._client import Iris360Client
    from .._transport import RawResponse

__all__ = ["APIResource", "decode_response"]

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
