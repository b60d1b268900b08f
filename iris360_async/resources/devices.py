"""``client.devices``: device list, bulk commands and the file import."""

from __future__ import annotations

import os
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Collection,
    Iterable,
    Mapping,
    Sequence,
)
from datetime import datetime
from pathlib import Path
from typing import IO, Any, TypeAlias

import aiohttp
import anyio
import msgspec

from .. import _otel
from .._bulk import CancelCallback, CommandDispatcher, JobOptions, ProgressCallback
from .._bulk.journal import JournalTarget, read_previous
from .._bulk.options import DEFAULT_MAX_CONCURRENCY, Concurrency
from .._bulk.pacer import AnsweredItems
from .._bulk.reconcile import (
    RESEND_ROUNDS,
    Reconciler,
    journal_values,
    reconcile_journal,
)
from .._config import NOT_GIVEN, NotGiven, Timeout
from .._lifecycle import CommandStateReader, EntityLocator, TrackUpdate, entity_for
from .._lifecycle import track_commands as _track
from .._pagination import AsyncPaginator, FetchPage
from .._retry import Clock, RetryPolicy
from .._validation import (
    validate_commands,
    validate_page_size,
    validate_serials,
)
from ..models.bulk import CommandOutcome, CommandReport, CommandStatus
from ..models.common import Page
from ..models.devices import (
    BulkCommandItemResult,
    Device,
    DevicePaginationRequest,
    ImportResult,
    MalformedBulkItem,
)
from ._base import APIResource, decode_response

__all__ = ["DEVICE_ORDER_COLUMNS", "BulkSender", "DevicesResource", "FileInput"]

PAGINATE_PATH = "/devices/paginate"
SEND_COMMANDS_BULK_PATH = "/devices/sendCommandsBulk"

DEVICE_ORDER_COLUMNS = ("id", "name", "serial", "created_at", "updated_at", "case_id")
"""Columns devices can be ordered by (``order_by="name"`` or ``"devices.name"``). The server
uses the value as a raw column and answers an unknown one with a 500, so others are refused."""

_ORDER_BY = {name: f"devices.{name}" for name in DEVICE_ORDER_COLUMNS}
_ORDER_BY.update({f"devices.{name}": f"devices.{name}" for name in DEVICE_ORDER_COLUMNS})

BulkSender = Callable[[list[str]], Awaitable[list[BulkCommandItemResult]]]
"""``send(serials)``: one ``sendCommandsBulk`` call with a fixed command set."""

FileInput: TypeAlias = str | os.PathLike[str] | bytes | IO[bytes]
"""A path, the file's bytes or an open binary file."""

_DEVICE_PAGE = msgspec.json.Decoder(Page[Device])
_BULK_RESULTS = msgspec.json.Decoder(list[BulkCommandItemResult])
_ENCODER = msgspec.json.Encoder()
_ANY = msgspec.json.Decoder()


def _device_order_column(order_by: object) -> str:
    if not isinstance(order_by, str):
        raise TypeError(f"order_by must be a string, got {type(order_by).__name__}")
    column = _ORDER_BY.get(order_by)
    if column is None:
        raise ValueError(
            f"order_by must be one of {', '.join(DEVICE_ORDER_COLUMNS)} "
            f"(optionally prefixed with 'devices.'), got {order_by!r}"
        )
    return column


def _optional_str(name: str, value: object) -> str | msgspec.UnsetType:
    if value is None:
        return msgspec.UNSET
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a string, got {type(value).__name__}")
    return value


def _decode_bulk_results(content: bytes) -> list[BulkCommandItemResult]:
    """The 207 array. Elements that are not ``{headers, original, exception}`` envelopes
    (no ``original`` key, or not an object) are kept whole as the ``original`` of a
    :class:`MalformedBulkItem`, which the bulk engine ends ``unknown``."""
    try:
        return _BULK_RESULTS.decode(content)  # ``original`` is a required field
    except msgspec.ValidationError:
        pass
    raw = _ANY.decode(content)
    if not isinstance(raw, list):
        raise msgspec.ValidationError("Expected `array`, got `" + type(raw).__name__ + "`")
    out: list[BulkCommandItemResult] = []
    for element in raw:
        if isinstance(element, dict) and "original" in element:
            headers = element.get("headers")
            out.append(
                BulkCommandItemResult(
                    headers=headers if isinstance(headers, (dict, list)) else None,
                    original=element["original"],
                    exception=element.get("exception"),
                )
            )
        else:
            out.append(MalformedBulkItem(original=element))
    return out


