"""The argument checks shared by resources, the bulk engine and the time-series helper."""

from __future__ import annotations

import json
import math
import uuid
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from iris360_async._validation import (
    join_list_filter,
    query_bool,
    quote_urn,
    validate_aggregation,
    validate_aggregation_interval,
    validate_aggregation_type,
    validate_commands,
    validate_limit,
    validate_page_size,
    validate_serials,
    validate_tenant_scope,
    validate_urn,
)


def test_serials_ok() -> None:
    assert validate_serials(["A", "B"]) == ["A", "B"]
    assert validate_serials(s for s in ("A",)) == ["A"]
    assert validate_serials(("A",)) == ["A"]


@pytest.mark.parametrize(
    ("value", "error", "match"),
    [
        ("ONE001", TypeError, "single string"),
        (b"ONE001", TypeError, "single string"),
        ({"A": 1}, TypeError, "mapping"),
        (5, TypeError, "iterable"),
        ([], ValueError, "empty"),
        (["A", " "], ValueError, r"serials\[1\]"),
        (["A", None], TypeError, r"serials\[1\]"),
    ],
)
def test_serials_rejected(value: Any, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        validate_serials(value)


def test_commands_ok_copy() -> None:
    original = {"w_ota": True, "cfg": {"a": [1, None]}}
    checked = validate_commands(original)
    assert checked == original
    assert checked is not original


@pytest.mark.parametrize(
    ("value", "error", "match"),
    [
        ({}, ValueError, "at least one"),
        ([("a", 1)], TypeError, "mapping"),
        ({1: True}, TypeError, "names must be strings"),
        ({"": True}, ValueError, "empty"),
        ({"device_serials": ["x"]}, ValueError, "reserved"),
        ({"a": 1j}, TypeError, "JSON cannot carry"),
        ({"a": object()}, TypeError, "JSON cannot carry"),
        ({"w_ota": math.nan}, ValueError, r"w_ota = nan is not a finite number"),
        ({"w_ota": math.inf}, ValueError, "not a finite number"),
        ({"w_ota": -math.inf}, ValueError, "not a finite number"),
        ({"w_cfg": [1, 2, {"x": math.nan}]}, ValueError, r"w_cfg\[2\]\.x = nan"),
        ({"w_cfg": {"a b": [math.inf]}}, ValueError, r"w_cfg\['a b'\]\[0\]"),
        ({"w_cfg": {"k": b"bytes"}}, TypeError, r"w_cfg\.k is a bytes"),
        ({"w_cfg": bytearray(b"x")}, TypeError, "bytearray"),
        ({"w_cfg": {1, 2}}, TypeError, "set"),
        ({"w_cfg": frozenset({1})}, TypeError, "frozenset"),
        ({"w_at": datetime(2024, 1, 1, tzinfo=timezone.utc)}, TypeError, "datetime"),
        ({"w_at": date(2024, 1, 1)}, TypeError, "date"),
        ({"w_n": Decimal("1.5")}, TypeError, "Decimal"),
        ({"w_n": 2**70}, ValueError, "64-bit"),
        ({"w_n": -(2**63) - 1}, ValueError, "64-bit"),
        ({"w_cfg": {"a": {1: "x"}}}, TypeError, r"w_cfg\.a has a int key"),
        ({"w_cfg": [[[uuid.UUID(int=0)]]]}, TypeError, r"w_cfg\[0\]\[0\]\[0\] is a UUID"),
    ],
)
def test_commands_rejected(value: Any, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        validate_commands(value)


def test_command_values_at_the_edges_are_accepted() -> None:
    ok = {"a": 2**63 - 1, "b": -(2**63), "c": 1.7976931348623157e308, "d": ("x", 1), "e": None}
    assert validate_commands(ok) == ok


def test_deeply_nested_or_cyclic_command_values_are_refused() -> None:
    cyclic: list[Any] = []
    cyclic.append(cyclic)
    with pytest.raises(ValueError, match="nested more than"):
        validate_commands({"a": cyclic})


exact_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=5), children, max_size=4),
    max_leaves=12,
)
inexact = st.one_of(
    st.just(math.nan),
    st.just(math.inf),
    st.just(-math.inf),
    st.binary(),
    st.sets(st.integers(), max_size=2),
    st.datetimes(),
    st.decimals(allow_nan=False),
    st.integers(min_value=2**63),
    st.integers(max_value=-(2**63) - 1),
)


