"""asyncio front of the engine: many concurrent `generate` streams over one batched loop.

    event loop                               engine thread
    generate(): validate, queue "add"  --->  apply adds / aborts, step(), step(), ...
    per-request asyncio.Queue          <---  one call_soon_threadsafe per step with all outputs

The scheduling loop runs on a thread of its own, so the GPU is kept fed however busy the event
loop is with HTTP; the event loop gets one callback per step. A consumer slower than the engine
finds several steps' deltas in its queue and takes them merged into one, so that a saturated
server spends less per token exactly when it has least to spare. An abort takes effect before
the engine's next step.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import AsyncIterator

from .engine import LLMEngine
from .outputs import RequestOutput
from .sampling_params import SamplingParams


class AsyncEngine:
    def __init__(self, engine: LLMEngine):
        self.engine = engine
        self._queues: dict[str, asyncio.Queue] = {}  # touched on the event loop only
        self._inbox: queue.SimpleQueue = queue.SimpleQueue()  # ("add", state) / ("abort", id), to the thread
        self._wake = threading.Event()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def start(self) -> None:
        if self._thread is None:
            self._loop = asyncio.get_running_loop()
            self._stopping = False
            self._thread = threading.Thread(target=self._run, name="engine-loop", daemon=True)
            self._thread.start()

    async def stop(self) -> None:
        """Stop stepping; requests still unfinished end with an error and free their blocks."""
        if self._thread is not None:
            self._stopping = True
            self._wake.set()
            await asyncio.to_thread(self._thread.join)
            self._thread = None
        self._apply_inbox()
        unfinished = list(self.engine.requests)
        for request_id in unfinished:
            self.engine.abort(request_id)
        self._fail(list(self._queues), RuntimeError("the engine stopped"))

    async def generate(self, request_id: str, prompt: str | list[int], params: SamplingParams,
                       continues_prompt: bool = True) -> AsyncIterator[RequestOutput]:
        """Stream a request's output deltas; the last one has `finished` set. Raises ValueError
        for an invalid request before anything is queued. Leaving the iteration early (a client
        that went away) aborts the request."""
        if request_id in self._queues:
            raise ValueError(f"request id {request_id!r} is already running")
        state = self.engine.make_request(request_id, prompt, params, continues_prompt)
        await self.start()
        outputs: asyncio.Queue = asyncio.Queue()
        self._queues[request_id] = outputs
        self._send(("add", state))
        finished = False
        try:
            while not finished:
                item = await outputs.get()
                while not isinstance(item, BaseException) and not item.finished and not outputs.empty():
                    later = outputs.get_nowait()
                    if isinstance(later, BaseException):
                        item = later
                    else:
                        item.merge(later)
                if isinstance(item, BaseException):
                    raise item
                finished = item.finished
                yield item
        finally:
            if not finished:
                self.abort(request_id)

    def abort(self, request_id: str) -> None:
        if self._queues.pop(request_id, None) is not None:
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
        for out in outputs:
            q = self._queues.get(out.request_id)
            if q is not None:
                q.put_nowait(out)
                if out.finished:
                    del self._queues[out.request_id]

    def _fail(self, request_ids: list[str], error: Exception) -> None:
        for request_id in request_ids:
            q = self._queues.pop(request_id, None)
            if q is not None:
                q.put_nowait(error)
