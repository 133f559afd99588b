"""Structured logging for every hyperfollow process.

One call, :func:`configure_logging`, routes both structlog loggers and the standard library's (uvicorn, rq,
kopf, alembic) through the same processors: JSON lines when stderr is not a terminal, readable console
output when it is. Secrets never reach a log line: values of secret-looking keys are masked, passwords in
URLs are masked, and the concrete secret values from the settings are replaced wherever they appear.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterable, MutableMapping
from typing import Any

import orjson
import structlog

__all__ = ["configure_logging", "get_logger", "redact_text"]

REDACTED = "***"
_SECRET_KEY_NAME = re.compile(r"(pass(word)?|secret|token|private[_-]?key|api[_-]?key|authorization)", re.I)
# scheme://user:password@host -> scheme://user:***@host
_URL_PASSWORD = re.compile(r"(?P<prefix>[a-z][a-z0-9+.-]*://[^:/@\s]*:)(?P<password>[^@\s/]+)(?=@)", re.I)
# 0x-prefixed 64-hex-digit strings are private keys (addresses are 40 digits)
_PRIVATE_KEY = re.compile(r"\b0x[0-9a-fA-F]{64}\b")

_known_secrets: list[str] = []


def redact_text(text: str) -> str:
    """Mask URL passwords, private-key-shaped strings and the registered secret values in `text`."""
    text = _URL_PASSWORD.sub(lambda m: m.group("prefix") + REDACTED, text)
    text = _PRIVATE_KEY.sub(REDACTED, text)
    for secret in _known_secrets:
        if secret in text:
            text = text.replace(secret, REDACTED)
    return text


def _redact_value(key: str, value: Any) -> Any:
    if isinstance(value, str):
        return REDACTED if _SECRET_KEY_NAME.search(key) and value else redact_text(value)
    if isinstance(value, dict):
        return {k: _redact_value(str(k), v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_redact_value(key, v) for v in value]
    if _SECRET_KEY_NAME.search(key) and value is not None and not isinstance(value, bool | int | float):
        return REDACTED
    return value


def _redact_processor(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key in list(event_dict):
        event_dict[key] = _redact_value(key, event_dict[key])
    return event_dict


def _json_dumps(obj: Any, **_: Any) -> str:
    return orjson.dumps(obj, default=str).decode()


def configure_logging(level: str = "INFO", fmt: str = "auto", *, secrets: Iterable[str | None] = (),
                      service: str | None = None) -> None:
    """Configure structlog and the standard library logging once per process.

    `secrets` are concrete secret values (admin token, secret key, keys) to mask wherever they appear.
    """
    _known_secrets[:] = sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True)
    use_json = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
    ]
    if service:
        shared.insert(0, lambda _l, _m, ev: {**ev, "service": service} if "service" not in ev else ev)
    renderer: Any = (structlog.processors.JSONRenderer(serializer=_json_dumps) if use_json
                     else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty()))
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, _redact_processor, renderer],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("httpx", "httpcore", "websockets.client", "websockets.server", "asyncio"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))


def get_logger(name: str | None = None) -> structlog.stdlib.BoundLogger:
    return structlog.stdlib.get_logger(name)
