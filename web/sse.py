"""Server-sent events in the OpenAI style: one JSON object per event, `data: [DONE]` at the end, an
error mid-stream as an `{"error": ...}` event (the OpenAI SDK raises it), and a cleanup that runs
however the stream ends (finished, failed, or cancelled when the client disconnects).

A JSON event is framed by hand (`data: <json>\\n\\n`: msgspec's JSON has no raw line breaks), which
costs a fraction of a general SSE message's encoding; the server pays it for every token.

Every stream also keeps its connection alive and bounded (ServerSettings.sse_ping and
sse_send_timeout): a `: ping` comment goes out when nothing was sent for `sse_ping` seconds (a
request waiting in the queue, a long prefill), so that a proxy's read timeout does not cut it; a
client that takes no data for `sse_send_timeout` seconds is dropped and its request aborted. One
timer per stream does both, so a token costs no more than taking an uncontended lock (measured
against sse-starlette, whose task group and cancel scope per send cost more: see README)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import aclosing
from typing import Any

import msgspec
from litestar import Request
from litestar.response import ServerSentEventMessage, Stream
from litestar.response.base import ASGIResponse
from litestar.types import Message, Receive, Scope, Send

from .errors import APIError

DONE = b"data: [DONE]\n\n"
HEADERS = {"Cache-Control": "no-cache", "Connection": "keep-alive", "X-Accel-Buffering": "no"}
PING = {"type": "http.response.body", "body": b": ping\n\n", "more_body": True}

log = logging.getLogger("codellama.sse")


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

    return KeepAliveStream(stream(), media_type="text/event-stream", headers=HEADERS)


class KeepAliveStream(Stream):
    """A Litestar Stream whose sends go through a KeepAlive with the app's settings."""

    def to_asgi_response(self, app, request: Request, **kwargs) -> ASGIResponse:
        response = super().to_asgi_response(app, request, **kwargs)
        serving = getattr(request.app.state, "serving", None)
        if serving is None or not (serving.settings.sse_ping or serving.settings.sse_send_timeout):
            return response
        return KeepAlive(response, serving.settings.sse_ping, serving.settings.sse_send_timeout)


class StalledClient(Exception):
    """A send waited longer than the send timeout: the client reads nothing."""


class KeepAlive:
    """Wraps a streaming response's `send`: a timer every half period checks whether the stream
    has been quiet for `ping` seconds (then a ping is sent, under the same lock as the stream's
    own sends) or one of its sends has waited `send_timeout` seconds (then the stream's task is
    cancelled, the response ends without its last chunk, which makes the server close the
    connection, and the events' cleanup aborts the request)."""

    def __init__(self, response: ASGIResponse, ping: float, send_timeout: float):
        self.response, self.ping, self.send_timeout = response, ping, send_timeout
        self._period = min(t for t in (ping, send_timeout) if t) / 2

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        state = _Sends(send, asyncio.get_running_loop())
        timer = state.loop.call_later(self._period, self._tick, state)
        state.timer = timer
        try:
            await self.response(scope, receive, state.send)
        except BaseException as e:
            if not state.stalled or not _caused_by(e, StalledClient):
                raise
            log.warning("dropped a client that took no stream data for %g s", self.send_timeout)
            aclose = getattr(self.response.iterator, "aclose", None)
            if aclose is not None:
                await aclose()
        finally:
            state.finished = True
            state.timer.cancel()

    def _tick(self, state: "_Sends") -> None:
        if state.finished:
            return
        now = state.loop.time()
        if state.sending_since is not None:
            if self.send_timeout and now - state.sending_since >= self.send_timeout and not state.stalled:
                state.stalled = True
                state.task.cancel()
        elif self.ping and now - state.last >= self.ping and state.started:
            state.last = now
            state.loop.create_task(state.send_ping())
        state.timer = state.loop.call_later(self._period, self._tick, state)


class _Sends:
    """One stream's sends: when the last one ended, whether one is waiting, and its task."""

    def __init__(self, send: Send, loop: asyncio.AbstractEventLoop):
        self._send, self.loop = send, loop
        self.lock = asyncio.Lock()
        self.last = loop.time()
        self.sending_since: float | None = None
        self.task: asyncio.Task | None = None
        self.started = self.finished = self.stalled = False
        self.timer: asyncio.TimerHandle | None = None

    async def send(self, message: Message) -> None:
        self.task = asyncio.current_task()
        self.sending_since = self.loop.time()
        try:
            async with self.lock:
                self.started = True
                self.finished = message["type"] == "http.response.body" and not message.get("more_body", False)
                await self._send(message)
        except asyncio.CancelledError:
            if not self.stalled:
                raise
            self.task.uncancel()  # this cancellation is ours, and ends here as StalledClient
            raise StalledClient() from None
        finally:
            self.last, self.sending_since = self.loop.time(), None

    async def send_ping(self) -> None:
        async with self.lock:
            if self.started and not self.finished:
                try:
                    await self._send(PING)
                except (OSError, RuntimeError):  # the connection is gone: the stream's own send says so
                    pass


def _caused_by(error: BaseException, kind: type[BaseException]) -> bool:
    """`error` is `kind`, or a group (anyio's task groups raise them) holding only `kind`."""
    if isinstance(error, kind):
        return True
    inner = getattr(error, "exceptions", None)
    return bool(inner) and all(_caused_by(e, kind) for e in inner)
