"""Server-sent events in the OpenAI style: one JSON object per event, `data: [DONE]` at the end, an
error mid-stream as an `{"error": ...}` event (the OpenAI SDK raises it), and a cleanup that runs
however the stream ends (finished, failed, or cancelled when the client disconnects)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import aclosing
from typing import Any

import msgspec
from litestar.response import ServerSentEvent, ServerSentEventMessage

from .errors import APIError

DONE = ServerSentEventMessage(data="[DONE]")


def json_event(obj: Any) -> ServerSentEventMessage:
    return ServerSentEventMessage(data=msgspec.json.encode(obj).decode())


def sse_response(events: AsyncIterator[Any], close: Callable[[], None], done: bool = True) -> ServerSentEvent:
    """Stream `events` (msgspec-encodable objects, sent as JSON, or ready ServerSentEventMessages);
    `close` runs when the stream ends in any way. `done=False` leaves out the `[DONE]` sentinel
    (llama.cpp's native routes and the pages have none)."""

    async def stream() -> AsyncIterator[ServerSentEventMessage]:
        try:
            try:
                async with aclosing(events):
                    async for obj in events:
                        yield obj if isinstance(obj, ServerSentEventMessage) else json_event(obj)
            except APIError as e:
                yield json_event(e.body())
            if done:
                yield DONE
        finally:
            close()

    return ServerSentEvent(stream())
