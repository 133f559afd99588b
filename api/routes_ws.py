"""`/ws/v1/updates`: the live event feed (the seed's `connection`, `trade_event` and `error` messages).

Query parameters (all optional): `trader`, `coin`, `event_type` (comma-separated lists, see
`hyperfollow.api.filters`) and `since` (a stream id: replay every event after it first, then go live).
A client may send `{"type": "ping"}` and gets `{"type": "pong", …}`.
"""

from __future__ import annotations

import asyncio
import contextlib

import orjson
from fastapi import APIRouter, WebSocket
from starlette.websockets import WebSocketDisconnect

from hyperfollow.api.fanout import Subscriber
from hyperfollow.api.filters import FilterError, parse_filter
from hyperfollow.api.messages import connection_frame, error_frame, pong_frame
from hyperfollow.api.metrics import WS_FRAMES_SENT
from hyperfollow.api.state import AppState, state_of
from hyperfollow.api.streams import format_stream_id, parse_stream_id
from hyperfollow.core.logging import get_logger

__all__ = ["CLOSE_BAD_REQUEST", "CLOSE_TRY_AGAIN", "ws_router"]

log = get_logger(__name__)

#: Close codes: a bad parameter (policy violation); a client dropped or refused for now (try again later).
CLOSE_BAD_REQUEST = 1008
CLOSE_TRY_AGAIN = 1013
_FEED_WAIT_S = 5.0


async def _pump(ws: WebSocket, subscriber: Subscriber) -> None:
    queue = subscriber.queue
    while True:
        event = await queue.get()
        if not subscriber.wants(event):
            continue  # already replayed
        await ws.send_text(event.frame)
        subscriber.last_sent = event.key or subscriber.last_sent
        WS_FRAMES_SENT.inc()


async def _receive(ws: WebSocket) -> None:
    """Answer pings; return when the client disconnects."""
    while True:
        message = await ws.receive()
        if message["type"] == "websocket.disconnect":
            return
        payload = message.get("text") or message.get("bytes") or b""
        try:
            kind = orjson.loads(payload).get("type")
        except (orjson.JSONDecodeError, AttributeError):
            kind = None
        if kind == "ping":
            await ws.send_text(pong_frame())
        else:
            await ws.send_text(error_frame("unsupported message: send {\"type\": \"ping\"}, or nothing",
                                           code="unsupported_message"))


async def _close_with(ws: WebSocket, frame: str, code: int) -> None:
    with contextlib.suppress(Exception):
        await ws.send_text(frame)
        await ws.close(code)


def ws_router() -> APIRouter:
    router = APIRouter()

    @router.websocket("/ws/v1/updates")
    async def updates(ws: WebSocket) -> None:
        state: AppState = state_of(ws)
        params = ws.query_params
        await ws.accept()
        try:
            event_filter = parse_filter(params.get("trader"), params.get("coin"), params.get("event_type"))
            since = parse_stream_id(params["since"]) if params.get("since") else None
        except (FilterError, ValueError) as exc:
            prefix = "" if isinstance(exc, FilterError) else "since: "
            await _close_with(ws, error_frame(prefix + str(exc), code="bad_parameter"), CLOSE_BAD_REQUEST)
            return

        fanout = state.fanout
        subscriber = fanout.subscribe(event_filter)  # first: live messages queue up while we replay
        try:
            await ws.send_text(connection_frame(filters=event_filter.describe()))
            if since is not None:
                if not await fanout.wait_subscribed(_FEED_WAIT_S):
                    await _close_with(ws, error_frame("the event feed is reconnecting to Redis; try again shortly",
                                                      code="feed_unavailable"), CLOSE_TRY_AGAIN)
                    return
                if await fanout.trimmed_after(since):
                    await ws.send_text(error_frame(
                        "some events after `since` may have been trimmed from the retained stream; read them "
                        "with GET /traders/{id}/events", code="resume_gap"))
                result = await fanout.replay(subscriber, since, ws.send_text, state.settings.ws_max_replay)
                if result.truncated:
                    last = format_stream_id(result.last)
                    await _close_with(ws, error_frame(f"replay limit reached; reconnect with since={last}",
                                                      code="replay_truncated", last_stream_id=last),
                                      CLOSE_TRY_AGAIN)
                    return
            await _serve(ws, subscriber, state.settings.ws_drop_grace_s, state.settings.ws_queue_size)
        except (WebSocketDisconnect, RuntimeError, OSError):
            pass  # the client went away mid-send
        finally:
            fanout.unsubscribe(subscriber)

    return router


async def _serve(ws: WebSocket, subscriber: Subscriber, grace_s: float, queue_size: int) -> None:
    sender = asyncio.create_task(_pump(ws, subscriber))
    receiver = asyncio.create_task(_receive(ws))
    dropped = asyncio.create_task(subscriber.dropped.wait())
    try:
        done, _ = await asyncio.wait({sender, receiver, dropped}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (sender, receiver, dropped):
            task.cancel()
        await asyncio.gather(sender, receiver, dropped, return_exceptions=True)
    for task in done - {dropped}:
        error = task.exception()
        if error is not None and not isinstance(error, WebSocketDisconnect | OSError | RuntimeError):
            log.error("WebSocket client handler failed", error=repr(error), client=str(ws.client))
    if dropped in done:
        last = format_stream_id(subscriber.last_sent) if subscriber.last_sent else None
        log.info("slow WebSocket client dropped", client=str(ws.client), last_stream_id=last)
        frame = error_frame(f"dropped: this client fell {queue_size} messages behind; reconnect with "
                            f"since=<last stream_id received> to resume", code="slow_client", last_stream_id=last)
        # the client is not reading: give it a while to take the frame, without holding anything else up
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(_close_with(ws, frame, CLOSE_TRY_AGAIN), grace_s)