@given(exact_json)
def test_values_json_carries_exactly_pass_and_round_trip(value: Any) -> None:
    checked = validate_commands({"cmd": value})
    assert json.loads(json.dumps(checked)) == {"cmd": value}


@given(exact_json, inexact, st.integers(0, 3))
def test_any_inexact_value_anywhere_is_refused(value: Any, bad: Any, depth: int) -> None:
    for _ in range(depth):
        bad = {"k": [value, bad]}
    with pytest.raises((TypeError, ValueError), match="command value cmd"):
        validate_commands({"cmd": bad})


def test_page_size_and_limit() -> None:
    assert validate_page_size(1) == 1
    assert validate_page_size(10_000) == 10_000
    for bad, error in ((0, ValueError), (10_001, ValueError), (True, TypeError), (2.0, TypeError)):
        with pytest.raises(error):
            validate_page_size(bad)
    assert validate_limit(1) == 1
    for bad, error in ((0, ValueError), (None, ValueError), ("5", TypeError)):
        with pytest.raises(error):
            validate_limit(bad)


def test_urn() -> None:
    assert validate_urn("urn:ngsi-ld:Device:D1") == "urn:ngsi-ld:Device:D1"
    for bad, error in (("", ValueError), ("urn:a\nb", ValueError), (None, TypeError)):
        with pytest.raises(error):
            validate_urn(bad)
    assert quote_urn("urn:ngsi-ld:X:a/b?c") == "urn:ngsi-ld:X:a%2Fb%3Fc"


def test_join_list_filter() -> None:
    assert join_list_filter(["a", "b"]) == "a,b"
    assert join_list_filter("a") == "a"
    with pytest.raises(ValueError, match="','"):
        join_list_filter(["a,b"], name="types")
    with pytest.raises(ValueError, match="empty"):
        join_list_filter([])
    with pytest.raises(ValueError, match="empty"):
        join_list_filter(["a", ""])
    with pytest.raises(TypeError):
        join_list_filter([1])  # type: ignore[list-item]


def test_query_bool() -> None:
    assert (query_bool(True), query_bool(False)) == ("1", "0")
    with pytest.raises(TypeError):
        query_bool("false")  # type: ignore[arg-type]


def test_tenant_scope() -> None:
    validate_tenant_scope("t", "/")
    validate_tenant_scope("t", None)
    validate_tenant_scope(None, None)
    with pytest.raises(ValueError, match="tenant"):
        validate_tenant_scope(None, "/")


@pytest.mark.parametrize(
    "type_", ["mean", "moving_avg", "sum", "min", "max", "percentile-1", "percentile-100"]
)
def test_aggregation_types_ok(type_: str) -> None:
    assert validate_aggregation_type(type_) == type_


@pytest.mark.parametrize(
    ("type_", "error"),
    [
        ("percentile", ValueError),
        ("percentile-0", ValueError),
        ("percentile-101", ValueError),
        ("percentile-9.5", ValueError),
        ("avg", ValueError),
        ("MEAN", ValueError),
        (None, TypeError),
    ],
)
def test_aggregation_types_rejected(type_: Any, error: type[Exception]) -> None:
    with pytest.raises(error):
        validate_aggregation_type(type_)


@pytest.mark.parametrize("interval", ["PT1H", "P1D", "PT15M", "PT30S", "PT0.5S", "P1W", "P1DT2H"])
def test_intervals_ok(interval: str) -> None:
    assert validate_aggregation_interval(interval) == interval


@pytest.mark.parametrize("interval", ["P1M", "P1Y", "1h", "PT", "P", "P1DT", "PT0S", "", "pt1h"])
def test_intervals_rejected(interval: str) -> None:
    with pytest.raises(ValueError, match="interval"):
        validate_aggregation_interval(interval)


def test_interval_from_timedelta() -> None:
    assert validate_aggregation("mean", timedelta(hours=1)) == ("mean", "PT1H")
    with pytest.raises(ValueError, match="positive"):
        validate_aggregation("mean", timedelta(0))
    with pytest.raises(TypeError):
        validate_aggregation("mean", 3600)
