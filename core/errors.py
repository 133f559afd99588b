"""Errors the CLI turns into one line and an exit status instead of a traceback."""

from __future__ import annotations

__all__ = ["NotBuiltError", "not_built"]


class NotBuiltError(Exception):
    """The command exists in the design but is not implemented yet (exit status 3)."""


def not_built(command: str) -> None:
    raise NotBuiltError(f"`hyperfollow {command}` is not built yet")
