"""Shapes shared by several API areas."""

from __future__ import annotations

from typing import Generic, TypeVar

import msgspec

__all__ = ["Page"]

T = TypeVar("T")


class Page(msgspec.Struct, Generic[T], frozen=True):
    """One page of a ``…/paginate`` endpoint: ``rows`` and the total ``count`` of matches."""

    rows: list[T]
    count: int
