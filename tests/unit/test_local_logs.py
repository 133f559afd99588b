"""Service logs: what goes to NAME.log and NAME.error.log, rotation, tail and follow."""

from __future__ import annotations

import io
import queue
import threading
from pathlib import Path

import orjson

from hyperfollow.local.logs import LogSink, follow, is_attention_line, render_line, tail_lines


def record(level: str, event: str = "e") -> str:
    return orjson.dumps({"level": level, "event": event, "timestamp": "2026-01-02T03:04:05.6Z"}).decode()


def test_warnings_and_up_and_raw_stderr_need_attention() -> None:
    assert is_attention_line(record("warning"), from_stderr=True)
    assert is_attention_line(record("error"), from_stderr=False)
    assert is_attention_line(record("critical"), from_stderr=True)
    assert not is_attention_line(record("info"), from_stderr=True)
    assert not is_attention_line(record("debug"), from_stderr=True)
    assert is_attention_line("Traceback (most recent call last):", from_stderr=True)
    assert is_attention_line('{"no": "level"', from_stderr=True)  # broken JSON on stderr
    assert not is_attention_line("plain stdout line", from_stderr=False)
    assert not is_attention_line("   ", from_stderr=True)


def test_sink_writes_everything_to_the_log_and_the_rest_to_the_error_log(tmp_path: Path) -> None:
    sink = LogSink(tmp_path / "logs", "discovery")
    sink.pump(io.BytesIO(f"{record('info', 'a')}\n{record('warning', 'b')}\n".encode()), from_stderr=True).join()
    sink.pump(io.BytesIO(b"Traceback: boom\n"), from_stderr=True).join()
    sink.pump(io.BytesIO(b"hello from stdout"), from_stderr=False).join()
    sink.note("exited; restarting", level="warning", exit=1)
    sink.close()
    everything = (tmp_path / "logs" / "discovery.log").read_text().splitlines()
    errors = (tmp_path / "logs" / "discovery.error.log").read_text().splitlines()
    assert len(everything) == 5 and everything[3] == "hello from stdout"
    assert errors[:2] == [record("warning", "b"), "Traceback: boom"]
    last = orjson.loads(errors[2])
    assert (last["event"], last["service"], last["exit"], last["logger"]) == ("exited; restarting", "discovery", 1,
                                                                               "hyperfollow.up")


def test_a_log_over_its_size_is_rotated(tmp_path: Path) -> None:
    sink = LogSink(tmp_path, "api", max_bytes=100)
    for index in range(11):  # 29 bytes each: 4 lines fill a file
        sink.write_line(f"line {index:02d} ".encode() + b"x" * 20, from_stderr=False)
    sink.close()
    current = (tmp_path / "api.log").read_text().splitlines()
    previous = (tmp_path / "api.log.1").read_text().splitlines()
    assert [line.split()[1] for line in current] == ["08", "09", "10"]
    assert previous and int(previous[-1].split()[1]) == int(current[0].split()[1]) - 1


def test_tail_reads_the_last_lines_of_a_large_file(tmp_path: Path) -> None:
    path = tmp_path / "big.log"
    path.write_text("".join(f"{i}\n" for i in range(50_000)))
    assert tail_lines(path, 3, block=1000) == ["49997", "49998", "49999"]
    assert tail_lines(path, 0) == []
    short = tmp_path / "short.log"
    short.write_text("a\nb\n")
    assert tail_lines(short, 10) == ["a", "b"]


def test_follow_prints_new_lines_across_rotation(tmp_path: Path) -> None:
    path = tmp_path / "worker-1.log"
    path.write_text("old line\n")
    lines: queue.Queue[str] = queue.Queue()
    done = threading.Event()
    reader = threading.Thread(target=lambda: [lines.put(line) for line in follow(
        path, stop=done.is_set, poll_s=0.02, from_start=True)])
    reader.start()
    try:
        assert lines.get(timeout=5) == "old line"
        with path.open("a") as handle:
            handle.write("new 1\nnew ")
            handle.flush()
            handle.write("2\n")
        assert [lines.get(timeout=5), lines.get(timeout=5)] == ["new 1", "new 2"]  # whole lines only
        path.rename(tmp_path / "worker-1.log.1")
        path.write_text("after rotation\n")
        assert lines.get(timeout=5) == "after rotation"
        assert lines.empty()
    finally:
        done.set()
        reader.join(timeout=5)


def test_render_makes_json_lines_readable() -> None:
    line = orjson.dumps({"timestamp": "2026-01-02T03:04:05.678Z", "level": "warning", "event": "retrying",
                         "logger": "x.y", "service": "api", "delay": 2}).decode()
    assert render_line(line) == "03:04:05 WARNING  retrying  [x.y]  delay=2"
    assert render_line("plain text") == "plain text"
