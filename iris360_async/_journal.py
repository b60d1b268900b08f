"""The bulk journal's import path of earlier releases (the command line reads it from here).

The journal lives in :mod:`iris360_async._bulk.journal`.
"""

from ._bulk.journal import (
    INFLIGHT,
    NOT_SENT_PREFIX,
    Journal,
    JournalLockedError,
    JournalTarget,
    commands_digest,
    normalize_base_url,
    read_previous,
)

__all__ = [
    "INFLIGHT",
    "NOT_SENT_PREFIX",
    "Journal",
    "JournalLockedError",
    "JournalTarget",
    "commands_digest",
    "normalize_base_url",
    "read_previous",
]
