"""``python -m iris360_async.testing``: run the emulator until interrupted.

Prints the base URL and the credentials it accepts (or one JSON line with ``--json``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
from collections.abc import Sequence

from .config import LatencyModel, parse_sync_interval
from .emulator import Iris360Emulator
from .faults import FaultProfile
from .server_model import PRESETS


def _sync_interval(text: str) -> tuple[float, float]:
    try:
        return parse_sync_interval(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m iris360_async.testing", description="Run the IRIS360 emulator."
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8360, help="0 picks a free port")
    p.add_argument("--devices", type=int, default=10_000)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--username", default=None)
    p.add_argument("--password", default=None)
    p.add_argument("--tenant", default=None)
    p.add_argument("--scope", default=None)
    p.add_argument("--token-ttl", type=float, default=300.0, help="seconds")
    p.add_argument("--latency-base", type=float, default=0.0, help="seconds per request")
    p.add_argument("--latency-per-item", type=float, default=0.0, help="seconds per item")
    p.add_argument("--latency-jitter", type=float, default=0.0, help="seconds")
    p.add_argument("--capacity", type=int, default=None, help="requests processed at once")
    p.add_argument("--error-rate", type=float, default=0.0, help="5xx before processing")
    p.add_argument("--rate-limit-rate", type=float, default=0.0, help="429 with Retry-After")
    p.add_argument("--drop-rate", type=float, default=0.0, help="responses lost after processing")
    p.add_argument("--no-ota-fraction", type=float, default=0.05)
    p.add_argument("--sync-interval", type=_sync_interval, default=None, metavar="MIN-MAX",
                   help="emulated time between two connections of a device, when it confirms "
                        "its pending commands, e.g. 1m-15m (default: devices never confirm)")
    p.add_argument("--offline-fraction", type=float, default=0.0,
                   help="share of the devices that never connect")
    p.add_argument("--time-scale", type=float, default=1.0,
                   help="emulated seconds per real second (60: a minute per second)")
    p.add_argument("--server-model", choices=sorted(PRESETS), default=None, metavar="PRESET",
                   help="backend workers, queue and gateway in front of the bulk endpoint: "
                        f"{', '.join(PRESETS)} (default: none)")
    p.add_argument("--server-model-scale", type=float, default=1.0, metavar="FACTOR",
                   help="multiply the server model's durations (0.25: four times quicker)")
    p.add_argument("--json", action="store_true", help="print one JSON line with the settings")
    return p


async def _serve(args: argparse.Namespace) -> None:
    settings: dict[str, object] = {}
    for name in ("username", "password", "tenant", "scope"):
        value = getattr(args, name)
        if value is not None:
            settings[name] = value
    faults = FaultProfile(
        error_rate=args.error_rate, rate_limit_rate=args.rate_limit_rate, drop_rate=args.drop_rate
    )
    model = None
    if args.server_model is not None:
        model = PRESETS[args.server_model]
        if args.server_model_scale != 1.0:
            model = model.scaled(args.server_model_scale)
    emu = Iris360Emulator(
        host=args.host, port=args.port, devices=args.devices, seed=args.seed,
        token_ttl=args.token_ttl, capacity=args.capacity, no_ota_fraction=args.no_ota_fraction,
        latency=LatencyModel(args.latency_base, args.latency_per_item, args.latency_jitter),
        faults=faults if faults.active else None, sync_interval=args.sync_interval,
        offline_fraction=args.offline_fraction, time_scale=args.time_scale,
        server_model=model, **settings,  # type: ignore[arg-type]
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    async with emu:
        if args.json:
            print(json.dumps({
                "base_url": emu.base_url, "api_url": emu.api_url, "username": emu.username,
                "password": emu.password, "tenant": emu.tenant, "scope": emu.scope,
                "devices": emu.fleet.device_count, "sync_interval": emu.config.sync_range,
                "offline_fraction": emu.config.offline_fraction,
                "time_scale": emu.config.time_scale, "server_model": args.server_model,
            }), flush=True)
        else:
            print(f"IRIS360 emulator serving {emu.base_url}", flush=True)
            print(f"  API root: {emu.api_url}")
            print(f"  username: {emu.username}")
            print(f"  password: {emu.password}")
            print(f"  tenant:   {emu.tenant}")
            print(f"  scope:    {emu.scope}")
            print(f"  devices:  {emu.fleet.device_count}")
            if args.server_model is not None:
                print(f"  server model: {args.server_model}")
            print("Press Ctrl+C to stop.", flush=True)
        await stop.wait()


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit code."""
    args = _parser().parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
