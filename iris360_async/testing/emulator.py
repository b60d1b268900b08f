"""The emulator's lifecycle: in the current event loop, in a background thread, in a process."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

from aiohttp import web

from .clock import EmulatorClock
from .config import EmulatorConfig, LatencyModel
from .endpoints import Handlers
from .faults import REDIRECT_TRAP, FaultInjector, FaultProfile
from .fleet import Fleet, stable_hash
from .server import Handler, Plumbing, Router
from .server_model import ServerModel, ServerModelSettings
from .stats import EmulatorStats
from .sync import CommandState
from .tokens import TokenAuthority, TokenPair

__all__ = ["EmulatorProcess", "EmulatorThread", "Iris360Emulator"]

_MAX_BODY = 64 * 1024 * 1024  # bytes accepted in one request body


class Iris360Emulator:
    """An IRIS360 server on 127.0.0.1 with a seeded fleet, faults and counters.

    Use it as an async context manager::

        async with Iris360Emulator(devices=10_000, seed=1) as emu:
            client = Iris360Client(base_url=emu.base_url, username=emu.username,
                                   password=emu.password, tenant=emu.tenant, scope=emu.scope)

    Args:
        config: a complete :class:`EmulatorConfig`; keyword arguments override its fields.
        **settings: any :class:`EmulatorConfig` field: ``host``, ``port`` (0 = random),
            ``devices``, ``seed``, ``username``, ``password``, ``tenant``, ``scope``,
            ``user_id``, ``no_ota_fraction``, ``extra_entities``, ``connectors``,
            ``token_ttl`` / ``refresh_ttl`` (seconds), ``series_start`` (epoch seconds),
            ``series_interval`` (seconds), ``clock_start`` (freeze the clock at this epoch
            second), ``latency`` (:class:`LatencyModel`), ``capacity`` (max requests processed
            at once), ``faults`` (initial global :class:`FaultProfile`), ``fault_seed``,
            ``auth_rate_limit`` (logins + refreshes per minute, ``None`` = unlimited),
            ``require_accept_json`` (Laravel's answers without ``Accept: application/json``),
            ``api_prefix`` and ``paths`` (:class:`EmulatorPaths` or the client's
            ``EndpointPaths``), ``sync_interval`` (emulated seconds between two connections
            of a device, when it confirms its pending commands: a number or a ``(shortest,
            longest)`` range; ``None`` = never), ``offline_fraction`` (devices that never
            connect), ``time_scale`` (emulated seconds per real second), ``server_model``
            (backend workers, queue and gateway in front of the bulk endpoint: a
            :class:`~.server_model.ServerModelSettings` or a preset name; its statistics in
            ``emu.server_model.stats``).
    """

    def __init__(self, config: EmulatorConfig | None = None, **settings: Any) -> None:
        if config is None:
            config = EmulatorConfig(**settings)
        elif settings:
            from dataclasses import replace

            config = replace(config, **settings)
        self.config = config
        self.clock = EmulatorClock(config.clock_start, time_scale=config.time_scale)
        self.fleet = Fleet(
            devices=config.devices, seed=config.seed, tenant=config.tenant, scope=config.scope,
            no_ota_fraction=config.no_ota_fraction, extra_entities=config.extra_entities,
            connectors=config.connectors, series_start=config.series_start,
            series_interval=config.series_interval, sync_interval=config.sync_range,
            offline_fraction=config.offline_fraction, tenants=config.tenants,
        )
        self.stats = EmulatorStats(self.fleet.ledger)
        user_hash = stable_hash(config.seed, config.username)
        subject = f"{user_hash:08x}-0000-4000-8000-{config.user_id:012d}"
        self.tokens = TokenAuthority(
            self.clock.real_speed(), subject=subject, access_ttl=config.token_ttl,
            refresh_ttl=config.refresh_ttl,
        )
        fault_seed = config.seed if config.fault_seed is None else config.fault_seed
        self._faults = FaultInjector(fault_seed)
        if config.faults is not None:
            self._faults.set(config.faults)
        self._plumbing = Plumbing(
            stats=self.stats, tokens=self.tokens, faults=self._faults, latency=config.latency,
            capacity=config.capacity, seed=config.seed,
            require_accept_json=config.require_accept_json,
        )
        self._handlers = Handlers(
            config=config, fleet=self.fleet, clock=self.clock, plumbing=self._plumbing
        )
        model = config.server_model
        self.server_model: ServerModel | None = (
            ServerModel(model) if isinstance(model, ServerModelSettings) else None
        )
        """The bulk endpoint's server model, when ``server_model`` is set (its ``stats``,
        ``reset()``; assign ``server_model.settings`` to change it while serving)."""
        self._runner: web.ServerRunner | None = None
        self._port: int | None = None

    # -- identity -----------------------------------------------------------------------------

    @property
    def username(self) -> str:
        """The user name (e-mail) the emulator accepts."""
        return self.config.username

    @property
    def password(self) -> str:
        """The password the emulator accepts."""
        return self.config.password

    @property
    def tenant(self) -> str:
        """The fleet's tenant."""
        return self.config.tenant

    @property
    def scope(self) -> str:
        """The fleet's main scope."""
        return self.config.scope

    @property
    def port(self) -> int:
        """The TCP port served (after start)."""
        if self._port is None:
            raise RuntimeError("the emulator is not running")
        return self._port

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT`` -- the host part; the API lives under :attr:`api_url`."""
        return f"http://{self.config.host}:{self.port}"

    @property
    def api_url(self) -> str:
        """``base_url`` plus the API prefix (``/api/public/v1``)."""
        return self.base_url + self.config.api_prefix

    def __repr__(self) -> str:
        where = self.base_url if self._port is not None else "not running"
        return f"<Iris360Emulator {where} devices={self.fleet.device_count}>"

    # -- runtime controls ---------------------------------------------------------------------

    @property
    def faults(self) -> FaultInjector:
        """The fault injector (``set``, ``clear``, ``reseed``)."""
        return self._faults

    def set_faults(self, profile: FaultProfile | None, endpoint: str | None = None) -> None:
        """Install ``profile`` for every endpoint (``endpoint=None``) or one endpoint key;
        ``None`` removes it. Takes effect for the next request."""
        self._faults.set(profile, endpoint)

    def clear_faults(self) -> None:
        """Remove every fault profile."""
        self._faults.clear()

    @property
    def latency(self) -> LatencyModel:
        """The latency model in force (assignable at runtime)."""
        return self._plumbing.latency

    @latency.setter
    def latency(self, model: LatencyModel) -> None:
        self._plumbing.latency = model

    def advance(self, seconds: float) -> None:
        """Move the emulator clock forward (tokens expire, newer data points appear)."""
        self.clock.advance(seconds)

    def revoke_tokens(self, *, refresh_tokens: bool = False) -> None:
        """Invalidate every access token issued so far (and refresh tokens if asked)."""
        self.tokens.revoke_all(refresh_tokens=refresh_tokens)

    def issue_token(self) -> TokenPair:
        """A valid token pair without a login request (not counted as a login)."""
        return self.tokens.issue()

    def acknowledge_commands(self, serial: str | None = None) -> None:
        """Confirm the pending commands of ``serial`` (of every device when ``None``) now, as if
        the devices had connected: ``pending`` clears, ``current_value`` takes the value sent."""
        self.fleet.ledger.acknowledge(serial)
        self.fleet.sync.acknowledge(serial, self.clock.now())

    def command_state(self, serial: str, command: str) -> CommandState:
        """What the entity of ``serial`` shows for ``command`` now (pending, values, when)."""
        return self.fleet.sync.state(serial, command, self.clock.now())

    # -- lifecycle ----------------------------------------------------------------------------

    def make_router(self) -> Router:
        """The request router: every endpoint under the API prefix."""
        cfg = self.config
        h = self._handlers
        route = self._plumbing.route
        prefix = cfg.api_prefix
        paths = cfg.paths
        router = Router()
        router.add("POST", prefix + paths.login, route("login", h.login, authenticated=False))
        router.add("POST", prefix + paths.refresh,
                   route("refresh", h.refresh, authenticated=False))
        router.add("POST", prefix + "/devices/paginate",
                   route("devices.paginate", h.devices_paginate))
        router.add("POST", prefix + "/devices/sendCommandsBulk",
                   route("devices.bulk", h.send_commands_bulk, on_receive=h.bulk_received))
        router.add("POST", prefix + paths.import_file, route("devices.import", h.import_file))
        router.add("POST", prefix + "/entities/paginate",
                   route("entities.paginate", h.entities_paginate))
        router.add("GET", prefix + "/last-data/entities/{urn:.+}",
                   route("entities.latest", h.entity_latest))
        router.add("POST", prefix + "/timeseries", route("timeseries", h.timeseries))
        router.add("POST", prefix + "/connectors/out/paginate",
                   route("connectors.paginate", h.connectors_paginate))
        router.add("PUT", prefix + paths.connector_models,
                   route("connectors.models", h.connector_models))
        router.add("GET", prefix + "/connectors/out/{id}",
                   route("connectors.get", h.connector_get))
        for method in ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"):
            router.add(method, REDIRECT_TRAP + "/{rest:.*}", self._plumbing.redirect_trap)
        return router

    async def start(self) -> None:
        """Start serving (idempotent)."""
        if self._runner is not None:
            return
        self._plumbing.bind_loop()
        loop = asyncio.get_running_loop()

        def make_request(
            message: Any, payload: Any, protocol: Any, writer: Any, task: Any
        ) -> web.BaseRequest:
            return web.BaseRequest(
                message, payload, protocol, writer, task, loop, client_max_size=_MAX_BODY
            )

        handler: Handler = self.make_router()
        if self.server_model is not None:
            handler = self.server_model.front(handler)
        server = web.Server(handler, request_factory=make_request, access_log=None)
        runner = web.ServerRunner(server, handle_signals=False, shutdown_timeout=0.5)
        await runner.setup()
        site = web.TCPSite(runner, self.config.host, self.config.port, reuse_address=True)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        addresses = runner.addresses
        self._port = int(addresses[0][1]) if addresses else self.config.port

    async def close(self) -> None:
        """Stop serving and close every connection (idempotent); a server model first lets
        its backend finish the requests it holds."""
        if self.server_model is not None and self._runner is not None:
            await self.server_model.drain()
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
        self._port = None

    async def __aenter__(self) -> Iris360Emulator:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


class EmulatorThread:
    """Runs an :class:`Iris360Emulator` in a background thread with its own event loop, for
    synchronous code::

        with EmulatorThread(devices=100) as emu:
            requests.post(emu.api_url + "/login", json={...})

    Controls that touch the emulator (``set_faults``, ``advance``, ...) may be called from the
    owning thread; counters in ``emu.stats`` are read without locking.

    Args:
        config / **settings: as for :class:`Iris360Emulator`.
    """

    def __init__(self, config: EmulatorConfig | None = None, **settings: Any) -> None:
        self.emulator = Iris360Emulator(config, **settings)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._stop: asyncio.Event | None = None

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._serve())
        except BaseException as exc:  # reported to the starting thread
            self._error = exc
            self._ready.set()
        finally:
            loop.close()

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        async with self.emulator:
            self._ready.set()
            await self._stop.wait()

    def start(self) -> Iris360Emulator:
        """Start the thread and wait until the emulator serves."""
        if self._thread is not None:
            return self.emulator
        self._thread = threading.Thread(target=self._run, name="iris360-emulator", daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            raise RuntimeError("the emulator failed to start") from self._error
        return self.emulator

    def stop(self) -> None:
        """Stop the emulator and join the thread."""
        thread, self._thread = self._thread, None
        if thread is None:
            return
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(stop.set)
        thread.join(timeout=10)

    def __enter__(self) -> Iris360Emulator:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class EmulatorProcess:
    """Runs the emulator in a child process (``python -m iris360_async.testing``), e.g. so a
    benchmark measures the client and the server on separate cores.

    Args:
        devices: fleet size.
        seed: fleet seed.
        cpu: pin the child process to this CPU (Linux only; ignored elsewhere).
        extra_args: further command-line options of ``python -m iris360_async.testing``.
        env: environment of the child (defaults to the current one).
        start_timeout: seconds to wait for the child to report its address.
    """

    def __init__(
        self,
        *,
        devices: int = 1000,
        seed: int = 1,
        cpu: int | None = None,
        extra_args: list[str] | None = None,
        env: Mapping[str, str] | None = None,
        start_timeout: float = 60.0,
    ) -> None:
        self._args = [
            sys.executable, "-m", "iris360_async.testing", "--port", "0", "--json",
            "--devices", str(devices), "--seed", str(seed), *(extra_args or []),
        ]
        self._cpu = cpu
        child_env = dict(env) if env is not None else dict(os.environ)
        # make this very copy of the package importable by the child, installed or not
        root = str(Path(__file__).resolve().parents[2])
        paths = [root, *filter(None, child_env.get("PYTHONPATH", "").split(os.pathsep))]
        child_env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
        self._env = child_env
        self._timeout = start_timeout
        self._proc: subprocess.Popen[str] | None = None
        self.info: dict[str, Any] = {}

    @property
    def pid(self) -> int:
        """The child's process id."""
        if self._proc is None:
            raise RuntimeError("the emulator process is not running")
        return self._proc.pid

    @property
    def base_url(self) -> str:
        """Host URL of the child emulator."""
        return str(self.info["base_url"])

    @property
    def username(self) -> str:
        """User name accepted by the child."""
        return str(self.info["username"])

    @property
    def password(self) -> str:
        """Password accepted by the child."""
        return str(self.info["password"])

    @property
    def tenant(self) -> str:
        """Tenant of the child's fleet."""
        return str(self.info["tenant"])

    @property
    def scope(self) -> str:
        """Scope of the child's fleet."""
        return str(self.info["scope"])

    def rss_bytes(self) -> int:
        """Resident memory of the child in bytes (Linux ``/proc``; 0 where unavailable)."""
        try:
            with open(f"/proc/{self.pid}/status", encoding="ascii") as fh:
                for line in fh:
                    if line.startswith("VmRSS:"):
                        return int(line.split()[1]) * 1024
        except OSError:
            return 0
        return 0

    def cpu_seconds(self) -> float:
        """User + system CPU time of the child in seconds (Linux ``/proc``; 0 elsewhere)."""
        try:
            with open(f"/proc/{self.pid}/stat", encoding="ascii") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
        except OSError:
            return 0.0
        ticks = os.sysconf("SC_CLK_TCK")
        return (int(fields[11]) + int(fields[12])) / ticks

    def start(self) -> EmulatorProcess:
        """Start the child and wait for its address line."""
        if self._proc is not None:
            return self
        proc = subprocess.Popen(
            self._args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
            env=self._env,
        )
        self._proc = proc
        if self._cpu is not None and hasattr(os, "sched_setaffinity"):
            os.sched_setaffinity(proc.pid, {self._cpu})
        result: list[str] = []
        reader = threading.Thread(
            target=lambda: result.append(proc.stdout.readline() if proc.stdout else ""),
            daemon=True,
        )
        reader.start()
        reader.join(self._timeout)
        if not result or not result[0].strip():
            self.stop()
            raise RuntimeError("the emulator process did not start")
        self.info = json.loads(result[0])
        return self

    def stop(self) -> None:
        """Terminate the child and wait for it."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()

    def __enter__(self) -> EmulatorProcess:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
