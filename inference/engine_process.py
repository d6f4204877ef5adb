"""The engine in a process of its own, behind the asyncio front (`EngineFront`): the server's
process keeps the HTTP work, the engine's process keeps the GPU fed, and neither waits on the
other's interpreter lock (with both in one process, 256 streams slowed the engine's host work
threefold).

    server process                               engine process
    submit() / abort() ---- ("add" | "abort") --->  apply, step(), step(), ...
    reader thread: _deliver on the event loop <---  ("step", outputs, gauges) per step

Requests are checked in the server process (a bad one is a 400 before anything is sent) and made
again by the engine from the same arguments. Outputs travel without their prompts, which the
front puts back. The engine process is started with `spawn` (CUDA cannot be forked) and stops
with the server; if it dies, its requests end with an error and new ones fail at once."""

from __future__ import annotations

import asyncio
import multiprocessing
import signal
import threading
from multiprocessing.connection import Connection

from .engine import EngineGauges, EngineStats, LLMEngine
from .engine_front import EngineFront
from .outputs import RequestOutput
from .requests import RequestMaker, RequestState
from .tokenizer import Tokenizer


class EngineProcess(EngineFront):
    def __init__(self, model=None, **engine_kwargs):
        """Start an engine process with `LLMEngine(model, **engine_kwargs)`; returns once it is
        ready, or raises what making the engine raised."""
        super().__init__()
        context = multiprocessing.get_context("spawn")
        self._conn, child_end = context.Pipe()
        # not a daemon: the engine starts tensor-parallel workers of its own
        self._process = context.Process(target=_engine_main, args=(child_end, model, engine_kwargs),
                                        name="codellama-engine")
        self._process.start()
        child_end.close()
        try:
            kind, payload = self._conn.recv()
        except EOFError:
            kind, payload = "error", RuntimeError(self._exited())
        if kind == "error":
            self._process.join()
            raise payload
        self.info = payload
        self.tokenizer = Tokenizer(self.info.model_dir / "tokenizer.model")
        config = self.info.config
        self.request_maker = RequestMaker(self.tokenizer, config.max_model_len, config.block_size,
                                          self.info.num_blocks)
        self._gauges = EngineGauges(0, 0, 0, self.info.num_blocks, 0.0, 0, 0, 0, EngineStats())
        self._prompts: dict[str, tuple[str | None, list[int]]] = {}  # what outputs travel without
        self._reader: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._gone: str | None = None  # why the engine can take no more requests

    async def start(self) -> None:
        if self._reader is None and self._gone is None:
            self._loop = asyncio.get_running_loop()
            self._reader = threading.Thread(target=self._read, name="engine-reader", daemon=True)
            self._reader.start()

    async def stop(self) -> None:
        if self._gone is None:
            self._post(("stop", None))
            self._gone = self._gone or "the engine stopped"
        if self._reader is not None:
            await asyncio.to_thread(self._reader.join)
            self._reader = None
        await asyncio.to_thread(self._process.join)
        self._fail(list(self._consumers), RuntimeError(self._gone))

    def gauges(self) -> EngineGauges:
        return self._gauges

    @property
    def failure(self) -> str | None:
        return self._gone

    def _add(self, state: RequestState) -> None:
        if self._gone is not None:
            self._fail([state.request_id], RuntimeError(self._gone))
            return
        self._prompts[state.request_id] = (state.prompt, state.prompt_token_ids)
        self._post(("add", (state.request_id, state.prompt_token_ids, state.params, state.continues_prompt,
                            state.metrics.arrival_time)))

    def _abort(self, request_id: str) -> None:
        self._prompts.pop(request_id, None)
        if self._gone is None:
            self._post(("abort", request_id))

    def _post(self, message: tuple) -> None:
        try:
            self._conn.send(message)
        except OSError:  # the engine died before the reader thread noticed
            self._engine_gone(self._exited())

    # --- the reader thread, and back on the event loop ----------------------------------------------

    def _read(self) -> None:
        call = self._loop.call_soon_threadsafe
        while True:
            try:
                kind, payload = self._conn.recv()
            except (EOFError, OSError):
                call(self._engine_gone, self._exited())
                return
            if kind == "step":
                call(self._on_step, *payload)
            elif kind == "failed":
                call(self._fail, *payload)
            else:  # "stopped"
                return

    def _on_step(self, outputs: list[RequestOutput], gauges: EngineGauges) -> None:
        self._gauges = gauges
        prompts = self._prompts
        for out in outputs:
            prompt = prompts.pop(out.request_id, None) if out.finished else prompts.get(out.request_id)
            if prompt is not None:
                out.prompt, out.prompt_token_ids = prompt
        self._deliver(outputs)

    def _exited(self) -> str:
        self._process.join()
        return f"the engine process exited (code {self._process.exitcode})"

    def _engine_gone(self, reason: str) -> None:
        if self._gone is None:
            self._gone = reason
        self._prompts.clear()
        self._fail(list(self._consumers), RuntimeError(reason))

    def _fail(self, request_ids: list[str], error: Exception) -> None:
        for request_id in request_ids:
            self._prompts.pop(request_id, None)
        super()._fail(request_ids, error)


# --- the engine process --------------------------------------------------------------------------------

def _engine_main(conn: Connection, model, engine_kwargs: dict) -> None:
    # Ctrl-C reaches every process of the terminal's group: the server decides when the engine stops
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        engine = LLMEngine(model, **engine_kwargs)
    except BaseException as e:  # the server reports it as the engine's own error
        conn.send(("error", e))
        return
    conn.send(("ready", engine.info))
    try:
        _serve(conn, engine)
    finally:
        engine.shutdown()


def _serve(conn: Connection, engine: LLMEngine) -> None:
    """Apply what the server sent, step while there is work, send each step's outputs back."""
    while True:
        changed = False
        # block for the next message when idle; otherwise take only what has arrived
        while conn.poll(None if not engine.has_unfinished and not changed else 0):
            try:
                kind, payload = conn.recv()
            except EOFError:  # the server is gone
                return
            if kind == "stop":
                engine.abort_all()
                conn.send(("stopped", None))
                return
            changed = True
            if kind == "abort":
                engine.abort(payload)
                continue
            request_id, token_ids, params, continues_prompt, arrival_time = payload
            try:
                state = engine.make_request(request_id, token_ids, params, continues_prompt)
            except ValueError as e:  # checked by the server already: only a mismatch gets here
                conn.send(("failed", ([request_id], RuntimeError(str(e)))))
                continue
            state.metrics.arrival_time = arrival_time
            engine.add(state)
        outputs = []
        if engine.has_unfinished:
            try:
                outputs = engine.step()
            except Exception as e:  # a failed step ends every request in it, not the server
                conn.send(("failed", (engine.abort_all(), RuntimeError(f"engine step failed: {e!r}"))))
        for out in outputs:  # the server has the prompts
            out.prompt, out.prompt_token_ids = None, []
        if outputs or changed:
            conn.send(("step", (outputs, engine.gauges())))
