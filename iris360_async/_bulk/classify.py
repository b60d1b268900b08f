"""What a chunk's answer, or its failure, means for each serial (pure).

The rules (which body is ``sent``, what makes a chunk ``unknown``, the ``not sent:`` details)
are the table of docs/bulk.md ("Outcomes"); this module is their one implementation.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import msgspec

from .. import errors
from ..models.bulk import CommandOutcome, CommandStatus, OutcomeBatch
from ..models.devices import MalformedBulkItem
from .journal import NOT_SENT_PREFIX

__all__ = [
    "AUTH_STOP_REASON",
    "BulkItem",
    "ErrorVerdict",
    "classify_chunk",
    "classify_exception",
    "classify_item",
    "not_sent",
]

SENT_MESSAGE = "Command sent!!"
REJECTED_PREFIX = "You cannot send any of"

_SENT = CommandStatus.SENT
_REJECTED = CommandStatus.REJECTED
_FAILED = CommandStatus.FAILED
_UNKNOWN = CommandStatus.UNKNOWN
_SKIPPED = CommandStatus.SKIPPED

_encode = msgspec.json.encode
_SENT_BODY = {"data": SENT_MESSAGE}


class BulkItem(Protocol):
    """One element of the 207 answer; only ``original`` carries information (API §4.11)."""

    @property
    def original(self) -> Any: ...


def _describe(value: Any) -> str:
    try:
        text = _encode(value).decode("utf-8", "replace")
    except (TypeError, msgspec.EncodeError):
        text = repr(value)
    return errors.condense(text)


def classify_item(original: Any) -> tuple[CommandStatus, str | None]:
    """The status and detail of one item of the 207 answer, from its ``original`` body.

    * ``{"data": "Command sent!!"}`` -> ``sent``
    * ``{"errors": "You cannot send any of: …"}`` -> ``rejected`` (detail: the message)
    * any other object (a broker error object), a string (an exception text) or ``null``
      -> ``failed``: the documented shapes of a failure for that device (API §4.11)
    * an object with ``data`` but no ``errors`` and another sentence, the bare string
      ``"Command sent!!"``, a number, a boolean, a list, a missing ``original`` -> ``unknown``:
      not a shape the platform documents, so it proves neither success nor failure

    Server text in details is condensed (:func:`iris360_async.errors.condense`).
    """
    if isinstance(original, dict):
        data = original.get("data")
        errs = original.get("errors")
        if errs is None or errs == [] or errs == {}:
            if data == SENT_MESSAGE:
                return _SENT, None
            if "data" in original:
                return _UNKNOWN, f"unrecognised success body: {_describe(original)}"
        if isinstance(errs, str):
            if errs.startswith(REJECTED_PREFIX):
                return _REJECTED, errors.condense(errs)
            return _FAILED, errors.condense(errs)
        message = errors.extract_server_message(original)
        return _FAILED, errors.condense(message) if message else _describe(original)
    if isinstance(original, str):
        if original.strip() == SENT_MESSAGE:
            return _UNKNOWN, (
                f"unrecognised item: the bare string {SENT_MESSAGE!r} instead of "
                "{\"data\": ...}"
            )
        return _FAILED, errors.condense(original) or "empty error text from the server"
    if original is None:
        return _FAILED, "the server gave no detail (the broker answered with a non-JSON body)"
    if original is msgspec.UNSET:
        return _UNKNOWN, "unrecognised item: no 'original'"
    return _UNKNOWN, f"unrecognised item: {type(original).__name__} {_describe(original)}"


def classify_chunk(
    serials: list[str], items: Sequence[BulkItem]
) -> tuple[OutcomeBatch, bool]:
    """Outcomes for a chunk whose request answered; and whether the chunk is wholly ``unknown``.

    An answer that is not a list, or whose length differs from the request's, makes every
    serial ``unknown``.
    """
    if not isinstance(items, Sequence):
        reason = f"the answer could not be read (not a list: {type(items).__name__})"
        return OutcomeBatch.of([CommandOutcome(s, _UNKNOWN, reason) for s in serials]), True
    if len(items) != len(serials):
        reason = f"the answer has {len(items)} items for {len(serials)} serials"
        return OutcomeBatch.of([CommandOutcome(s, _UNKNOWN, reason) for s in serials]), True
    others: dict[int, CommandOutcome] = {}
    sent_body, malformed, unset = _SENT_BODY, MalformedBulkItem, msgspec.UNSET
    for i, item in enumerate(items):
        try:
            original = item.original
        except AttributeError:
            original = unset
        if original == sent_body and type(item) is not malformed:
            continue
        if isinstance(item, malformed):
            reason = f"unrecognised item: not an object with 'original': {_describe(original)}"
            others[i] = CommandOutcome(serials[i], _UNKNOWN, reason, original)
        else:
            status, detail = classify_item(original)
            others[i] = CommandOutcome(serials[i], status, detail, original)
    return OutcomeBatch(serials, others), False


@dataclass(frozen=True)
class ErrorVerdict:
    """What an exception from ``send_chunk`` means for every serial of its chunk.

    Attributes:
        status: ``unknown`` (the server may have acted) or ``failed`` (it did not).
        detail: the reason, without credentials.
        stop: the job cannot go on (authentication lost, unexpected error).
        retryable: re-sending may help (used only with ``retry_unknown``).
        stop_reason: the job's ``stopped_reason`` when ``stop`` (default:
            ``"error: <ExceptionType>"``).
    """

    status: CommandStatus
    detail: str
    stop: bool = False
    retryable: bool = False
    stop_reason: str | None = None


AUTH_STOP_REASON = "authentication failed"


def _status_detail(exc: errors.APIStatusError) -> str:
    message = exc.server_message
    return f"HTTP {exc.status}: {errors.condense(message)}" if message else f"HTTP {exc.status}"


def _error_text(exc: BaseException) -> str:
    """A short description of ``exc`` for a detail (server text condensed)."""
    if isinstance(exc, errors.APIStatusError):
        return _status_detail(exc)
    if isinstance(exc, errors.Iris360Error):
        return f"{type(exc).__name__}: {errors.condense(exc.message)}"
    return f"{type(exc).__name__}: {errors.condense(str(exc))}"


def _token_verdict(exc: BaseException) -> ErrorVerdict:
    """Obtaining the access token failed: the bulk request was never sent; the job stops."""
    return ErrorVerdict(
        _FAILED,
        f"{NOT_SENT_PREFIX} could not obtain an access token ({_error_text(exc)})",
        stop=True,
        stop_reason=AUTH_STOP_REASON,
    )


def _redirect_verdict(exc: errors.RedirectError) -> ErrorVerdict:
    target = f" to {exc.location}" if exc.location else ""
    return ErrorVerdict(
        _UNKNOWN,
        f"the server answered with a redirect ({exc.status}{target}); it may have acted "
        "(redirects are never followed)",
    )


def classify_exception(exc: BaseException) -> ErrorVerdict:
    """The verdict for a chunk whose ``send_chunk`` raised ``exc`` (after its own retries).

    ``unknown`` only when the bytes of the bulk request may have reached the server. An error
    raised while obtaining an access token (``while_authenticating``, whatever its type) means
    the request was never sent: ``failed`` with a ``not sent:`` detail, and the job stops.
    """
    if getattr(exc, "while_authenticating", False):
        return _token_verdict(exc)
    if isinstance(exc, errors.APIConnectionError):
        if not exc.request_sent:
            return ErrorVerdict(
                _FAILED,
                f"{NOT_SENT_PREFIX} the connection could not be established "
                f"({errors.condense(exc.message)})",
            )
        what = "timed out" if isinstance(exc, errors.APITimeoutError) else "connection lost"
        return ErrorVerdict(
            _UNKNOWN,
            f"{what} after the request was sent ({errors.condense(exc.message)})",
            retryable=True,
        )
    if isinstance(exc, errors.RedirectError):
        return _redirect_verdict(exc)
    if isinstance(exc, errors.AuthenticationError):
        # 401 before processing although fresh tokens were obtained (the transport renews a
        # bounded number of times per request): this chunk is refused, later ones may pass
        return ErrorVerdict(
            _FAILED,
            f"{NOT_SENT_PREFIX} the server refused the token, also after renewing it "
            f"({_status_detail(exc)})",
        )
    if isinstance(exc, errors.RateLimitError):
        return ErrorVerdict(
            _FAILED, f"{NOT_SENT_PREFIX} rate limited after retries ({_status_detail(exc)})"
        )
    if isinstance(
        exc,
        (errors.BadRequestError, errors.NotFoundError, errors.UnprocessableEntityError),
    ):
        return ErrorVerdict(
            _FAILED, f"{NOT_SENT_PREFIX} the server refused the request ({_status_detail(exc)})"
        )
    if isinstance(exc, errors.PermissionDeniedError):
        return ErrorVerdict(
            _UNKNOWN,
            "the server refused one target mid-chunk; targets before it may have the command "
            f"({_status_detail(exc)})",
        )
    if isinstance(exc, errors.InternalServerError):
        return ErrorVerdict(
            _UNKNOWN, f"server error; the chunk may be partly applied ({_status_detail(exc)})",
            retryable=True,
        )
    if isinstance(exc, errors.APIStatusError):
        return ErrorVerdict(_UNKNOWN, f"unexpected answer ({_status_detail(exc)})")
    if isinstance(exc, errors.ResponseTooLargeError):
        return ErrorVerdict(
            _UNKNOWN,
            f"the answer exceeded the size limit ({exc.limit} bytes) and was not read; "
            "the server may have acted",
        )
    if isinstance(exc, errors.ResponseDecodeError):
        return ErrorVerdict(
            _UNKNOWN, f"the answer could not be read ({errors.condense(exc.message)})",
            retryable=True,
        )
    if isinstance(exc, errors.Iris360Error):
        return ErrorVerdict(_UNKNOWN, errors.condense(exc.message))
    return ErrorVerdict(_UNKNOWN, f"unexpected error: {_error_text(exc)}", stop=True)


def not_sent(serials: Iterable[str], reason: str) -> list[CommandOutcome]:
    """``skipped`` outcomes for serials read but never sent because the job stopped."""
    detail = f"{NOT_SENT_PREFIX} job stopped ({reason})"
    return [CommandOutcome(s, _SKIPPED, detail) for s in serials]
