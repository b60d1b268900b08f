"""The reconcile and tracking rules: what a device's command state says (pure)."""

from __future__ import annotations

import pickle
from datetime import datetime, timezone
from typing import Any

import pytest

from iris360_async._lifecycle import (
    CONFIRMED_DETAIL,
    EntityRef,
    StateUnreadable,
    TrackState,
    VerdictKind,
    entity_for,
    reconcile_verdict,
    same_value,
    track_state,
)
from iris360_async.models import Device, EntityCommand, EntityProperty
from iris360_async.models.devices import DeviceMainEntity


def cmd(name: str, *, pending: Any = False, pending_value: Any = None,
        current_value: Any = None, at: int | None = None) -> EntityCommand:
    stamp = None if at is None else datetime(2026, 1, 1, 0, 0, at, tzinfo=timezone.utc)
    return EntityCommand(id=name, pending=pending, pending_value=pending_value,
                         current_value=current_value, timestamp=stamp)


# -- the mapping --------------------------------------------------------------------------------


def test_entity_for_is_the_main_entity_with_its_tenant_and_scope() -> None:
    device = Device(id=1, serial="SN1", name="n", main_entity=DeviceMainEntity(
        id=9, urn="urn:ngsi-ld:Device:SN1", tenant="t", scope="/lab"))
    assert entity_for(device) == EntityRef("urn:ngsi-ld:Device:SN1", "t", "/lab")
    assert entity_for(Device(id=2, serial="SN2", name="n")) is None


# -- comparing values ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sent", "seen", "same"),
    [
        (True, True, True), (True, False, False), (True, None, False),
        (True, 1, None), (False, 0, None), (True, 2, False),  # bool vs 0/1 cannot be told
        (True, "true", None), ("true", True, None),  # a string may be the other's JSON text
        (30, 30, True), (30, 30.0, True), (30, 31, False), (0.5, 0.5, True),
        ("on", "on", True), ("on", "off", False), ("on", None, False),
        ({"a": [1, {"b": True}]}, {"a": [1.0, {"b": True}]}, True),
        ({"a": [1, {"b": True}]}, {"a": [1, {"b": False}]}, False),
        ({"a": 1}, {"a": 1, "b": 2}, False), ([1, 2], [1, 2, 3], False),
        ({"a": [True]}, {"a": [1]}, None), ({"a": 1}, '{"a": 1}', None),
        ([1, True], [2, 1], None),  # anything ambiguous makes the whole ambiguous
        (None, None, None), ([1], {"0": 1}, False),
    ],
)
def test_same_value(sent: Any, seen: Any, same: bool | None) -> None:
    assert same_value(sent, seen) is same


# -- reconcile ----------------------------------------------------------------------------------


def test_pending_with_the_value_sent_is_confirmed() -> None:
    verdict = reconcile_verdict({"w_ota": True, "w_sleep": 30}, [
        cmd("w_ota", pending=True, pending_value=True),
        cmd("w_sleep", pending=True, pending_value=30.0),
        EntityProperty(id="temperature", value=21.5),
    ])
    assert (verdict.kind, verdict.detail) == (VerdictKind.CONFIRMED, CONFIRMED_DETAIL)
    assert verdict.resolved
    assert not verdict.resend


def test_current_value_equal_is_confirmed() -> None:
    verdict = reconcile_verdict({"w_ota": True, "w_sleep": 30}, [
        cmd("w_ota", current_value=True),  # the device already confirmed it
        cmd("w_sleep", pending=True, pending_value=60, current_value=30),
    ])
    assert verdict.kind is VerdictKind.CONFIRMED


def test_nothing_pending_and_current_different_is_not_applied() -> None:
    verdict = reconcile_verdict({"w_ota": True, "w_sleep": 30}, [
        cmd("w_ota", current_value=False), cmd("w_sleep", pending=True, pending_value=60),
    ])
    assert verdict.kind is VerdictKind.NOT_APPLIED
    assert verdict.resend
    assert verdict.detail == ("not applied: w_ota not pending, current False, "
                              "w_sleep pending with 60")


def test_never_commanded_is_not_applied() -> None:
    verdict = reconcile_verdict({"w_ota": True}, [cmd("w_ota")])
    assert verdict.kind is VerdictKind.NOT_APPLIED


