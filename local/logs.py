"""Service logs of local mode: `logs/NAME.log` and `logs/NAME.error.log`, and `hyperfollow logs NAME [-f]`.

What goes where (every hyperfollow service writes JSON log lines to stderr, core/logging.py):

- `NAME.log` gets every line the service writes, stdout and stderr, plus the supervisor's own lines about it
  (started, exited, restarting), in order;
- `NAME.error.log` gets the subset that needs attention: log lines at level warning or above, and anything on
  stderr that is not a JSON log line (a traceback, an interpreter error, a crash message).

A file larger than `HYPERFOLLOW_UP_LOG_MAX_BYTES` is rotated to `NAME.log.1` (one old file is kept).
"""

from __future__ import annotations

import datetime as dt
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import orjson

__all__ = ["LogSink", "follow", "is_attention_line", "render_line", "tail_lines"]

ATTENTION_LEVELS = frozenset({"warning", "warn", "error", "critical", "exception", "fatal"})


def _parse(line: str) -> dict[str, Any] | None:
    text = line.strip()
    if not text.startswith("{"):
        return None
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


def is_attention_line(line: str, *, from_stderr: bool) -> bool:
    """Whether a line of a service's output also belongs in its error log."""
    record = _parse(line)
    if record is not None and "level" in record:
        return str(record["level"]).lower() in ATTENTION_LEVELS
    return from_stderr and bool(line.strip())


class _RotatingFile:
    def __init__(self, path: Path, max_bytes: int) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self._file: IO[bytes] = path.open("ab")

    def write(self, data: bytes) -> None:
        self._file.write(data)
        self._file.flush()
        if self.max_bytes and self._file.tell() >= self.max_bytes:
            self._file.close()
            os.replace(self.path, self.path.with_name(self.path.name + ".1"))
            self._file = self.path.open("ab")

    def close(self) -> None:
        self._file.close()


class LogSink:
    """The two log files of one service; safe to write from several threads (a pipe reader per stream)."""

    def __init__(self, directory: Path, name: str, max_bytes: int = 0) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.name = name
        self.path = directory / f"{name}.log"
        self.error_path = directory / f"{name}.error.log"
        self._all = _RotatingFile(self.path, max_bytes)
        self._errors = _RotatingFile(self.error_path, max_bytes)
        self._lock = threading.Lock()

    def write_line(self, line: bytes, *, from_stderr: bool) -> None:
        if not line.endswith(b"\n"):
            line += b"\n"
        text = line.decode("utf-8", errors="replace")
        attention = is_attention_line(text, from_stderr=from_stderr)
        with self._lock:
            self._all.write(line)
            if attention:
                self._errors.write(line)

    def note(self, event: str, *, level: str = "info", **fields: object) -> None:
        """A line from the supervisor about this service (JSON, like the services' own)."""
        record = {"timestamp": dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
                  "level": level, "logger": "hyperfollow.up", "service": self.name, "event": event, **fields}
        self.write_line(orjson.dumps(record, default=str), from_stderr=level in ATTENTION_LEVELS)

    def pump(self, stream: IO[bytes], *, from_stderr: bool) -> threading.Thread:
        """Copy `stream` (a child's pipe) line by line into the files, in a daemon thread, until EOF."""

        def run() -> None:
            with stream:
                for line in iter(stream.readline, b""):
                    self.write_line(line, from_stderr=from_stderr)

        thread = threading.Thread(target=run, name=f"log-{self.name}-{'err' if from_stderr else 'out'}",
                                  daemon=True)
        thread.start()
        return thread

    def close(self) -> None:
        with self._lock:
            self._all.close()
            self._errors.close()


def tail_lines(path: Path, count: int, block: int = 65_536) -> list[str]:
    """The last `count` lines of a file, reading from its end (a log may be large)."""
    if count <= 0:
        return []
    with path.open("rb") as handle:
        handle.seek(0, os.SEEK_END)
        position = handle.tell()
        data = b""
        while position > 0 and data.count(b"\n") <= count:
            step = min(block, position)
            position -= step
            handle.seek(position)
            data = handle.read(step) + data
    lines = data.decode("utf-8", errors="replace").splitlines()
    return lines[-count:]


def follow(path: Path, *, stop: Callable[[], bool] = lambda: False, poll_s: float = 0.25,
           from_start: bool = False) -> Iterator[str]:
    """Yield lines appended to `path` from now on (like `tail -F`): survives rotation and truncation, and
    waits for a file that does not exist yet."""
    handle: IO[bytes] | None = None
    inode: int | None = None
    pending = b""
    first = True
    try:
        while not stop():
            if handle is None:
                try:
                    handle = path.open("rb")
                except FileNotFoundError:
                    time.sleep(poll_s)
                    continue
                inode = os.fstat(handle.fileno()).st_ino
                if first and not from_start:
                    handle.seek(0, os.SEEK_END)
                first = False
            chunk = handle.read()
            if chunk:
                pending += chunk
                *complete, pending = pending.split(b"\n")
                for line in complete:
                    yield line.decode("utf-8", errors="replace")
                continue
            try:
                current = os.stat(path)
            except FileNotFoundError:
                current = None
            if current is None or current.st_ino != inode or current.st_size < handle.tell():
                handle.close()
                handle = None  # rotated or truncated: read the new file from its start
                pending = b""
                continue
            time.sleep(poll_s)
    finally:
        if handle is not None:
            handle.close()


def render_line(line: str) -> str:
    """A JSON log line as `HH:MM:SS LEVEL event key=value …` for a terminal; other lines unchanged."""
    record = _parse(line)
    if record is None or "event" not in record:
        return line
    stamp = str(record.pop("timestamp", ""))
    clock = stamp[11:19] if len(stamp) >= 19 else stamp
    level = str(record.pop("level", "")).upper()
    event = str(record.pop("event", ""))
    record.pop("service", None)
    logger = record.pop("logger", None)
    exception = record.pop("exception", None)
    extras = " ".join(f"{key}={value}" for key, value in record.items())
    text = f"{clock} {level:<8} {event}"
    if logger:
        text += f"  [{logger}]"
    if extras:
        text += f"  {extras}"
    if exception:
        text += f"\n{exception}"
    return text
