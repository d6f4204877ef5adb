"""The engine on a thread of this process, behind the asyncio front (`EngineFront`).

    event loop                            engine thread
    submit() / abort(): to the inbox --->  apply adds / aborts, step(), step(), ...
    _deliver(outputs)                <---  one call_soon_threadsafe per step

The scheduling loop runs on a thread of its own, so the GPU is kept fed while the event loop
serves HTTP; but the two share one interpreter lock. A server under heavy load runs the engine in
a process of its own instead (`EngineProcess`)."""

from __future__ import annotations

import asyncio
import queue
import threading

from .engine import EngineGauges, LLMEngine
from .engine_front import EngineFront
from .requests import RequestState


class AsyncEngine(EngineFront):
    def __init__(self, engine: LLMEngine):
        super().__init__()
        self.engine = engine
        self.tokenizer = engine.tokenizer
        self.info = engine.info
        self.request_maker = engine.request_maker  # safe to use while a step runs
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
        """Stop stepping; requests still unfinished end with an error and free their blocks.
        The engine's other tensor-parallel ranks, if any, are stopped too."""
        if self._thread is not None:
            self._stopping = True
            self._wake.set()
            await asyncio.to_thread(self._thread.join)
            self._thread = None
        self._apply_inbox()
        self.engine.abort_all()
        self._fail(list(self._consumers), RuntimeError("the engine stopped"))
        self.engine.shutdown()

    def gauges(self) -> EngineGauges:
        return self.engine.gauges()  # only ints and lengths: safe while the engine steps

    def _add(self, state: RequestState) -> None:
        self._send(("add", state))

    def _abort(self, request_id: str) -> None:
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
                failed = engine.abort_all()
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
