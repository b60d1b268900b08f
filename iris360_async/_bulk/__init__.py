"""The bulk command engine: one command set to any number of devices, exactly accounted.

The modules follow a job's data: :mod:`.intake` (input -> chunks), :mod:`.planner` (chunk
cuts), :mod:`.engine` (workers, dispatch, settling), :mod:`.classify` (answer -> outcomes),
:mod:`.journal` (resume); :mod:`.options` holds the job's options and :mod:`.jobs` the
functional entry points. The rules a job follows are written down in docs/bulk.md.
"""

from .classify import BulkItem, ErrorVerdict, classify_chunk, classify_exception, classify_item
from .engine import CommandDispatcher, SendChunk
from .jobs import send_commands, stream_commands
from .options import (
    MAX_CONCURRENCY,
    CancelCallback,
    JobOptions,
    ProgressCallback,
    resend_statuses,
)
from .planner import ChunkPlanner, body_base_size, plan_chunks, serial_size

__all__ = [
    "MAX_CONCURRENCY",
    "BulkItem",
    "CancelCallback",
    "ChunkPlanner",
    "CommandDispatcher",
    "ErrorVerdict",
    "JobOptions",
    "ProgressCallback",
    "SendChunk",
    "body_base_size",
    "classify_chunk",
    "classify_exception",
    "classify_item",
    "plan_chunks",
    "resend_statuses",
    "send_commands",
    "serial_size",
    "stream_commands",
]
