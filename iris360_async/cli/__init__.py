"""The ``iris360`` command line.

Run ``iris360 --help`` for the commands. The entry point is :func:`main`; it returns the exit
code instead of exiting, so it can be called from Python and from tests::

    from iris360_async.cli import main
    code = main(["devices", "send-commands", "--serials-file", "serials.txt",
                 "--set", "w_ota=true", "--dry-run"])

Exit codes: ``0`` everything succeeded, ``1`` some devices ended ``rejected``/``failed``/
``unknown`` (for a resumed job also in an earlier run recorded in the journal), or the server
refused a request, ``2`` usage, connection or authentication errors, ``130`` interrupted with
Ctrl-C, ``143`` stopped with SIGTERM.
"""

from __future__ import annotations

from ._main import main

__all__ = ["main"]
