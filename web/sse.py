"""Server-sent events in the OpenAI style: one JSON object per event, `data: [DONE]` at the end, an
error mid-stream as an `{"error": ...}` event (the OpenAI SDK raises it), and a cleanup that runs
however the stream ends (finished, failed, or cancelled when the client disconnects).

A JSON event is framed by hand (`data: <json>\\n\\n`: msgspec's JSON has no raw line breaks), which
costs a fraction of a general SSE message's encoding; the server pays it for every token."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import aclosing
from typing import Any

import msgspec
from litestar.response import ServerSentEventMessage, Stream

from .errors import APIError

DONE = b"data: [DONE]\n\n"
HEADERS = {"Cache-Control": "no-cache", "Connection": "keep-alive", "X-Accel-Buffering": "no"}


def json_event(obj: Any) -> bytes:
    return b"data: " + msgspec.json.encode(obj) + b"\n\n"


def sse_response(events: AsyncIterator[Any], close: Callable[[], None], done: bool = True) -> Stream:
    """Stream `events` (msgspec-encodable objects, sent as JSON, or ready ServerSentEventMessages);
    `close` runs when the stream ends in any way. `done=False` leaves out the `[DONE]` sentinel
    (llama.cpp's native routes and the pages have none)."""

    async def stream() -> AsyncIterator[bytes]:
        try:
            try:
                async with aclosing(events):
                    async for obj in events:
                        yield obj.encode() if isinstance(obj, ServerSentEventMessage) else json_event(obj)
            except APIError as e:
                yield json_event(e.body())
            if done:
                yield DONE
        finally:
            close()

    return Stream(stream(), media_type="text/event-stream", headers=HEADERS)
