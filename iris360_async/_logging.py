"""Package loggers and the filter that keeps credentials out of log records.

Loggers are named after their module under ``iris360_async`` and are silent unless the
application configures logging. Every record they emit passes :class:`SecretsFilter`, which
masks ``Authorization`` values, bearer tokens and token/password fields.
"""

from __future__ import annotations

import logging
import re

__all__ = ["SecretsFilter", "get_logger", "redact"]

_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"(?i)(authorization['\"]?\s*[:=]\s*['\"]?)(bearer\s+)?[^\s'\",}]+"), r"\1\2***"),
    (re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]+"), r"\1***"),
    (
        re.compile(
            r"(?i)(['\"]?(?:access_?token|refresh_?token|token|password)['\"]?\s*[:=]\s*['\"]?)"
            r"[^\s'\",}]+"
        ),
        r"\1***",
    ),
)


def redact(text: str) -> str:
    """``text`` with bearer tokens, ``Authorization`` values and token/password fields masked."""
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


class SecretsFilter(logging.Filter):
    """Masks credentials in a record's message (formatted with its arguments)."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken format string is the handler's business
            return True
        cleaned = redact(message)
        if cleaned != message or record.args:
            record.msg = cleaned
            record.args = None
        return True


_FILTER = SecretsFilter()


def get_logger(name: str) -> logging.Logger:
    """The logger ``name`` with the secrets filter installed (once)."""
    logger = logging.getLogger(name)
    if _FILTER not in logger.filters:
        logger.addFilter(_FILTER)
    return logger

