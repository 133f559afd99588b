"""Trader addresses: one canonical form (lowercase 0x + 40 hex digits) everywhere we store or compare them."""

from __future__ import annotations

import re

__all__ = ["ADDRESS_PATTERN", "InvalidAddress", "is_address", "normalise_address"]

#: The canonical form; the database enforces the same pattern with a CHECK constraint.
ADDRESS_PATTERN = re.compile(r"^0x[0-9a-f]{40}$")
_ANY_CASE = re.compile(r"^0x[0-9a-fA-F]{40}$")


class InvalidAddress(ValueError):
    """Not an EVM address (0x followed by 40 hexadecimal digits)."""


def is_address(value: object) -> bool:
    return isinstance(value, str) and _ANY_CASE.match(value.strip()) is not None


def normalise_address(value: object) -> str:
    """Return the canonical lowercase form of an address, or raise :class:`InvalidAddress`."""
    if not isinstance(value, str):
        raise InvalidAddress(f"address must be a string, got {type(value).__name__}")
    text = value.strip()
    if not _ANY_CASE.match(text):
        shown = text if len(text) <= 50 else text[:47] + "..."
        raise InvalidAddress(f"not an address (0x + 40 hex digits): {shown!r}")
    return text.lower()
