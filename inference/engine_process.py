"""The engine in a process of its own, behind the asyncio front (`EngineFront`): the server's
process keeps the HTTP work, the engine's process keeps the GPU fed, and neither waits on the
other's interpreter lock (with both in one process, 256 streams slowed the engine's host work
threefold).

    server process                                  engine process (engine_loop.py)
    submit() / abort() -- AddRequest / AbortRequest -->  apply, step(), step(), ...
    reader thread: _on_message on the event loop  <--  StepOutputs per step

Requests are checked in the server process (a bad one is a 400 before anything is sent) and
travel as EngineRequests; outputs travel without prompts. The engine process is started with
`spawn` (CUDA cannot be forked) and stops with the server; if it dies, its requests end with an
error and new ones fail at once."""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import signal
import threading
from multiprocessing.connection import Connection
from pathlib import Path

from .config import EngineConfig
from .engine import LLMEngine
from .engine_status import EngineGauges
from .engine_front import EngineFront, EngineGone
from .engine_loop import run_engine_loop
from .engine_messages import EngineFailedToStart, EngineReady, EngineStopped, StopEngine, ToEngine
from .process_guard import die_with_parent
from .tokenizer import Tokenizer

log = logging.getLogger("codellama.engine")


class EngineProcess(EngineFront):
    def __init__(self, model: str | Path | EngineConfig | None = None, **settings):
        """Start an engine process with `LLMEngine(config)` (the config made here from
        EngineConfig's fields); returns once it is ready, or raises what making the engine raised."""
        config = model if isinstance(model, EngineConfig) else EngineConfig(model, **settings)
        context = multiprocessing.get_context("spawn")
        self._conn, child_end = context.Pipe()
        # not a daemon: the engine starts tensor-parallel workers of its own
        self._process = context.Process(target=_engine_main, args=(child_end, config, os.getpid()),
                                        name="codellama-engine")
        self._process.start()
        child_end.close()
        try:
            message = self._conn.recv()
        except EOFError:
            message = EngineFailedToStart(RuntimeError(self._exited()))
        if isinstance(message, EngineFailedToStart):
            self._process.join()
            raise message.error
        tokenizer = Tokenizer(message.info.model_dir / "tokenizer.model")
        super().__init__(tokenizer, message.info)
        self._reader: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._gone: str | None = None  # why the engine can take no more requests

    @property
    def pid(self) -> int:
        """The engine process's id."""
        return self._process.pid

    async def start(self) -> None:
        if self._reader is None and self._gone is None:
            self._loop = asyncio.get_running_loop()
            self._reader = threading.Thread(target=self._read, name="engine-reader", daemon=True)
            self._reader.start()

    async def stop(self) -> None:
        if self._gone is None:
            self._send(StopEngine())
            self._gone = self._gone or "the engine stopped"
        if self._reader is not None:
            await asyncio.to_thread(self._reader.join)
            self._reader = None
        await asyncio.to_thread(self._process.join)
        self._fail(list(self._consumers), EngineGone(self._gone))

    @property
    def exitcode(self) -> int | None:
        """The engine process's exit code once it has ended; None while it runs."""
        return self._process.exitcode

    @property
    def failure(self) -> str | None:
        return self._gone

    def _send(self, message: ToEngine) -> None:
        try:
            self._conn.send(message)
        except OSError:  # the engine died before the reader thread noticed
            self._engine_gone(self._exited())

    # --- the reader thread, and back on the event loop ----------------------------------------------

    def _read(self) -> None:
        call = self._loop.call_soon_threadsafe
        while True:
            try:
                message = self._conn.recv()
            except (EOFError, OSError):
                call(self._engine_gone, self._exited())
                return
            if isinstance(message, EngineStopped):
                return
            call(self._on_message, message)

    def _exited(self) -> str:
        self._process.join()
        return f"the engine process exited (code {self._process.exitcode})"

    def _engine_gone(self, reason: str) -> None:
        """The engine died (it was not stopped): its requests end with an error, its gauges drop
        to an idle engine's (counters keep their totals), and whoever watches is told."""
        if self._gone is None:
            self._gone = reason
            log.error("%s; %d requests end with an error", reason, len(self._consumers))
            self._gauges = EngineGauges(free_blocks=self.info.num_blocks, stats=self._gauges.stats)
            for callback in self.on_death:
                callback(reason)
        self._fail(list(self._consumers), EngineGone(reason))


# --- the engine process --------------------------------------------------------------------------------

def _engine_main(conn: Connection, config: EngineConfig, parent: int) -> None:
    die_with_parent(parent)
    # Ctrl-C reaches every process of the terminal's group: the server decides when the engine stops
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        engine = LLMEngine(config)
    except BaseException as e:  # the server reports it as the engine's own error
        conn.send(EngineFailedToStart(e))
        return
    conn.send(EngineReady(engine.info))

    def receive(block: bool):
        if not conn.poll(None if block else 0):
            return None
        try:
            return conn.recv()
        except EOFError:  # the server is gone
            return StopEngine()

    try:
        run_engine_loop(engine, receive, conn.send)
    except OSError:  # the server is gone: nobody to send to
        pass
    finally:
        engine.shutdown()
