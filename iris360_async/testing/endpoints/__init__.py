"""Endpoint logic of the emulator, one method per endpoint of the public API, grouped by area.

Every method receives the request and the fault profile in force (for per-target bulk faults)
and returns the response; authentication, generic faults, latency and statistics are applied
around it by :class:`~iris360_async.testing.server.Plumbing`.

Choices where the reference leaves the behaviour open (documented in the package docstring):

* login accepts ``{"email", "password"}`` or ``{"username", "password"}``;
* an unknown serial in ``sendCommandsBulk`` gets the item
  ``original = "Device not found: <serial>"`` (a string, like other internal failures), and
  nothing is applied to it;
* a ``sendCommandsBulk`` body without any command key is a 422 validation error;
* ``PUT`` connector models replaces each list that is present in the body and keeps the others,
  answering the updated connector;
* the device import reads a CSV ``file`` part with a header row (``serial`` required; ``name``,
  ``type`` -- a type code, name or id, default the first type --, ``description``,
  ``case_id`` optional), is all or nothing, and answers
  ``200 {"message", "total_devices_in_file", "created", "updated"}``.
"""

from __future__ import annotations

from .auth import AuthEndpoints
from .connectors import ConnectorEndpoints
from .devices import DeviceEndpoints
from .entities import EntityEndpoints
from .timeseries import SeriesEndpoints

__all__ = ["Handlers"]


class Handlers(AuthEndpoints, DeviceEndpoints, EntityEndpoints, SeriesEndpoints,
               ConnectorEndpoints):
    """Every endpoint, bound to one fleet and one set of counters."""