def _bulk_prefix_and_tail(commands: Mapping[str, Any]) -> tuple[bytes, bytes]:
    encoded = _ENCODER.encode(commands)  # b'{"w_ota":true}'
    return b'{"device_serials":', b"," + encoded[1:]


class DevicesResource(APIResource):
    """Devices: ``POST /devices/paginate``, ``POST /devices/sendCommandsBulk`` and the file
    import."""

    # -- list ---------------------------------------------------------------------------------

    def page_fetcher(
        self,
        *,
        order_by: str = "id",
        descending: bool = False,
        search: str | None = None,
        realtime_properties: Sequence[str] | None = None,
        timeout: Timeout | float | NotGiven | None = NOT_GIVEN,
        max_retries: int | None = None,
        retry_policy: RetryPolicy | None = None,
    ) -> FetchPage[Device]:
        """The ``fetch(page, page_size) -> Page[Device]`` callable :meth:`paginate` uses.

        Arguments (``timeout``, ``max_retries`` and ``retry_policy`` as in :meth:`paginate`) are
        checked here, before any request.
        """
        options = self._options(timeout, max_retries, retry_policy)
        column = _device_order_column(order_by)
        if not isinstance(descending, bool):
            raise TypeError("descending must be a bool")
        search_value = _optional_str("search", search)
        realtime: list[str] | msgspec.UnsetType = msgspec.UNSET
        if realtime_properties is not None:
            if isinstance(realtime_properties, str):
                raise TypeError("realtime_properties must be a list of names, not a string")
            realtime = list(realtime_properties)
            for name in realtime:
                if not isinstance(name, str) or not name:
                    raise ValueError("realtime_properties must contain non-empty strings")
        transport = self._transport

        async def fetch(page: int, page_size: int) -> Page[Device]:
            body = DevicePaginationRequest(
                paginationSize=page_size,
                page=page,
                orderBy=column,
                orderDirection=descending,
                search=search_value,
                realtimeProperties=realtime,
            )
            response = await transport.request(
                "POST", PAGINATE_PATH, json=body, retry="read", **options
            )
            return decode_response(response, _DEVICE_PAGE.decode, "Page[Device]")

        return fetch

    def paginate(
        self,
        *,
        page_size: int = 100,
        order_by: str = "id",
        descending: bool = False,
        search: str | None = None,
        realtime_properties: Sequence[str] | None = None,
        start_page: int = 1,
        max_items: int | None = None,
        prefetch: int = 4,
        timeout: Timeout | float | NotGiven | None = NOT_GIVEN,
        max_retries: int | None = None,
        retry_policy: RetryPolicy | None = None,
    ) -> AsyncPaginator[Device]:
        """Every device the user may list, as :class:`~iris360_async.models.Device` structs.

        Args:
            page_size: devices per request (1-10000).
            order_by: ``id``, ``name``, ``serial``, ``created_at``, ``updated_at`` or
                ``case_id`` (or the same prefixed with ``devices.``). Order by a unique column
                (``id``, ``serial``) so pages do not overlap.
            descending: reverse order.
            search: case-insensitive match on name, serial, case id, type name and attributes.
            realtime_properties: attribute names to embed (``Device.entity_properties``).
            start_page: 1-based page to start at (resume with ``paginator.next_page``).
            max_items: stop after this many devices.
            prefetch: page requests kept in flight.
            timeout: this call's timeouts (a :class:`~iris360_async.Timeout` or seconds per
                attempt; ``None``: none); default: the client's.
            max_retries: this call's repeats after the first attempt; default: the client's.
            retry_policy: this call's :class:`~iris360_async.RetryPolicy`.

        Example:
            >>> async for device in iris.devices.paginate(page_size=500):
            ...     print(device.serial)
        """
        size = validate_page_size(page_size)
        fetch = self.page_fetcher(
            order_by=order_by,
            descending=descending,
            search=search,
            realtime_properties=realtime_properties,
            timeout=timeout,
            max_retries=max_retries,
            retry_policy=retry_policy,
        )
        return AsyncPaginator(
            fetch, page_size=size, start_page=start_page, max_items=max_items, prefetch=prefetch
        )

    # -- commands -----------------------------------------------------------------------------

    async def send_commands_bulk(
        self,
        serials: Sequence[str],
        commands: Mapping[str, Any],
        *,
        timeout: Timeout | float | NotGiven | None = NOT_GIVEN,
        max_retries: int | None = None,
        retry_policy: RetryPolicy | None = None,
    ) -> list[BulkCommandItemResult]:
        """One raw ``sendCommandsBulk`` call: ``commands`` to every serial.

        The server answers one item per serial, in order; see
        :class:`~iris360_async.models.BulkCommandItemResult` for reading them. The call is not
        idempotent and is repeated automatically only when the server provably did not act.
        For large fleets use ``send_commands`` (chunking, concurrency, per-device outcomes).

        Args:
            serials: device serials (a list, not a single string).
            commands: command name -> value, e.g. ``{"w_ota": True}``.
            timeout: this call's timeouts (a :class:`~iris360_async.Timeout` or seconds per
                attempt; ``None``: none); default: the client's.
            max_retries: this call's repeats after the first attempt; default: the client's.
            retry_policy: this call's :class:`~iris360_async.RetryPolicy`.

        Raises:
            TypeError, ValueError: bad arguments (nothing is sent).
        """
        items = validate_serials(serials)
        checked = validate_commands(commands)
        sender = self.bulk_sender(
            checked, timeout=timeout, max_retries=max_retries, retry_policy=retry_policy
        )
        return await sender(items)

    def bulk_sender(
        self,
        commands: Mapping[str, Any],
        *,
        timeout: Timeout | float | NotGiven | None = NOT_GIVEN,
        max_retries: int | None = None,
        retry_policy: RetryPolicy | None = None,
    ) -> BulkSender:
        """A ``send(serials)`` callable for one command set (what the bulk engine calls).

        ``commands`` is checked and encoded once; each call only encodes the serials. The
        serials themselves are not checked by the callable. ``timeout``, ``max_retries`` and
        ``retry_policy`` apply to each request, as in :meth:`send_commands_bulk`.

        Raises:
            TypeError, ValueError: bad ``commands`` or call options.
        """
        options = self._options(timeout, max_retries, retry_policy)
        prefix, tail = _bulk_prefix_and_tail(validate_commands(commands))
        request = self._transport.request
        encode = _ENCODER.encode

        async def send(serials: list[str]) -> list[BulkCommandItemResult]:
            response = await request(
                "POST", SEND_COMMANDS_BULK_PATH, content=prefix + encode(serials) + tail,
                retry="write", **options,
            )
            items = decode_response(
                response, _decode_bulk_results, "list[BulkCommandItemResult]"
            )
            return AnsweredItems(items, response.status, response.headers)  # headers: pacing

        return send

    def _target(self) -> JournalTarget:
        config = self._config
        return JournalTarget.of(config.base_url, config.tenant, config.scope)

    def _dispatcher(
        self,
        commands: Mapping[str, Any],
        options: JobOptions,
        call: Mapping[str, Any],
        reconcile: bool,
    ) -> CommandDispatcher | Reconciler:
        checked = validate_commands(commands)
        sender = self.bulk_sender(checked, **call)
        if reconcile:
            reader = CommandStateReader.for_client(self._client)
            return Reconciler(sender, checked, options, reader, journal_target=self._target())
        return CommandDispatcher(sender, checked, options, journal_target=self._target())

    def _job_trace(self, options: JobOptions) -> _otel.BulkTrace | None:
        instruments = _otel.INSTRUMENTS
        if instruments is None:
            return None
        attributes = {
            "iris360.bulk.chunk_size": options.chunk_size,
            "iris360.bulk.concurrency": str(options.concurrency),
        }
        return instruments.job_started(attributes, self._transport.tokens.refreshes)

    async def send_commands(
        self,
        serials: Iterable[str] | AsyncIterable[str],
        commands: Mapping[str, Any],
        *,
        chunk_size: int = 100,
        concurrency: Concurrency = "auto",
        max_concurrency: int = DEFAULT_MAX_CONCURRENCY,
        max_body_bytes: int | None = None,
        max_rate: float | None = None,
        retry_unknown: int = 0,
        retry_backoff: float = 1.0,
        deadline: float | None = None,
        deadline_grace: float | None = 0.0,
        max_failures: int | None = None,
        dedupe: bool = True,
        journal: str | os.PathLike[str] | None = None,
        resend: Collection[CommandStatus | str] | str | None = (),
        journal_force: bool = False,
        journal_fsync: bool = False,
        on_progress: ProgressCallback | None = None,
        progress_interval: float = 0.1,
        on_cancel: CancelCallback | None = None,
        total: int | None = None,
        reconcile: bool = False,
        timeout: Timeout | float | NotGiven | None = NOT_GIVEN,
        max_retries: int | None = None,
        retry_policy: RetryPolicy | None = None,
    ) -> CommandReport:
        """Send ``commands`` to every serial: chunked, concurrent, one outcome per serial.

        ``serials`` may be any iterable or async iterable (a list, a generator, the lines of a
        file); at most about ``concurrency x chunk_size`` of them are held at once. Every
        serial ends ``sent``, ``rejected``, ``failed``, ``unknown`` or ``skipped``; see
        :class:`~iris360_async.models.CommandReport` and docs/bulk.md. The options are those
        of :class:`iris360_async._bulk.JobOptions`: ``chunk_size`` serials per request,
        ``concurrency`` requests in flight, ``journal`` (a JSON-lines file making the job
        resumable without sending any command twice), ``deadline`` and ``deadline_grace`` in
        seconds, ``max_failures``, ``on_progress`` …, and ``total`` (how many serials a file or
        generator holds, so progress has a ``total`` and an ``eta``; a list or tuple is
        counted by itself). ``timeout``, ``max_retries`` and
        ``retry_policy`` apply to each request of the job (see :meth:`send_commands_bulk`).

        ``reconcile=True``: once the job read its whole input, every serial that ended
        ``unknown`` is looked up in the command state its send left on the device's entity
        (at most two reads each): confirmed -> ``sent`` ("confirmed from command state"); not
        applied -> sent again (at most twice); mixed or unreadable -> stays ``unknown`` with
        the reason. ``report.reconciliation`` says what it did (docs/bulk.md, "What happened
        to every device").

        Raises:
            TypeError, ValueError: bad ``commands`` or options (nothing is sent).

        Example:
            >>> report = await iris.devices.send_commands(serials, {"w_ota": True},
            ...                                           chunk_size=100, concurrency=16)
            >>> report.counts["sent"]
        """
        options = JobOptions.from_arguments(locals())
        call = {"timeout": timeout, "max_retries": max_retries, "retry_policy": retry_policy}
        dispatcher = self._dispatcher(commands, options, call, reconcile)
        job = self._job_trace(options)
        if job is None:
            return await dispatcher.run(serials)
        token = job.attach()
        try:
            report = await dispatcher.run(serials)
        except BaseException as exc:
            job.finish(dispatcher.report, self._transport.tokens.refreshes, exc)
            raise
        finally:
            job.detach(token)
        job.finish(report, self._transport.tokens.refreshes, None)
        return report

    def stream_commands(
        self,
        serials: Iterable[str] | AsyncIterable[str],
        commands: Mapping[str, Any],
        *,
        chunk_size: int = 100,
        concurrency: Concurrency = "auto",
        max_concurrency: int = DEFAULT_MAX_CONCURRENCY,
        max_body_bytes: int | None = None,
        max_rate: float | None = None,
        retry_unknown: int = 0,
        retry_backoff: float = 1.0,
        deadline: float | None = None,
        deadline_grace: float | None = 0.0,
        max_failures: int | None = None,
        dedupe: bool = True,
        journal: str | os.PathLike[str] | None = None,
        resend: Collection[CommandStatus | str] | str | None = (),
        journal_force: bool = False,
        journal_fsync: bool = False,
        on_progress: ProgressCallback | None = None,
        progress_interval: float = 0.1,
        on_cancel: CancelCallback | None = None,
        total: int | None = None,
        reconcile: bool = False,
        timeout: Timeout | float | NotGiven | None = NOT_GIVEN,
        max_retries: int | None = None,
        retry_policy: RetryPolicy | None = None,
    ) -> AsyncGenerator[CommandOutcome, None]:
        """Like :meth:`send_commands`, yielding each serial's outcome as its chunk settles.

        ``commands`` and the options (``timeout``, ``max_retries`` and ``retry_policy`` for
        each request included) are checked at once, before anything is sent. With
        ``reconcile=True`` the ``unknown`` outcomes are held back until reconciled, so each
        serial is still yielded once, with its final outcome (the reconciled ones last).

        Example:
            >>> async for outcome in iris.devices.stream_commands(serials, {"w_ota": True}):
            ...     print(outcome.serial, outcome.status)
        """
        options = JobOptions.from_arguments(locals())
        call = {"timeout": timeout, "max_retries": max_retries, "retry_policy": retry_policy}
        dispatcher = self._dispatcher(commands, options, call, reconcile)
        job = self._job_trace(options)
        if job is None:
            return dispatcher.stream(serials)
        tokens = self._transport.tokens
        return _otel.traced_stream(
            dispatcher.stream(serials), job, lambda: dispatcher.report, lambda: tokens.refreshes
        )

    # -- what happened to every device --------------------------------------------------------

    async def reconcile(
        self,
        journal: str | os.PathLike[str],
        commands: Mapping[str, Any] | None = None,
        *,
        resend: bool = True,
        chunk_size: int = 100,
        concurrency: Concurrency = 16,
        journal_force: bool = False,
        entity: EntityLocator = entity_for,
    ) -> CommandReport:
        """Resolve the ``unknown`` serials of an earlier or killed job from its journal.

        Serials the journal leaves ``unknown`` or in flight are looked up in their command
        state and settled as ``send_commands(reconcile=True)`` does; each verdict is
        journaled, under the journal's lock.

        Args:
            journal: the job's journal.
            commands: the commands that job sent; default: those its journal records.
            resend: send the not-applied ones again (else they end ``failed``, and a resume
                of the job sends them).
            chunk_size: serials per re-send request.
            concurrency: re-send requests in flight, and reads in flight; ``"auto"``: each
                paced by an adaptive limit.
            journal_force: as for ``send_commands``.
            entity: ``Device -> EntityRef`` (the inferred main-entity mapping by default).

        Returns:
            A report with one outcome per serial looked up, and ``report.reconciliation``.

        Example:
            >>> report = await iris.devices.reconcile("job.jsonl")
            >>> report.counts["unknown"]
        """
        values = journal_values(journal, commands)
        options = JobOptions(
            chunk_size=chunk_size, concurrency=concurrency, journal=journal,
            journal_force=journal_force,
        )
        reader = CommandStateReader.for_client(self._client, entity=entity)
        reconciler = Reconciler(
            self.bulk_sender(values), values, options, reader, journal_target=self._target(),
            rounds=RESEND_ROUNDS if resend else 0,
        )
        return await reconcile_journal(reconciler)

    def track_commands(
        self,
        serials: Iterable[str] | None = None,
        commands: Mapping[str, Any] | None = None,
        *,
        journal: str | os.PathLike[str] | None = None,
        until: float | datetime | None = None,
        interval: float = 60.0,
        concurrency: int = 16,
        entity: EntityLocator = entity_for,
        clock: Clock | None = None,
    ) -> AsyncIterator[TrackUpdate]:
        """Follow devices until they have applied ``commands``: an async iterator of
        :class:`~iris360_async.TrackUpdate` (the devices that changed, and a running summary
        of ``applied`` / ``pending`` / ``superseded`` / ``unreadable``).

        Give ``serials``, or ``journal`` (its ``sent`` serials, and by default its commands).
        Each sweep reads the devices not done yet (``concurrency`` reads at once; a device's
        first read costs two requests, later ones one); sweeps start ``interval`` seconds
        apart; tracking ends when every device is done or at ``until`` (seconds from now or
        an aware datetime).

        Args:
            clock: where time comes from (default: the client's; an emulator's ``emu.clock``
                follows emulated time).

        Raises:
            TypeError, ValueError: bad arguments, or both or neither of serials and journal.

        Example:
            >>> async for update in iris.devices.track_commands(journal="job.jsonl",
            ...                                                  until=1800):
            ...     print(update.summary.applied, "applied")
        """
        if (serials is None) == (journal is None):
            raise TypeError("give serials or journal (one of them)")
        if journal is not None:
            values = journal_values(journal, commands)
            states = read_previous(journal, values, target=self._target())
            serials = [s for s, state in states.items() if state == "sent"]
        elif commands is None:
            raise TypeError("commands are needed when tracking serials")
        else:
            values = validate_commands(commands)
        assert serials is not None
        reader = CommandStateReader.for_client(self._client, entity=entity)
        return _track(
            reader, serials, values, until=until, interval=interval,
            concurrency=concurrency,
            clock=clock if clock is not None else self._transport.clock,
        )

    # -- import -------------------------------------------------------------------------------

    async def import_file(
        self,
        file: FileInput,
        *,
        filename: str | None = None,
        content_type: str = "text/csv",
        timeout: Timeout | float | NotGiven | None = NOT_GIVEN,
        max_retries: int | None = None,
        retry_policy: RetryPolicy | None = None,
    ) -> ImportResult:
        """Upload a device file (multipart, part ``file``) to ``config.paths.import_file``.

        The endpoint's path, file format and answer are not documented; the path is
        configurable (``EndpointPaths.import_file``) and the answer is returned as
        :class:`~iris360_async.models.ImportResult`.

        Args:
            file: a path, the file's bytes or an open binary file (read completely, once).
            filename: name sent with the part (default: the path's name, else ``import.csv``).
            content_type: the part's content type.
            timeout: this call's timeouts (a :class:`~iris360_async.Timeout` or seconds per
                attempt; ``None``: none); default: the client's.
            max_retries: this call's repeats after the first attempt; default: the client's.
            retry_policy: this call's :class:`~iris360_async.RetryPolicy`.
        """
        options = self._options(timeout, max_retries, retry_policy)
        data, default_name = await _read_file(file)
        name = filename if filename is not None else default_name
        if not isinstance(name, str) or not name:
            raise ValueError("filename must be a non-empty string")
        if not isinstance(content_type, str) or not content_type:
            raise ValueError("content_type must be a non-empty string")

        def form() -> aiohttp.FormData:
            fd = aiohttp.FormData()
            fd.add_field("file", data, filename=name, content_type=content_type)
            return fd

        response = await self._transport.request(
            "POST", self._config.paths.import_file, form=form, retry="write", **options
        )
        return _import_result(response.status, response.content)


async def _read_file(file: FileInput) -> tuple[bytes, str]:
    if isinstance(file, (bytes, bytearray, memoryview)):
        return bytes(file), "import.csv"
    if isinstance(file, (str, os.PathLike)):
        path = Path(os.fspath(file))
        data = await anyio.Path(path).read_bytes()
        return data, path.name
    read = getattr(file, "read", None)
    if read is None:
        raise TypeError(
            f"file must be a path, bytes or a binary file object, got {type(file).__name__}"
        )
    data = await anyio.to_thread.run_sync(read)
    if isinstance(data, str):
        raise TypeError("file must be opened in binary mode ('rb')")
    raw_name = getattr(file, "name", None)
    name = os.path.basename(raw_name) if isinstance(raw_name, str) and raw_name else "import.csv"
    return bytes(data), name


def _import_result(status: int, content: bytes) -> ImportResult:
    text = content.decode("utf-8", "replace")
    try:
        data: Any = _ANY.decode(content) if content.strip() else None
    except msgspec.DecodeError:
        data = text
    message: str | None = None
    if isinstance(data, str):
        message = data
    elif isinstance(data, dict):
        value = data.get("message")
        if isinstance(value, str):
            message = value
    return ImportResult(status=status, message=message, data=data)
