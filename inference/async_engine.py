"""The engine on a thread of this process, behind the asyncio front (`EngineFront`).

    event loop                              engine thread (engine_loop.py)
    submit() / abort(): to the inbox  --->  apply adds / aborts, step(), step(), ...
    _on_message(StepOutputs)          <---  one call_soon_threadsafe per step

The scheduling loop runs on a thread of its own, so the GPU is kept fed while the event loop
serves HTTP; but the two share one interpreter lock. A server under heavy load runs the engine in
a process of its own instead (`EngineProcess`)."""

from __future__ import annotations

import asyncio
import queue
import threading

from .engine import LLMEngine
from .engine_front import EngineFront, EngineGone
from .engine_loop import run_engine_loop
from .engine_messages import StopEngine, ToEngine


class AsyncEngine(EngineFront):
    def __init__(self, engine: LLMEngine):
        super().__init__(engine.tokenizer, engine.info)
        self.engine = engine
        self._inbox: queue.SimpleQueue[ToEngine] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None

    async def start(self) -> None:
        if self._thread is None:
            send = asyncio.get_running_loop().call_soon_threadsafe
            self._thread = threading.Thread(target=run_engine_loop, name="engine-loop", daemon=True,
                                            args=(self.engine, self._receive, lambda m: send(self._on_message, m)))
            self._thread.start()

    async def stop(self) -> None:
        """Stop stepping; requests still unfinished end with an error and free their blocks.
        The engine's other tensor-parallel ranks, if any, are stopped too."""
        if self._thread is not None:
            self._send(StopEngine())
            await asyncio.to_thread(self._thread.join)
            self._thread = None
        self.engine.abort_all()
        self._fail(list(self._consumers), EngineGone("the engine stopped"))
        self.engine.shutdown()

    def _send(self, message: ToEngine) -> None:
        self._inbox.put(message)

    def _receive(self, block: bool) -> ToEngine | None:
        try:
            return self._inbox.get(block)
        except queue.Empty:
            return None
