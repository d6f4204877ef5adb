"""asyncio front of the engine: many concurrent `generate` streams over one batched loop.

Requests are validated on the caller's task, then handed to the loop, which applies additions
and aborts between steps and runs each step on a worker thread, so the event loop keeps serving
(HTTP, streaming) while the model computes. An abort takes effect before the next step.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor

from .engine import LLMEngine, RequestState
from .outputs import RequestOutput
from .sampling_params import SamplingParams


class EngineDeadError(RuntimeError):
    pass


class AsyncEngine:
    def __init__(self, engine: LLMEngine):
        self.engine = engine
        self._queues: dict[str, asyncio.Queue] = {}
        self._adds: list[RequestState] = []
        self._aborts: list[str] = []
        self._wake = asyncio.Event()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="engine-step")
        self._task: asyncio.Task | None = None
        self._error: BaseException | None = None

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._loop(), name="engine-loop")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        self._executor.shutdown(wait=True)

    @property
    def num_requests(self) -> int:
        return len(self._queues)

    async def generate(self, request_id: str, prompt: str | list[int], params: SamplingParams,
                       continues_prompt: bool = True) -> AsyncIterator[RequestOutput]:
        """Stream a request's output deltas; the last one has `finished` set. Raises ValueError
        for an invalid request before anything is queued. Leaving the iteration early (a client
        that went away) aborts the request."""
        if self._error is not None:
            raise EngineDeadError(f"the engine stopped after an error: {self._error}")
        if request_id in self._queues:
            raise ValueError(f"request id {request_id!r} is already running")
        state = self.engine.make_request(request_id, prompt, params, continues_prompt)
        await self.start()
        queue: asyncio.Queue = asyncio.Queue()
        self._queues[request_id] = queue
        self._adds.append(state)
        self._wake.set()
        finished = False
        try:
            while not finished:
                item = await queue.get()
                if isinstance(item, BaseException):
                    raise item
                finished = item.finished
                yield item
        finally:
            if not finished:
                self.abort(request_id)

    def abort(self, request_id: str) -> None:
        if self._queues.pop(request_id, None) is not None:
            self._aborts.append(request_id)
            self._wake.set()

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            self._apply_pending()
            if not self.engine.has_unfinished:
                self._wake.clear()
                await self._wake.wait()
                continue
            try:
                outputs = await loop.run_in_executor(self._executor, self.engine.step)
            except Exception as e:  # a failed step ends every request in it, not the server
                self._fail_all(e)
                continue
            for out in outputs:
                queue = self._queues.get(out.request_id)
                if queue is not None:
                    queue.put_nowait(out)
                    if out.finished:
                        del self._queues[out.request_id]

    def _apply_pending(self) -> None:
        adds, self._adds = self._adds, []
        for state in adds:
            if state.request_id in self._queues:  # not aborted while waiting to be added
                self.engine.add(state)
        aborts, self._aborts = self._aborts, []
        for request_id in aborts:
            self.engine.abort(request_id)

    def _fail_all(self, error: Exception) -> None:
        for request_id in list(self.engine.requests):
            self.engine.abort(request_id)
        for queue in self._queues.values():
            queue.put_nowait(RuntimeError(f"engine step failed: {error!r}"))
        self._queues.clear()
