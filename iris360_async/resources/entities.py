"""``client.entities``: entity list and latest attribute values."""

from __future__ import annotations

from collections.abc import Sequence

import msgspec

from .._config import NOT_GIVEN, NotGiven, Timeout
from .._pagination import AsyncPaginator, FetchPage
from .._retry import RetryPolicy
from .._validation import (
    join_list_filter,
    query_bool,
    quote_urn,
    validate_page_size,
    validate_positive_int,
    validate_tenant_scope,
    validate_urn,
)
from ..models.common import Page
from ..models.entities import (
    Entity,
    EntityPaginationRequest,
    LatestAttributes,
    decode_attributes,
)
from ._base import APIResource, decode_response

__all__ = ["ATTRIBUTE_TYPES", "EntitiesResource"]

PAGINATE_PATH = "/entities/paginate"
LATEST_PATH = "/last-data/entities/{urn}"

ATTRIBUTE_TYPES = ("Property", "Relationship", "Command")
"""Values of ``attr_types`` (exact, case-sensitive)."""

_ENTITY_PAGE = msgspec.json.Decoder(Page[Entity])


def _names(name: str, values: Sequence[str] | str | None) -> str | None:
    return None if values is None else join_list_filter(values, name=name)


class EntitiesResource(APIResource):
    """Entities: ``POST /entities/paginate`` and ``GET /last-data/entities/{urn}``."""

    def page_fetcher(
        self,
        *,
        types: Sequence[str] | str | None = None,
        tenant: str | None = None,
        scope: str | None = None,
        search: str | None = None,
        timeout: Timeout | float | NotGiven | None = NOT_GIVEN,
        max_retries: int | None = None,
        retry_policy: RetryPolicy | None = None,
    ) -> FetchPage[Entity]:
        """The ``fetch(page, page_size) -> Page[Entity]`` callable :meth:`paginate` uses.

        ``tenant``/``scope`` default to the client's; when neither the call nor the client
        gives them they are not sent (the server then lists every entity the user may read).
        Arguments (``timeout``, ``max_retries`` and ``retry_policy`` as in :meth:`paginate`) are
        checked here, before any request.
        """
        options = self._options(timeout, max_retries, retry_policy)
        tenant = tenant if tenant is not None else self._config.tenant
        scope = scope if scope is not None else self._config.scope
        validate_tenant_scope(tenant, scope)
        types_value = _names("types", types)
        if search is not None and not isinstance(search, str):
            raise TypeError(f"search must be a string, got {type(search).__name__}")
        unset = msgspec.UNSET
        transport = self._transport

        async def fetch(page: int, page_size: int) -> Page[Entity]:
            body = EntityPaginationRequest(
                paginationSize=page_size,
                page=page,
                orderBy="entities.urn",
                orderDirection=False,
                search=unset if search is None else search,
                tenant=unset if tenant is None else tenant,
                scope=unset if scope is None else scope,
                types=unset if types_value is None else types_value,
            )
            response = await transport.request(
                "POST", PAGINATE_PATH, json=body, retry="read", **options
            )
            return decode_response(response, _ENTITY_PAGE.decode, "Page[Entity]")

        return fetch

    def paginate(
        self,
        *,
        types: Sequence[str] | str | None = None,
        tenant: str | None = None,
        scope: str | None = None,
        search: str | None = None,
        page_size: int = 100,
        start_page: int = 1,
        max_items: int | None = None,
        prefetch: int = 4,
        timeout: Timeout | float | NotGiven | None = NOT_GIVEN,
        max_retries: int | None = None,
        retry_policy: RetryPolicy | None = None,
    ) -> AsyncPaginator[Entity]:
        """Every entity the user may read, as :class:`~iris360_async.models.Entity` structs
        (ordered by entity id; the server ignores other orderings).

        Args:
            types: datamodel types, e.g. ``["AirQualityObserved"]`` (sent comma-joined).
            tenant: FIWARE service filter (default: the client's).
            scope: service path filter (default: the client's); needs a tenant.
            search: case-insensitive match on URN, datamodel or name.
            page_size: entities per request (1-10000).
            start_page: 1-based page to start at.
            max_items: stop after this many entities.
            prefetch: page requests kept in flight.
            timeout: this call's timeouts (a :class:`~iris360_async.Timeout` or seconds per
                attempt; ``None``: none); default: the client's.
            max_retries: this call's repeats after the first attempt; default: the client's.
            retry_policy: this call's :class:`~iris360_async.RetryPolicy`.

        Example:
            >>> async for entity in iris.entities.paginate(types=["AirQualityObserved"]):
            ...     print(entity.urn)
        """
        size = validate_page_size(page_size)
        fetch = self.page_fetcher(
            types=types,
            tenant=tenant,
            scope=scope,
            search=search,
            timeout=timeout,
            max_retries=max_retries,
            retry_policy=retry_policy,
        )
        return AsyncPaginator(
            fetch, page_size=size, start_page=start_page, max_items=max_items, prefetch=prefetch
        )

    async def latest(
        self,
        urn: str,
        *,
        tenant: str | None = None,
        scope: str | None = None,
        attr_types: Sequence[str] | str | None = None,
        names: Sequence[str] | str | None = None,
        properties: Sequence[str] | str | None = None,
        relationships: Sequence[str] | str | None = None,
        commands: Sequence[str] | str | None = None,
        reference_data_nesting: int | None = None,
        last_sent: bool | None = None,
        only_available_commands: bool | None = None,
        only_pending_commands: bool | None = None,
        timeout: Timeout | float | NotGiven | None = NOT_GIVEN,
        max_retries: int | None = None,
        retry_policy: RetryPolicy | None = None,
    ) -> LatestAttributes:
        """The latest value of every attribute of one entity (no history).

        Args:
            urn: the entity URN, e.g. ``urn:ngsi-ld:Device:Device001``.
            tenant: sent as a header (default: the client's; required).
            scope: sent as a header (default: the client's; required).
            attr_types: subset of ``Property``, ``Relationship``, ``Command``.
            names: attribute names (any kind).
            properties: names of properties only.
            relationships: names of relationships only.
            commands: names of commands only.
            reference_data_nesting: levels of related entities to embed (>= 0).
            last_sent: only the most recent relationship values.
            only_available_commands: only commands the entity accepts now.
            only_pending_commands: only commands waiting for confirmation.
            timeout: this call's timeouts (a :class:`~iris360_async.Timeout` or seconds per
                attempt; ``None``: none); default: the client's.
            max_retries: this call's repeats after the first attempt; default: the client's.
            retry_policy: this call's :class:`~iris360_async.RetryPolicy`.

        Returns:
            :class:`~iris360_async.models.EntityProperty`,
            :class:`~iris360_async.models.EntityRelationship`,
            :class:`~iris360_async.models.EntityCommand` (and
            :class:`~iris360_async.models.UnknownEntityAttribute` for other kinds), as sent.
            The same attribute may appear more than once. The list is a
            :class:`~iris360_async.models.LatestAttributes`: ``attrs.value("temperature")``
            reads one value, ``attrs.attribute("w_ota")`` one attribute (a ``KeyError`` naming
            the attributes there are when it is missing).

        Example:
            >>> attrs = await iris.entities.latest("urn:ngsi-ld:Device:D1")
            >>> attrs.value("temperature")
            21.4
            >>> commands = await iris.entities.latest("urn:ngsi-ld:Device:D1", attr_types="Command")
        """
        validate_urn(urn)
        options = self._options(timeout, max_retries, retry_policy)
        tenant_value, scope_value = self._client.require_tenant_scope(tenant, scope)
        params: dict[str, str] = {}
        if attr_types is not None:
            joined = join_list_filter(attr_types, name="attr_types")
            unknown = [t for t in joined.split(",") if t not in ATTRIBUTE_TYPES]
            if unknown:
                raise ValueError(
                    f"attr_types must be among {', '.join(ATTRIBUTE_TYPES)}, got {unknown}"
                )
            params["attrTypeFilter"] = joined
        for key, label, value in (
            ("attrNameFilter", "names", names),
            ("attrPropFilter", "properties", properties),
            ("attrRelFilter", "relationships", relationships),
            ("attrCmdFilter", "commands", commands),
        ):
            if value is not None:
                params[key] = join_list_filter(value, name=label)
        if reference_data_nesting is not None:
            params["referenceDataNesting"] = str(
                validate_positive_int(
                    "reference_data_nesting", reference_data_nesting, minimum=0
                )
            )
        for key, flag in (
            ("lastSent", last_sent),
            ("filterCmdAvailable", only_available_commands),
            ("filterCmdPending", only_pending_commands),
        ):
            if flag is not None:
                params[key] = query_bool(flag)
        response = await self._transport.request(
            "GET",
            LATEST_PATH.format(urn=quote_urn(urn)),
            params=params or None,
            headers={"tenant": tenant_value, "scope": scope_value},
            retry="read",
            route=LATEST_PATH,
            **options,
        )
        attributes = decode_response(response, decode_attributes, "list[EntityAttribute]")
        return LatestAttributes(attributes)
