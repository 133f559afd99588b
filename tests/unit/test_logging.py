"""Logs are JSON when not on a terminal, and no secret reaches them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

from hyperfollow.core.logging import redact_text

SCRIPT = textwrap.dedent("""
    import logging
    from hyperfollow.core.logging import configure_logging, get_logger
    configure_logging("INFO", "auto", secrets=["tok-1234567890"], service="probe")
    log = get_logger("probe")
    log.info("connecting", url="postgresql://user:hunter2@db:5432/x", admin_token="tok-1234567890", n=3)
    log.info("sent header Authorization: Bearer tok-1234567890")
    logging.getLogger("uvicorn.error").warning("stdlib line with redis://:pw-abc@cache:6379/0")
    log.debug("hidden at INFO")
    key = "0x" + "ab" * 32
    log.info("signing", private_key=key, detail=f"key={key}")
""")


def run_probe() -> list[dict[str, object]]:
    env = {k: v for k, v in os.environ.items() if k != "LOG_LEVEL"}
    done = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stderr.splitlines() if line.strip()]


def test_json_lines_when_not_a_terminal_with_secrets_redacted() -> None:
    lines = run_probe()
    assert len(lines) == 4  # the debug line is filtered at INFO
    first = lines[0]
    assert first["event"] == "connecting" and first["service"] == "probe" and first["level"] == "info"
    assert first["url"] == "postgresql://user:***@db:5432/x"
    assert first["admin_token"] == "***"
    assert first["n"] == 3
    assert "tok-1234567890" not in json.dumps(lines)
    assert "hunter2" not in json.dumps(lines) and "pw-abc" not in json.dumps(lines)
    assert lines[2]["logger"] == "uvicorn.error" and "redis://:***@cache" in str(lines[2]["event"])
    assert "ab" * 32 not in json.dumps(lines)
    assert "timestamp" in first


def test_redact_text_keeps_addresses() -> None:
    address = "0x" + "12" * 20
    assert redact_text(f"trader {address}") == f"trader {address}"
    assert redact_text("https://user:pw@host/x") == "https://user:***@host/x"