def test_some_written_some_not_is_mixed() -> None:
    verdict = reconcile_verdict({"w_ota": True, "w_sleep": 30}, [
        cmd("w_ota", pending=True, pending_value=True), cmd("w_sleep", current_value=10),
    ])
    assert verdict.kind is VerdictKind.MIXED
    assert not verdict.resolved
    assert not verdict.resend
    assert verdict.detail == ("mixed command state: w_ota written; "
                              "w_sleep not pending, current 10")


@pytest.mark.parametrize(
    ("state", "reason"),
    [
        ([cmd("w_sleep", pending=True, pending_value=30)], "'w_ota' not in the entity's state"),
        ([], "'w_ota' not in the entity's state"),
        ([EntityProperty(id="w_ota", value=True)], "'w_ota' not in the entity's state"),
        ([cmd("w_ota", pending=None, current_value=True)], "no pending flag"),
        ([cmd("w_ota", pending=True, pending_value="true")],
         "'true' cannot be compared with True sent"),
        ([cmd("w_ota", current_value=1)], "1 cannot be compared with True sent"),
    ],
)
def test_unreadable_state_stays_unknown(state: list[Any], reason: str) -> None:
    verdict = reconcile_verdict({"w_ota": True}, state)
    assert verdict.kind is VerdictKind.UNREADABLE
    assert reason in verdict.detail
    assert not verdict.resolved
    assert not verdict.resend


def test_an_ambiguous_pending_value_is_not_needed_when_current_is_equal() -> None:
    verdict = reconcile_verdict({"w_ota": True}, [
        cmd("w_ota", pending=True, pending_value="true", current_value=True)])
    assert verdict.kind is VerdictKind.CONFIRMED


def test_the_newest_of_repeated_entries_counts() -> None:
    older = cmd("w_ota", pending=True, pending_value=True, at=1)
    newer = cmd("w_ota", current_value=False, at=2)
    assert reconcile_verdict({"w_ota": True}, [newer, older]).kind is VerdictKind.NOT_APPLIED
    assert reconcile_verdict({"w_ota": True}, [older, newer]).kind is VerdictKind.NOT_APPLIED
    undated = cmd("w_ota", pending=True, pending_value=True)
    assert reconcile_verdict({"w_ota": True}, [newer, undated]).kind is VerdictKind.NOT_APPLIED


def test_no_commands_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one command"):
        reconcile_verdict({}, [])
    with pytest.raises(ValueError, match="at least one command"):
        track_state({}, [])


def test_state_unreadable_pickles() -> None:
    exc = pickle.loads(pickle.dumps(StateUnreadable("device 'X' not found", final=True)))
    assert (exc.reason, exc.final, str(exc)) == ("device 'X' not found", True,
                                                  "device 'X' not found")


# -- tracking -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        ([cmd("w_ota", current_value=True)], TrackState.APPLIED),
        ([cmd("w_ota", pending=True, pending_value=True)], TrackState.PENDING),
        ([cmd("w_ota", pending=True, pending_value=True, current_value=True)],
         TrackState.PENDING),
        ([cmd("w_ota", current_value=False)], TrackState.SUPERSEDED),
        ([cmd("w_ota", pending=True, pending_value=False, current_value=True)],
         TrackState.SUPERSEDED),
        ([cmd("w_ota", current_value="true")], TrackState.UNREADABLE),
        ([], TrackState.UNREADABLE),
    ],
)
def test_track_state_one_command(state: list[Any], expected: TrackState) -> None:
    assert track_state({"w_ota": True}, state)[0] is expected


def test_track_state_several_commands() -> None:
    sent = {"w_ota": True, "w_sleep": 30}
    applied = cmd("w_ota", current_value=True)
    pending = cmd("w_sleep", pending=True, pending_value=30)
    assert track_state(sent, [applied, cmd("w_sleep", current_value=30)]) == (
        TrackState.APPLIED, None)
    assert track_state(sent, [applied, pending]) == (TrackState.PENDING, None)
    assert track_state(sent, [cmd("w_ota", current_value=False), pending]) == (
        TrackState.SUPERSEDED, "w_ota not pending, current False")
    assert track_state(sent, [pending, cmd("w_ota", pending=True, pending_value=False)]) == (
        TrackState.SUPERSEDED, "w_ota pending with False")
    state, detail = track_state(sent, [applied])
    assert state is TrackState.UNREADABLE
    assert detail == "command 'w_sleep' not in the entity's state"
    assert TrackState.APPLIED.final
    assert TrackState.SUPERSEDED.final
    assert not TrackState.PENDING.final
    assert not TrackState.UNREADABLE.final
