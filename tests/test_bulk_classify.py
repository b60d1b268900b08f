"""Pure parts of the bulk engine: outcome classification and chunk planning."""

from __future__ import annotations

import itertools
import pickle
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from iris360_async import errors
from iris360_async._bulk import (
    ChunkPlanner,
    body_base_size,
    classify_chunk,
    classify_exception,
    classify_item,
    plan_chunks,
    serial_size,
)
from iris360_async.models.bulk import CommandOutcome, CommandReport, CommandStatus, OutcomeBatch

SENT = CommandStatus.SENT
REJECTED = CommandStatus.REJECTED
FAILED = CommandStatus.FAILED
UNKNOWN = CommandStatus.UNKNOWN


class Item(msgspec.Struct):
    original: Any
    headers: dict[str, Any] = {}
    exception: Any = None


# -- items ------------------------------------------------------------------------------------


def test_status_values_are_exactly_the_five() -> None:
    assert [s.value for s in CommandStatus] == ["sent", "rejected", "failed", "unknown", "skipped"]
    assert CommandStatus("sent") is SENT
    assert SENT == "sent"
    assert str(SENT) == "sent"


@pytest.mark.parametrize(
    ("original", "status"),
    [
        ({"data": "Command sent!!"}, SENT),
        ({"data": "Command sent!!", "extra": 1}, SENT),
        ({"data": "Command sent!!", "errors": []}, SENT),
        ({"errors": "You cannot send any of: w_ota"}, REJECTED),
        ({"errors": "You cannot send any of: a, b"}, REJECTED),
        ({"errors": [{"id": "x", "error": "NotFound"}], "success": []}, FAILED),
        ({"errors": "Something else"}, FAILED),
        ({"data": "Command sent!!", "errors": "You cannot send any of: w_ota"}, REJECTED),
        ("cURL error 28: Operation timed out", FAILED),
        ("Device not found: X", FAILED),
        (None, FAILED),
        ({}, FAILED),
        # shapes the platform does not document prove nothing: unknown, never failed
        (42, UNKNOWN),
        (1.5, UNKNOWN),
        (True, UNKNOWN),
        ([], UNKNOWN),
        ([{"data": "Command sent!!"}], UNKNOWN),
        ("Command sent!!", UNKNOWN),
        (" Command sent!! ", UNKNOWN),
        (msgspec.UNSET, UNKNOWN),
        ({"data": "Command queued"}, UNKNOWN),
        ({"data": None}, UNKNOWN),
    ],
)
def test_classify_item(original: Any, status: CommandStatus) -> None:
    got, detail = classify_item(original)
    assert got is status
    if status is SENT:
        assert detail is None
    else:
        assert detail


def test_rejected_detail_is_the_server_message() -> None:
    assert classify_item({"errors": "You cannot send any of: w_ota"}) == (
        REJECTED,
        "You cannot send any of: w_ota",
    )


def test_failed_string_detail_keeps_the_text() -> None:
    status, detail = classify_item("Device not found: SN1")
    assert status is FAILED
    assert detail == "Device not found: SN1"


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: st.lists(children) | st.dictionaries(st.text(), children),
    max_leaves=10,
)


@given(json_values)
def test_classify_item_is_total(original: Any) -> None:
    status, detail = classify_item(original)
    assert status in (SENT, REJECTED, FAILED, UNKNOWN)
    assert (detail is None) == (status is SENT)


@given(st.lists(st.sampled_from(["ok", "rej", "bad", None]), max_size=30))
def test_classify_chunk_keeps_order_and_length(kinds: list[str | None]) -> None:
    bodies = {
        "ok": {"data": "Command sent!!"},
        "rej": {"errors": "You cannot send any of: w_ota"},
        "bad": "broker timeout",
        None: None,
    }
    serials = [f"S{i}" for i in range(len(kinds))]
    outcomes, whole_unknown = classify_chunk(serials, [Item(bodies[k]) for k in kinds])
    assert not whole_unknown
    assert [o.serial for o in outcomes] == serials
    expected = {"ok": SENT, "rej": REJECTED, "bad": FAILED, None: FAILED}
    assert [o.status for o in outcomes] == [expected[k] for k in kinds]
    for o, k in zip(outcomes, kinds, strict=True):
        if k != "ok":
            assert o.raw == bodies[k]


