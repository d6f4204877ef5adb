"""Server-sent events in the OpenAI style: one JSON object per event, `data: [DONE]` at the end, an
error mid-stream as an `{"error": ...}` event (the OpenAI SDK raises it), and a cleanup that runs
however the stream ends (finished, failed, or cancelled when the client disconnects).

A JSON event is framed by hand (`data: <json>\\n\\n`: msgspec's JSON has no raw line breaks), which
costs a fraction of a general SSE message's encoding; the server pays it for every token.

Every stream also keeps its connection alive and bounded (ServerSettings.sse_ping and
sse_send_timeout): a `: ping` comment goes out when nothing was sent for `sse_ping` seconds (a
request waiting in the queue, a long prefill), so that a proxy's read timeout does not cut it; a
client that takes no data for `sse_send_timeout` seconds is dropped and its request aborted. One
timer per stream does both, so a token only bumps a counter. sse-starlette does the same with a
task group per stream and a cancel scope per send: it cost the server process about 30 % more CPU
per token in `bench serve`, this about nothing (BENCHMARKS.md, "SSE keep-alive")."""

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
    """Wraps a streaming response's `send`. A timer every `period` seconds compares the number of
    sends with the last tick's: a stream that sent nothing for `ping` seconds gets a ping; one
    whose send has not returned for `send_timeout` seconds has its task cancelled (the response
    ends without its last chunk, so the server closes the connection, and the events' cleanup
    aborts the request). A send itself only counts and flags, so a token pays next to nothing.

    A ping may run beside the stream's own send: uvicorn writes each message whole, after
    waiting (in order) for the transport to drain, and no ping starts once the last chunk was
    handed over."""

    def __init__(self, response: ASGIResponse, ping: float, send_timeout: float):
        self.response, self.ping, self.send_timeout = response, ping, send_timeout
        self.period = min(t for t in (ping, send_timeout) if t) / 2

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        sends = _Sends(send)
        loop = asyncio.get_running_loop()
        timer = loop.call_later(self.period, self._tick, sends, loop)
        sends.timer = timer
        try:
            await self.response(scope, receive, sends.send)
        except BaseException as e:
            if not sends.stalled or not _caused_by(e, StalledClient):
                raise
            log.warning("dropped a client that took no stream data for %g s", self.send_timeout)
            aclose = getattr(self.response.iterator, "aclose", None)
            if aclose is not None:
                await aclose()
        finally:
            sends.finished = True
            sends.timer.cancel()

    def _tick(self, sends: "_Sends", loop: asyncio.AbstractEventLoop) -> None:
        if sends.finished:
            return
        moved, sends.seen = sends.count != sends.seen, sends.count
        sends.quiet_for = 0.0 if moved else sends.quiet_for + self.period
        if sends.in_send:
            if self.send_timeout and sends.quiet_for >= self.send_timeout:
                sends.stalled = True
                sends.task.cancel()
                return
        elif self.ping and sends.quiet_for >= self.ping and sends.started:
            sends.quiet_for = 0.0
            loop.create_task(sends.send_ping())
        sends.timer = loop.call_later(self.period, self._tick, sends, loop)


class _Sends:
    """One stream's sends: how many began, whether one is waiting, and the task sending."""

    def __init__(self, send: Send):
        self._send = send
        self.count = self.seen = 0
        self.quiet_for = 0.0  # seconds (in timer periods) since the count last moved
        self.in_send = self.started = self.finished = self.stalled = False
        self.task: asyncio.Task | None = None
        self.timer: asyncio.TimerHandle | None = None

    async def send(self, message: Message) -> None:
        self.count += 1
        self.started, self.task = True, asyncio.current_task()  # the body's sends run in a task of their own
        self.finished = message["type"] == "http.response.body" and not message.get("more_body", False)
        self.in_send = True
        try:
            await self._send(message)
        except asyncio.CancelledError:
            if not self.stalled:
                raise
            self.task.uncancel()  # this cancellation is ours, and ends here as StalledClient
            raise StalledClient() from None
        finally:
            self.in_send = False

    async def send_ping(self) -> None:
        if self.finished:
            return
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
