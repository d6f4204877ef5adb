"""What a server holds of its engine, wherever the engine runs (a thread of this process:
`AsyncEngine`; a process of its own: `EngineProcess`): the tokenizer and the engine's fixed facts,
request checking, and streams of output deltas on the event loop.

    make_request(): checked EngineRequest
    submit() / abort()  ---- AddRequest / AbortRequest --->  engine loop (engine_loop.py)
    each request's `deliver`  <--- StepOutputs / RequestsFailed, on the event loop

Outputs go straight to each request's consumer (no task in between: with hundreds of streams,
every wakeup per token is time the server cannot spend elsewhere). A consumer slower than the
engine finds several steps' deltas in its mailbox and takes them merged into one, so that a
saturated server spends less per token exactly when it has least to spare."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Callable, Hashable
from functools import partial

from .engine_status import EngineGauges, EngineInfo
from .engine_messages import (AbortRequest, AddRequest, FromEngine, RequestsFailed, StepOutputs, ToEngine)
from .outputs import EngineOutput, RequestOutput
from .requests import EngineRequest, RequestMaker
from .sampling_params import SamplingParams
from .tokenizer import Tokenizer

Deliver = Callable[[EngineOutput | BaseException], None]


class EngineGone(RuntimeError):
    """The engine stopped or died and can take no more requests; the message says why, in words
    fit to show a client."""


class OutputMailbox:
    """The outputs of one or more requests, each filed under a key, taken in arrival order.
    Consecutive deltas under one key are taken merged into one; an exception ends its key."""

    def __init__(self) -> None:
        self._items: deque[tuple[Hashable, EngineOutput | BaseException]] = deque()
        self._ready = asyncio.Event()

    def deliver_to(self, key: Hashable) -> Deliver:
        return partial(self.put, key)

    def put(self, key: Hashable, item: EngineOutput | BaseException) -> None:
        self._items.append((key, item))
        self._ready.set()

    async def get(self) -> tuple[Hashable, EngineOutput | BaseException]:
        while not self._items:
            self._ready.clear()
            await self._ready.wait()
        key, item = self._items.popleft()
        items = self._items
        while isinstance(item, EngineOutput) and not item.finished and items and items[0][0] == key:
            later = items.popleft()[1]
            item = later if isinstance(later, BaseException) else item.merge(later)
        return key, item


class EngineFront:
    """The shared half of the engine fronts; a subclass carries messages to its engine loop
    (`_send`) and calls `_on_message` on the event loop with what comes back."""

    def __init__(self, tokenizer: Tokenizer, info: EngineInfo) -> None:
        self.tokenizer = tokenizer
        self.info = info
        self.request_maker = RequestMaker(tokenizer, info.config, info.num_blocks)
        self._gauges = EngineGauges(free_blocks=info.num_blocks)
        self._consumers: dict[str, Deliver] = {}  # touched on the event loop only
        self.on_death: list[Callable[[str], None]] = []  # called on the event loop if the engine dies

    async def start(self) -> None:
        raise NotImplementedError

    async def stop(self) -> None:
        """Stop the engine; requests still unfinished end with an error."""
        raise NotImplementedError

    def _send(self, message: ToEngine) -> None:
        raise NotImplementedError

    @property
    def failure(self) -> str | None:
        """Why the engine can take no more requests (it died or stopped); None while it can."""
        return None

    def gauges(self) -> EngineGauges:
        """The engine's numbers after its last step."""
        return self._gauges

    def make_request(self, request_id: str, prompt: str | list[int], params: SamplingParams,
                     continues_prompt: bool = True) -> EngineRequest:
        """Check and tokenize a request (ValueError with a message for the user); see
        `RequestMaker.make`."""
        return self.request_maker.make(request_id, prompt, params, continues_prompt)

    def submit(self, request: EngineRequest, deliver: Deliver) -> None:
        """Start a request made by `make_request`; its output deltas are handed to `deliver` on
        the event loop (the last has `finished` set; an exception ends it instead). Call on the
        event loop, after `start`."""
        if request.request_id in self._consumers:
            raise ValueError(f"request id {request.request_id!r} is already running")
        if self.failure is not None:
            deliver(EngineGone(self.failure))
            return
        self._consumers[request.request_id] = deliver
        self._send(AddRequest(request))

    def abort(self, request_id: str) -> None:
        """Stop a request (a no-op once it has finished); nothing more is delivered for it. It
        takes effect before the engine's next step."""
        if self._consumers.pop(request_id, None) is not None and self.failure is None:
            self._send(AbortRequest(request_id))

    async def generate(self, request_id: str, prompt: str | list[int], params: SamplingParams,
                       continues_prompt: bool = True) -> AsyncIterator[RequestOutput]:
        """Stream a request's output deltas; the last one has `finished` set. Raises ValueError
        for an invalid request before anything is queued. Leaving the iteration early (a client
        that went away) aborts the request."""
        request = self.make_request(request_id, prompt, params, continues_prompt)
        await self.start()
        mailbox = OutputMailbox()
        self.submit(request, mailbox.deliver_to(request_id))
        finished = False
        try:
            while not finished:
                _, item = await mailbox.get()
                if isinstance(item, BaseException):
                    raise item
                finished = item.finished
                yield RequestOutput.of(item, prompt, request.prompt_token_ids)
        finally:
            if not finished:
                self.abort(request_id)

    # --- on the event loop, with what the engine sent back ----------------------------------------

    def _on_message(self, message: FromEngine) -> None:
        if isinstance(message, StepOutputs):
            self._gauges = message.gauges
            consumers = self._consumers
            for out in message.outputs:
                deliver = consumers.get(out.request_id)
                if deliver is not None:
                    if out.finished:
                        del consumers[out.request_id]
                    deliver(out)
        elif isinstance(message, RequestsFailed):
            self._fail(message.request_ids, RuntimeError(message.error))

    def _fail(self, request_ids: list[str], error: Exception) -> None:
        for request_id in request_ids:
            deliver = self._consumers.pop(request_id, None)
            if deliver is not None:
                deliver(error)
