"""``python -m iris360_async.cli`` runs the ``iris360`` command."""

from __future__ import annotations

import sys

from . import main

if __name__ == "__main__":
    sys.exit(main())
