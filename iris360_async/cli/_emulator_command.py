"""``iris360 emulator``: serve the IRIS360 emulator until Ctrl-C."""

from __future__ import annotations

import shlex
from typing import TYPE_CHECKING

import anyio

from ._errors import EXIT_OK, CliError

if TYPE_CHECKING:
    from ._commands import Context
    from ._runtime import Interrupt

__all__ = ["run_emulator"]


async def run_emulator(ctx: Context, interrupt: Interrupt) -> int:
    from ..testing import Iris360Emulator, LatencyModel
    from ._demo import mild_faults, start_emulator

    args = ctx.args
    interrupt.message = None
    try:
        emulator = start_emulator(
            devices=args.devices,
            seed=args.seed,
            host=args.host,
            port=args.port,
            latency=LatencyModel(base=args.latency_ms / 1000.0),
        )
        if args.server_model is not None:
            emulator = Iris360Emulator(emulator.config, server_model=args.server_model)
    except ValueError as exc:
        raise CliError(str(exc)) from None
    try:
        async with emulator as emu:
            if args.faults == "mild":
                mild_faults(emu)
            out = ctx.stdout
            out.write(
                f"IRIS360 emulator: {args.devices:,} devices at {emu.base_url}"
                + (f" (server model {args.server_model})" if args.server_model else "")
                + "\n"
                "Paste into another shell:\n"
                f"  export IRIS360_BASE_URL={shlex.quote(emu.base_url)}\n"
                f"  export IRIS360_USERNAME={shlex.quote(emu.username)}\n"
                f"  export IRIS360_PASSWORD={shlex.quote(emu.password)}\n"
                f"  export IRIS360_TENANT={shlex.quote(emu.tenant)}\n"
                f"  export IRIS360_SCOPE={shlex.quote(emu.scope)}\n"
                "Press Ctrl-C to stop.\n"
            )
            out.flush()
            try:
                await anyio.sleep_forever()
            except BaseException:
                if not interrupt.consume():
                    raise
    except OSError as exc:
        raise CliError(f"cannot serve on {args.host}:{args.port}: {exc.strerror or exc}") from None
    ctx.stderr.write("iris360: emulator stopped\n")
    return EXIT_OK
