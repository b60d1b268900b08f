"""An IRIS360 server for tests, demos and benchmarks.

:class:`Iris360Emulator` serves the whole public API (``/api/public/v1``) on 127.0.0.1 with the
real server's quirks, over a seeded fleet of devices, entities, connectors and deterministic time
series; it injects faults on demand and counts every command each device received::

    from iris360_async.testing import FaultProfile, Iris360Emulator

    async with Iris360Emulator(devices=10_000, seed=1) as emu:
        emu.set_faults(FaultProfile(error_rate=0.05), endpoint="devices.bulk")
        ...                                   # talk to emu.base_url
        assert emu.stats.max_applications() == 1

Also available: :class:`EmulatorThread` (background thread, for synchronous code),
:class:`EmulatorProcess` (separate process), ``python -m iris360_async.testing`` (standalone
server) and the pytest fixtures ``iris360_emulator`` / ``iris360_emulator_factory``
(:mod:`iris360_async.testing.pytest_plugin`).

Behaviour chosen where the reference is silent:

* login takes ``{"email", "password"}`` (``{"username", "password"}`` also works) and answers
  ``{"id", "token", "refreshToken"}``; access tokens are HS256 JWTs with ``sub`` and ``exp``;
  refresh tokens are single use;
* ``sendCommandsBulk``: an unknown serial's item has ``original = "Device not found: <serial>"``;
  a body without commands is a 422; targets are handled in order, duplicates included;
* ``PUT /connectors/out/{id}/models`` replaces each of ``entities`` / ``devices`` /
  ``mapping_schemas`` present in the body, keeps the absent ones, answers the connector;
* ``POST /devices/importFile`` takes a multipart CSV ``file`` part with a header row (``serial``
  required; ``name``, ``type``, ``description``, ``case_id`` optional), validates every row
  before creating or updating devices, and answers
  ``200 {"message", "total_devices_in_file", "created", "updated"}``;
* devices confirm pending commands when they connect: with ``sync_interval`` each device
  connects every few emulated minutes (its own interval, seeded), ``offline_fraction`` never
  do; a confirmation clears ``pending`` and sets ``current_value``; ``time_scale`` runs the
  emulated clock faster than real time;
* time series: one point every ``series_interval`` seconds (default 600) from ``series_start``
  (default 2025-01-01) to the emulator clock's now; ``order`` null = ascending;
  ``where`` (with empty ``device_ids``) honours ``datamodel`` and ``urn`` fields.
"""

from __future__ import annotations

from .clock import EmulatorClock
from .config import EmulatorConfig, EmulatorPaths, LatencyModel
from .emulator import EmulatorProcess, EmulatorThread, Iris360Emulator
from .faults import ENDPOINTS, FaultProfile
from .fleet import ALL_COMMANDS, DEVICE_TYPES, DeviceType, Fleet
from .stats import EmulatorStats
from .sync import CommandState, DeviceSync
from .tokens import TokenPair

__all__ = [
    "ALL_COMMANDS",
    "DEVICE_TYPES",
    "ENDPOINTS",
    "CommandState",
    "DeviceSync",
    "DeviceType",
    "EmulatorClock",
    "EmulatorConfig",
    "EmulatorPaths",
    "EmulatorProcess",
    "EmulatorStats",
    "EmulatorThread",
    "FaultProfile",
    "Fleet",
    "Iris360Emulator",
    "LatencyModel",
    "TokenPair",
]