@pytest.mark.parametrize("n_items", [0, 2, 4])
def test_length_mismatch_makes_the_chunk_unknown(n_items: int) -> None:
    serials = ["A", "B", "C"]
    outcomes, whole_unknown = classify_chunk(serials, [Item({"data": "Command sent!!"})] * n_items)
    assert whole_unknown
    assert [o.status for o in outcomes] == [UNKNOWN] * 3
    assert all(f"{n_items} items for 3 serials" in (o.detail or "") for o in outcomes)


@given(st.lists(st.sampled_from(["ok", "rej", "bad"]), max_size=20))
def test_outcome_batch_round_trips_and_accounts_like_a_list(kinds: list[str]) -> None:
    make = {
        "ok": lambda s: CommandOutcome(s, SENT),
        "rej": lambda s: CommandOutcome(s, REJECTED, "You cannot send any of: w_ota"),
        "bad": lambda s: CommandOutcome(s, FAILED, "broker timeout", "broker timeout"),
    }
    outcomes = [make[k](f"S{i}") for i, k in enumerate(kinds)]
    batch = OutcomeBatch.of(outcomes)
    assert list(batch) == outcomes
    assert len(batch) == len(outcomes)
    assert batch.sent() == [o.serial for o in outcomes if o.status is SENT]
    assert sorted(batch.others) == [i for i, k in enumerate(kinds) if k != "ok"]
    assert OutcomeBatch.of(batch) is batch
    for keep in (True, False):
        from_list, from_batch = CommandReport(), CommandReport()
        from_list._record(outcomes, keep=keep)
        from_batch._record(batch, keep=keep)
        assert from_batch.counts == from_list.counts
        assert from_batch.sent == from_list.sent
        assert from_batch.failures == from_list.failures


def test_classify_chunk_holds_no_object_for_a_sent_serial() -> None:
    serials = ["A", "B", "C"]
    items = [
        Item({"data": "Command sent!!"}),
        Item({"errors": "You cannot send any of: w_ota"}),
        Item({"data": "Command sent!!"}),
    ]
    batch, _ = classify_chunk(serials, items)
    assert list(batch.others) == [1]
    assert batch.sent() == ["A", "C"]
    assert [o.status for o in batch] == [SENT, REJECTED, SENT]


# -- exceptions -------------------------------------------------------------------------------


def _status(cls: type[errors.APIStatusError], status: int, **kw: Any) -> errors.APIStatusError:
    return cls(
        "boom", status=status, method="POST", url="http://x/devices/sendCommandsBulk",
        body={"message": "nope"}, **kw,
    )


@pytest.mark.parametrize(
    ("exc", "status", "stop", "retryable"),
    [
        (errors.APITimeoutError("read timeout", request_sent=True), UNKNOWN, False, True),
        (errors.APIConnectionError("reset", request_sent=True), UNKNOWN, False, True),
        (errors.APIConnectionError("refused", request_sent=False), FAILED, False, False),
        (errors.APITimeoutError("connect timeout", request_sent=False), FAILED, False, False),
        (_status(errors.InternalServerError, 500), UNKNOWN, False, True),
        (_status(errors.InternalServerError, 503), UNKNOWN, False, True),
        (_status(errors.PermissionDeniedError, 403), UNKNOWN, False, False),
        (errors.ResponseDecodeError("bad json", status=207), UNKNOWN, False, True),
        (_status(errors.BadRequestError, 400), FAILED, False, False),
        (_status(errors.NotFoundError, 404), FAILED, False, False),
        (_status(errors.UnprocessableEntityError, 422), FAILED, False, False),
        (_status(errors.RateLimitError, 429, retry_after=1.0), FAILED, False, False),
        (_status(errors.AuthenticationError, 401), FAILED, False, False),
        (_status(errors.APIStatusError, 409), UNKNOWN, False, False),
        (_status(errors.RedirectError, 307, location="https://x/elsewhere"), UNKNOWN, False, False),
        (_status(errors.RedirectError, 303), UNKNOWN, False, False),
        (errors.ResponseTooLargeError("too big", limit=1024), UNKNOWN, False, False),
        (RuntimeError("bug"), UNKNOWN, True, False),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, BaseException) else str(v),
)
def test_classify_exception(
    exc: BaseException, status: CommandStatus, stop: bool, retryable: bool
) -> None:
    verdict = classify_exception(exc)
    assert verdict.status is status
    assert verdict.stop is stop
    assert verdict.retryable is retryable
    assert verdict.detail
    if status is FAILED and not stop:
        assert verdict.detail.startswith("not sent")


