"""``client.connectors.out``: outbound connectors (list, one connector, linked models)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, TypeAlias
from urllib.parse import quote

import msgspec

from .._config import NOT_GIVEN, NotGiven, Timeout
from .._pagination import AsyncPaginator, FetchPage
from .._retry import RetryPolicy
from .._validation import validate_page_size
from ..models.common import Page
from ..models.connectors import (
    ConnectorModelsUpdate,
    ConnectorPaginationRequest,
    OutConnector,
    SimpleOutConnector,
)
from ._base import APIResource, decode_response

if TYPE_CHECKING:
    from .._client import Iris360Client

__all__ = ["ConnectorsResource", "JSONValue", "OutConnectorsResource"]

PAGINATE_PATH = "/connectors/out/paginate"
CONNECTOR_PATH = "/connectors/out/{id}"

JSONValue: TypeAlias = dict[str, Any] | list[Any] | str | int | float | bool | None
"""A decoded JSON document."""

_OUT_CONNECTOR = msgspec.json.Decoder(OutConnector)
_ANY = msgspec.json.Decoder()


class _ConnectorPage(msgspec.Struct, frozen=True):
    # ``count`` is documented for the other lists only; tolerate its absence here.
    rows: list[SimpleOutConnector]
    count: int | None = None


_CONNECTOR_PAGE = msgspec.json.Decoder(_ConnectorPage)


def _connector_id(value: object) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise TypeError(f"connector id must be an int or a string, got {type(value).__name__}")
    text = str(value)
    if not text.strip():
        raise ValueError("connector id must not be empty")
    return quote(text, safe="")


def _id_list(name: str, values: Sequence[int] | None) -> list[int] | msgspec.UnsetType:
    if values is None:
        return msgspec.UNSET
    if isinstance(values, (str, bytes)):
        raise TypeError(f"{name} must be a list of ids")
    out = list(values)
    for item in out:
        if isinstance(item, bool) or not isinstance(item, int):
            raise TypeError(f"{name} must contain int ids, got {type(item).__name__}")
    return out


class OutConnectorsResource(APIResource):
    """Outbound connectors: ``POST /connectors/out/paginate``, ``GET /connectors/out/{id}``
    and the models update (``PUT``, path ``config.paths.connector_models``)."""

    def page_fetcher(
        self,
        *,
        order_by: str = "id",
        descending: bool = False,
        search: str | None = None,
        timeout: Timeout | float | NotGiven | None = NOT_GIVEN,
        max_retries: int | None = None,
        retry_policy: RetryPolicy | None = None,
    ) -> FetchPage[SimpleOutConnector]:
        """The ``fetch(page, page_size) -> Page[SimpleOutConnector]`` callable
        :meth:`paginate` uses. Arguments (``timeout``, ``max_retries`` and ``retry_policy``
        as in :meth:`paginate`) are checked here, before any request."""
        options = self._options(timeout, max_retries, retry_policy)
        if not isinstance(order_by, str) or not order_by:
            raise ValueError("order_by must be a non-empty string")
        if not isinstance(descending, bool):
            raise TypeError("descending must be a bool")
        if search is not None and not isinstance(search, str):
            raise TypeError(f"search must be a string, got {type(search).__name__}")
        transport = self._transport

        async def fetch(page: int, page_size: int) -> Page[SimpleOutConnector]:
            body = ConnectorPaginationRequest(
                paginationSize=page_size,
                page=page,
                orderBy=order_by,
                orderDirection=descending,
                search=msgspec.UNSET if search is None else search,
            )
            response = await transport.request(
                "POST", PAGINATE_PATH, json=body, retry="read", **options
            )
            raw = decode_response(response, _CONNECTOR_PAGE.decode, "Page[SimpleOutConnector]")
            count = raw.count
            if count is None:
                # No total from the server: claim one more item while pages come back full,
                # so iteration goes on until a short page.
                seen = (page - 1) * page_size + len(raw.rows)
                count = seen + 1 if len(raw.rows) >= page_size else seen
            return Page(rows=raw.rows, count=count)

        return fetch

    def paginate(
        self,
        *,
        page_size: int = 100,
        order_by: str = "id",
        descending: bool = False,
        search: str | None = None,
        start_page: int = 1,
        max_items: int | None = None,
        prefetch: int = 4,
        timeout: Timeout | float | NotGiven | None = NOT_GIVEN,
        max_retries: int | None = None,
        retry_policy: RetryPolicy | None = None,
    ) -> AsyncPaginator[SimpleOutConnector]:
        """Every outbound connector the user may read.

        Args:
            page_size: connectors per request (1-10000).
            order_by: sort column, sent as given (documented: ``id``; the docs example uses
                ``out_connectors.name``).
            descending: reverse order.
            search: case-insensitive match on name and type.
            start_page: 1-based page to start at.
            max_items: stop after this many connectors.
            prefetch: page requests kept in flight.
            timeout: this call's timeouts (a :class:`~iris360_async.Timeout` or seconds per
                attempt; ``None``: none); default: the client's.
            max_retries: this call's repeats after the first attempt; default: the client's.
            retry_policy: this call's :class:`~iris360_async.RetryPolicy`.
        """
        size = validate_page_size(page_size)
        fetch = self.page_fetcher(
            order_by=order_by,
            descending=descending,
            search=search,
            timeout=timeout,
            max_retries=max_retries,
            retry_policy=retry_policy,
        )
        return AsyncPaginator(
            fetch, page_size=size, start_page=start_page, max_items=max_items, prefetch=prefetch
        )

    async def get(
        self,
        id: int | str,
        *,
        timeout: Timeout | float | NotGiven | None = NOT_GIVEN,
        max_retries: int | None = None,
        retry_policy: RetryPolicy | None = None,
    ) -> OutConnector:
        """One connector with its type-specific configuration.

        Args:
            id: the connector's id.
            timeout: this call's timeouts (a :class:`~iris360_async.Timeout` or seconds per
                attempt; ``None``: none); default: the client's.
            max_retries: this call's repeats after the first attempt; default: the client's.
            retry_policy: this call's :class:`~iris360_async.RetryPolicy`.


        Example:
            >>> conn = await iris.connectors.out.get(7)
        """
        path = CONNECTOR_PATH.format(id=_connector_id(id))
        options = self._options(timeout, max_retries, retry_policy)
        response = await self._transport.request(
            "GET", path, retry="read", route=CONNECTOR_PATH, **options
        )
        return decode_response(response, _OUT_CONNECTOR.decode, "OutConnector")

    async def update_models(
        self,
        id: int | str,
        *,
        entities: Sequence[int] | None = None,
        devices: Sequence[int] | None = None,
        mapping_schemas: Sequence[int] | None = None,
        timeout: Timeout | float | NotGiven | None = NOT_GIVEN,
        max_retries: int | None = None,
        retry_policy: RetryPolicy | None = None,
    ) -> OutConnector | JSONValue:
        """Link a connector with entities, devices and mapping schemas (by numeric id).

        Only the lists given are sent (an empty list is sent as ``[]``). Whether they replace
        or extend the current links is not documented. The path is
        ``config.paths.connector_models`` (default ``/connectors/out/{id}/models``). Not
        repeated automatically unless the server provably did not act.

        Args:
            id: the connector's id.
            entities: entity ids.
            devices: device ids.
            mapping_schemas: mapping schema ids.
            timeout: this call's timeouts (a :class:`~iris360_async.Timeout` or seconds per
                attempt; ``None``: none); default: the client's.
            max_retries: this call's repeats after the first attempt; default: the client's.
            retry_policy: this call's :class:`~iris360_async.RetryPolicy`.

        Returns:
            The updated :class:`~iris360_async.models.OutConnector` when the server answers
            with one, else the decoded answer as is (``None`` for an empty body).

        Raises:
            ValueError: none of the three lists given.
        """
        if entities is None and devices is None and mapping_schemas is None:
            raise ValueError("give at least one of entities=, devices= or mapping_schemas=")
        body = ConnectorModelsUpdate(
            entities=_id_list("entities", entities),
            devices=_id_list("devices", devices),
            mapping_schemas=_id_list("mapping_schemas", mapping_schemas),
        )
        template = self._config.paths.connector_models
        options = self._options(timeout, max_retries, retry_policy)
        response = await self._transport.request(
            "PUT", template.format(id=_connector_id(id)), json=body, retry="write",
            route=template, **options,
        )
        content = response.content
        if not content.strip():
            return None
        try:
            return _OUT_CONNECTOR.decode(content)
        except msgspec.ValidationError:
            pass
        except msgspec.DecodeError:
            return response.content.decode("utf-8", "replace")
        data: JSONValue = decode_response(response, _ANY.decode, "JSON")
        return data


class ConnectorsResource(APIResource):
    """Connectors. ``out``: outbound connectors (see :class:`OutConnectorsResource`)."""

    def __init__(self, client: Iris360Client) -> None:
        super().__init__(client)
        self.out = OutConnectorsResource(client)
