"""asyncio front of the engine: many concurrent `generate` streams over one batched loop.

    event loop                               engine thread
    submit(): queue "add"              --->  apply adds / aborts, step(), step(), ...
    each request's `deliver` callback  <---  one call_soon_threadsafe per step with all outputs

The scheduling loop runs on a thread of its own, so the GPU is kept fed however busy the event
loop is with HTTP; the event loop gets one callback per step, which hands each output straight to
its consumer's mailbox (no task in between: every wakeup per token costs the engine thread GIL
time). A consumer slower than the engine finds several steps' deltas in its mailbox and takes them
merged into one, so that a saturated server spends less per token exactly when it has least to
spare. An abort takes effect before the engine's next step.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections import deque
from collections.abc import AsyncIterator, Callable, Hashable
from functools import partial

from .engine import LLMEngine, RequestState
from .outputs import RequestOutput
from .sampling_params import SamplingParams

Deliver = Callable[[RequestOutput | BaseException], None]


class OutputMailbox:
    """The outputs of one or more requests, each filed under a key, taken in arrival order.
    Consecutive deltas under one key are taken merged into one; an exception ends its key."""

    def __init__(self) -> None:
        self._items: deque[tuple[Hashable, RequestOutput | BaseException]] = deque()
        self._ready = asyncio.Event()

    def deliver_to(self, key: Hashable) -> Deliver:
        return partial(self.put, key)

    def put(self, key: Hashable, item: RequestOutput | BaseException) -> None:
        self._items.append((key, item))
        self._ready.set()

    async def get(self) -> tuple[Hashable, RequestOutput | BaseException]:
        while not self._items:
            self._ready.clear()
            await self._ready.wait()
        key, item = self._items.popleft()
        items = self._items
        while isinstance(item, RequestOutput) and not item.finished and items and items[0][0] == key:
            later = items.popleft()[1]
            if isinstance(later, BaseException):
                item = later
            else:
                item.merge(later)
        return key, item


class AsyncEngine:
    def __init__(self, engine: LLMEngine):
        self.engine = engine
        self._consumers: dict[str, Deliver] = {}  # touched on the event loop only
        self._inbox: queue.SimpleQueue = queue.SimpleQueue()  # ("add", state) / ("abort", id), to the thread
        self._wake = threading.Event()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def start(self) -> None:
        self._start()

    def _start(self) -> None:
        if self._thread is None:
            self._loop = asyncio.get_running_loop()
            self._stopping = False
            self._thread = threading.Thread(target=self._run, name="engine-loop", daemon=True)
            self._thread.start()

    async def stop(self) -> None:
        """Stop stepping; requests still unfinished end with an error and free their blocks.
        The engine's other tensor-parallel ranks, if any, are stopped too."""
        if self._thread is not None:
            self._stopping = True
            self._wake.set()
            await asyncio.to_thread(self._thread.join)
            self._thread = None
        self._apply_inbox()
        unfinished = list(self.engine.requests)
        for request_id in unfinished:
            self.engine.abort(request_id)
        self._fail(list(self._consumers), RuntimeError("the engine stopped"))
        self.engine.shutdown()

    def submit(self, state: RequestState, deliver: Deliver) -> None:
        """Start a request made by `engine.make_request`; its output deltas are handed to
        `deliver` on the event loop (the last has `finished` set; an exception ends it instead).
        Call on the event loop."""
        if state.request_id in self._consumers:
            raise ValueError(f"request id {state.request_id!r} is already running")
        self._start()
        self._consumers[state.request_id] = deliver
        self._send(("add", state))

    async def generate(self, request_id: str, prompt: str | list[int], params: SamplingParams,
                       continues_prompt: bool = True) -> AsyncIterator[RequestOutput]:
        """Stream a request's output deltas; the last one has `finished` set. Raises ValueError
        for an invalid request before anything is queued. Leaving the iteration early (a client
        that went away) aborts the request."""
        if request_id in self._consumers:
            raise ValueError(f"request id {request_id!r} is already running")
        mailbox = OutputMailbox()
        self.submit(self.engine.make_request(request_id, prompt, params, continues_prompt),
                    mailbox.deliver_to(request_id))
        finished = False
        try:
            while not finished:
                _, item = await mailbox.get()
                if isinstance(item, BaseException):
                    raise item
                finished = item.finished
                yield item
        finally:
            if not finished:
                self.abort(request_id)

    def abort(self, request_id: str) -> None:
        """Stop a request (a no-op once it has finished); nothing more is delivered for it."""
        if self._consumers.pop(request_id, None) is not None:
            self._send(("abort", request_id))

    def _send(self, message: tuple) -> None:
        self._inbox.put(message)
        self._wake.set()

    # --- the engine thread -------------------------------------------------------------------------

    def _run(self) -> None:
        engine = self.engine
        while not self._stopping:
            self._apply_inbox()
            if not engine.has_unfinished:
                self._wake.wait()
                self._wake.clear()
                continue
            try:
                outputs = engine.step()
            except Exception as e:  # a failed step ends every request in it, not the server
                failed = list(engine.requests)
                for request_id in failed:
                    engine.abort(request_id)
                self._loop.call_soon_threadsafe(self._fail, failed, RuntimeError(f"engine step failed: {e!r}"))
                continue
            if outputs:
                self._loop.call_soon_threadsafe(self._deliver, outputs)

    def _apply_inbox(self) -> None:
        while True:
            try:
                kind, payload = self._inbox.get_nowait()
            except queue.Empty:
                return
            if kind == "add":
                self.engine.add(payload)
            else:
                self.engine.abort(payload)

    # --- back on the event loop --------------------------------------------------------------------

    def _deliver(self, outputs: list[RequestOutput]) -> None:
        consumers = self._consumers
        for out in outputs:
            deliver = consumers.get(out.request_id)
            if deliver is not None:
                if out.finished:
                    del consumers[out.request_id]
                deliver(out)

    def _fail(self, request_ids: list[str], error: Exception) -> None:
        for request_id in request_ids:
            deliver = self._consumers.pop(request_id, None)
            if deliver is not None:
                deliver(error)