def _while_authenticating(exc: errors.Iris360Error) -> errors.Iris360Error:
    exc.while_authenticating = True
    return exc


@pytest.mark.parametrize(
    "exc",
    [
        errors.APIConnectionError("reset", request_sent=True),
        errors.APITimeoutError("read timeout", request_sent=True),
        errors.APIConnectionError("refused", request_sent=False),
        _status(errors.InternalServerError, 503),
        _status(errors.RateLimitError, 429, retry_after=5.0),
        _status(errors.AuthenticationError, 401),
        _status(errors.RedirectError, 307, location="https://evil.example/login"),
        errors.ResponseDecodeError("token body unreadable", status=200),
        errors.ResponseTooLargeError("too big", limit=10),
    ],
    ids=lambda e: type(e).__name__,
)
def test_errors_while_obtaining_a_token_mean_not_sent_and_stop(exc: errors.Iris360Error) -> None:
    verdict = classify_exception(_while_authenticating(exc))
    assert verdict.status is FAILED
    assert verdict.detail.startswith("not sent: could not obtain an access token (")
    assert verdict.stop
    assert verdict.stop_reason == "authentication failed"
    assert not verdict.retryable


def test_errors_while_obtaining_a_token_survive_pickling() -> None:
    original = _while_authenticating(_status(errors.InternalServerError, 503))
    exc = pickle.loads(pickle.dumps(original))
    assert classify_exception(exc).status is FAILED


def test_redirect_on_the_write_is_unknown_naming_status_and_target() -> None:
    exc = _status(errors.RedirectError, 307, location="https://other.example/api")
    verdict = classify_exception(exc)
    assert verdict.status is UNKNOWN
    assert "redirect (307 to https://other.example/api)" in verdict.detail
    assert "may have acted" in verdict.detail
    assert not verdict.detail.startswith("not sent")


def test_too_large_answer_is_unknown_with_the_limit() -> None:
    verdict = classify_exception(errors.ResponseTooLargeError("body too large", limit=4096))
    assert verdict.status is UNKNOWN
    assert "4096 bytes" in verdict.detail


GATEWAY_PAGE = (
    "<html>\r\n<head><title>503 Service Temporarily Unavailable</title></head>\r\n<body>\r\n"
    "<center><h1>503 Service Temporarily Unavailable</h1></center>\r\n"
    "<hr><center>openresty</center>\r\n" + "<!-- padding -->\r\n" * 6 + "</body>\r\n</html>\r\n"
)


def test_gateway_html_page_is_condensed_in_exception_details() -> None:
    exc = errors.InternalServerError(
        "boom", status=503, method="POST", url="http://x", body=GATEWAY_PAGE, text=GATEWAY_PAGE
    )
    detail = classify_exception(exc).detail
    assert "503 Service Temporarily Unavailable" in detail
    assert "<" not in detail
    assert "\r" not in detail
    assert "\n" not in detail


@pytest.mark.parametrize(
    "original", [GATEWAY_PAGE, {"errors": GATEWAY_PAGE}, {"message": "a\r\nb"}]
)
def test_server_text_in_item_details_is_condensed(original: Any) -> None:
    status, detail = classify_item(original)
    assert status is FAILED
    assert detail is not None
    assert "\r" not in detail
    assert "\n" not in detail
    assert "<" not in detail
    assert len(detail) <= 200


def test_exception_detail_carries_server_message_not_token() -> None:
    exc = _status(errors.InternalServerError, 500)
    detail = classify_exception(exc).detail
    assert "500" in detail
    assert "nope" in detail


# -- planning ---------------------------------------------------------------------------------

serial_text = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), min_size=1, max_size=20
)


@settings(max_examples=200)
@given(st.lists(serial_text, max_size=200), st.integers(1, 17))
def test_plan_chunks_by_count(serials: list[str], chunk_size: int) -> None:
    chunks = list(plan_chunks(serials, chunk_size))
    assert [s for c in chunks for s in c] == serials
    assert all(1 <= len(c) <= chunk_size for c in chunks)
    # only the last chunk may be short
    assert all(len(c) == chunk_size for c in chunks[:-1])


