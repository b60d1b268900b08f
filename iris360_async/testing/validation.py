"""Request validation with the server's error shapes: Laravel's 422 body and FastAPI's detail."""

from __future__ import annotations

from collections.abc import Container
from typing import Any

__all__ = ["LaravelValidator", "laravel_boolean", "laravel_integer", "php_truthy"]


def _label(field: str) -> str:
    """Laravel's attribute label: ``paginationSize`` -> ``pagination size``."""
    out: list[str] = []
    for ch in field.replace("_", " "):
        if ch.isupper():
            out.append(" " + ch.lower())
        else:
            out.append(ch)
    return "".join(out).strip()


def laravel_integer(value: Any) -> int | None:
    """``value`` as Laravel's ``integer`` rule accepts it, else ``None``."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        text = value.strip()
        if text.lstrip("-").isdigit():
            return int(text)
    return None


def laravel_boolean(value: Any) -> bool | None:
    """``value`` as Laravel's ``boolean`` rule accepts it (true, false, 1, 0, "1", "0"), else
    ``None``."""
    if value is True or value is False:
        return bool(value)
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value in ("1", "0"):
        return value == "1"
    return None


def php_truthy(value: Any) -> bool:
    """PHP's loose truthiness: ``"false"`` is true; ``""``, ``"0"``, ``0``, ``null``, ``[]`` are
    false."""
    if value is None or value is False:
        return False
    if isinstance(value, str):
        return value not in ("", "0")
    if isinstance(value, (int, float)):
        return value != 0
    if isinstance(value, (list, dict)):
        return len(value) > 0
    return True


class LaravelValidator:
    """Collects rule failures and renders Laravel's 422 body.

    Args:
        data: the decoded JSON body.
    """

    def __init__(self, data: dict[str, Any]) -> None:
        self.data = data
        self.errors: dict[str, list[str]] = {}

    def fail(self, field: str, message: str) -> None:
        """Record ``message`` for ``field``."""
        self.errors.setdefault(field, []).append(message)

    def present(self, field: str) -> bool:
        """Laravel ``required``: present and not null / empty string / empty array."""
        value = self.data.get(field)
        return value is not None and value != "" and value != []

    def integer(self, field: str, *, required: bool, minimum: int | None = None) -> int | None:
        """Apply ``required|integer`` (or ``nullable|integer``) to ``field``."""
        if not self.present(field):
            if required:
                self.fail(field, f"The {_label(field)} field is required.")
            return None
        value = laravel_integer(self.data[field])
        if value is None:
            self.fail(field, f"The {_label(field)} field must be an integer.")
            return None
        if minimum is not None and value < minimum:
            self.fail(field, f"The {_label(field)} field must be at least {minimum}.")
        return value

    def boolean(self, field: str, *, required: bool) -> bool | None:
        """Apply ``required|boolean`` to ``field``."""
        if not self.present(field) and self.data.get(field) is not False:
            if required:
                self.fail(field, f"The {_label(field)} field is required.")
            return None
        value = laravel_boolean(self.data[field])
        if value is None:
            self.fail(field, f"The {_label(field)} field must be true or false.")
        return value

    def string(self, field: str, *, required: bool) -> str | None:
        """Apply ``required|string`` / ``nullable|string`` to ``field``."""
        if not self.present(field):
            if required:
                self.fail(field, f"The {_label(field)} field is required.")
            return None
        value = self.data[field]
        if not isinstance(value, str):
            self.fail(field, f"The {_label(field)} field must be a string.")
            return None
        return value

    def integer_list(
        self, field: str, *, allowed: Container[int] | None = None
    ) -> list[int] | None:
        """Apply ``sometimes|array`` + ``field.*: integer|exists`` to ``field``."""
        if field not in self.data:
            return None
        value = self.data[field]
        if not isinstance(value, list):
            self.fail(field, f"The {_label(field)} field must be an array.")
            return None
        out: list[int] = []
        for pos, item in enumerate(value):
            number = laravel_integer(item)
            name = f"{field}.{pos}"
            if number is None:
                self.fail(name, f"The {name} field must be an integer.")
            elif allowed is not None and number not in allowed:
                self.fail(name, f"The selected {name} is invalid.")
            else:
                out.append(number)
        return out

    @property
    def ok(self) -> bool:
        """Whether no rule failed."""
        return not self.errors

    def body(self) -> dict[str, Any]:
        """Laravel's body: the first message plus ``(and N more error[s])``, and every error."""
        messages = [m for msgs in self.errors.values() for m in msgs]
        message = messages[0]
        extra = len(messages) - 1
        if extra:
            message += f" (and {extra} more error{'s' if extra > 1 else ''})"
        return {"message": message, "errors": self.errors}