@settings(max_examples=200)
@given(st.lists(serial_text, max_size=200), st.integers(1, 17), st.integers(0, 300))
def test_plan_chunks_by_body_size(serials: list[str], chunk_size: int, extra: int) -> None:
    commands = {"w_ota": True, "w_name": "x"}
    base = body_base_size(commands)
    longest = max((serial_size(s) for s in serials), default=2)
    limit = base + longest + extra
    chunks = list(plan_chunks(serials, chunk_size, limit, base))
    assert [s for c in chunks for s in c] == serials
    for c in chunks:
        assert 1 <= len(c) <= chunk_size
        body = msgspec.json.encode({"device_serials": c, **commands})
        assert len(body) <= limit
    # greedy: a chunk is closed only when the next serial would not fit (or it is full)
    for c, nxt in itertools.pairwise(chunks):
        if len(c) < chunk_size:
            body = msgspec.json.encode({"device_serials": [*c, nxt[0]], **commands})
            assert len(body) > limit


def test_plan_chunks_refuses_a_serial_that_cannot_fit() -> None:
    base = body_base_size({"w_ota": True})
    with pytest.raises(ValueError, match="does not fit"):
        list(plan_chunks(["A" * 50], 10, base + 10, base))


def test_planner_pending_and_flush() -> None:
    planner = ChunkPlanner(3)
    assert planner.add("a") is None
    assert planner.add("b") is None
    assert planner.pending() == ["a", "b"]
    assert planner.add("c") == ["a", "b", "c"]
    assert planner.flush() is None
    planner.add("d")
    assert planner.flush() == ["d"]
    with pytest.raises(ValueError, match="chunk_size"):
        ChunkPlanner(0)


# -- report -----------------------------------------------------------------------------------


def test_report_compact_storage_and_views() -> None:
    report = CommandReport()
    for o in [
        CommandOutcome("A", SENT),
        CommandOutcome("B", REJECTED, "You cannot send any of: w_ota"),
        CommandOutcome("C", CommandStatus.SKIPPED, "duplicate serial in input"),
        CommandOutcome("D", UNKNOWN, "timed out"),
        CommandOutcome("E", SENT),
    ]:
        report.total += 1
        report._record([o], keep=True)
    assert report.counts == {"sent": 2, "rejected": 1, "failed": 0, "unknown": 1, "skipped": 1}
    assert report.sent == ["A", "E"]
    assert [o.serial for o in report.failures] == ["B", "D"]
    assert report.serials("skipped") == ["C"]
    assert report.serials(UNKNOWN) == ["D"]
    assert report.outcome("C") == CommandOutcome(
        "C", CommandStatus.SKIPPED, "duplicate serial in input"
    )
    assert report.outcome("A") == CommandOutcome("A", SENT)
    assert report.outcome("Z") is None
    assert sorted(o.serial for o in report.outcomes()) == ["A", "B", "C", "D", "E"]
    assert not report.ok
    assert report.to_dict()["counts"]["sent"] == 2
    assert "sent=2" in repr(report)
    report.elapsed = 2.0
    assert report.throughput == 2.0  # 4 dispatched serials / 2 s


def test_outcome_is_picklable_and_frozen() -> None:
    o = CommandOutcome("A", FAILED, "x", {"errors": "y"})
    assert pickle.loads(pickle.dumps(o)) == o
    with pytest.raises(AttributeError):
        o.serial = "B"  # type: ignore[misc]


@settings(max_examples=100)
@given(
    st.lists(st.lists(st.text(min_size=1, max_size=8), max_size=30), max_size=8),
    st.integers(1, 7),
    st.sampled_from([None, 60, 120]),
)
def test_planner_feed_cuts_like_add(
    batches: list[list[str]], chunk_size: int, limit: int | None
) -> None:
    base = body_base_size({"w_ota": True})
    max_body = None if limit is None else base + limit
    fed, added = ChunkPlanner(chunk_size, max_body, base), ChunkPlanner(chunk_size, max_body, base)
    by_feed: list[list[str]] = []
    by_add: list[list[str]] = []
    for batch in batches:
        fits = [s for s in batch if fed.fits_alone(s)]
        by_feed.extend(fed.feed(fits))
        by_add.extend(done for done in map(added.add, fits) if done is not None)
        assert len(fed) == len(added) == len(fed.pending())
    assert by_feed == by_add
    assert fed.flush() == added.flush()


def test_classify_chunk_item_without_original_is_unknown() -> None:
    batch, whole_unknown = classify_chunk(["A", "B"], [Item({"data": "Command sent!!"}), 42])
    assert not whole_unknown
    assert [o.status for o in batch] == [SENT, UNKNOWN]
    assert "no 'original'" in (list(batch)[1].detail or "")
