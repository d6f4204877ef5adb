"""The engine work behind one HTTP request: one engine request per prompt, merged into one stream
of (prompt index, output delta), and ended exactly once, however the request ends.

    route -> Generation -> AsyncEngine.submit (per prompt) -> one mailbox -> SSE / JSON

It holds the request's admission slots, watches for the client going away, and can be ended
from outside (shutdown, a page's Stop button). Ending it aborts the engine requests before the
engine's next step."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from litestar import Response
from litestar.types import Receive

from inference import CompletionOutput, RequestOutput, SamplingParams
from inference.engine_front import OutputMailbox
from inference.requests import RequestState
from inference.prompts import Prompt

from .errors import APIError
from .protocol.common import PromptTokensDetails, Usage
from .sse import sse_response


@dataclass(frozen=True, slots=True)
class Part:
    """One prompt of a request and how to sample it."""

    prompt: Prompt
    params: SamplingParams


class ClientDisconnected(APIError):
    def __init__(self) -> None:
        super().__init__(499, "the client closed the connection", code="client_closed_request")


class Generation:
    def __init__(self, serving, parts: list[Part], receive: Receive | None, ability: str):
        self.id = uuid.uuid4().hex  # unguessable: the pages use it as the stream's address
        self.parts = parts
        self._serving = serving
        requests = self._make_requests()
        self._release = serving.admission.acquire(sum(p.params.n for p in parts))
        serving.accounting.count_request(ability)
        self._mailbox = OutputMailbox()
        self._unfinished = set(range(len(parts)))
        self.prompt_tokens = [0] * len(parts)
        self.cached_tokens = [0] * len(parts)
        self.output_tokens = [[0] * p.params.n for p in parts]
        self._closed = False
        self._end_reason: str | None = None
        serving.generations.add(self)
        self._tasks: list[asyncio.Task] = []
        for index, request in enumerate(requests):
            serving.engine.submit(request, self._mailbox.deliver_to(index))
        if receive is not None:
            self.watch(receive)

    def _make_requests(self) -> list[RequestState]:
        """Check every prompt before any starts, so that a bad request is an HTTP 400 before a
        stream's headers go out and leaves nothing running."""
        engine = self._serving.engine
        requests = []
        for index, part in enumerate(self.parts):
            # the recipe for a prompt of an ability: its stop tokens and strings join the request's
            params = part.prompt.sampling_params(part.params)
            try:
                requests.append(engine.make_request(self._request_id(index), part.prompt.token_ids, params,
                                                  part.prompt.continues_prompt))
            except ValueError as e:  # the engine's messages are written for the user
                raise APIError(400, str(e)) from None
        return requests

    def _request_id(self, index: int) -> str:
        return f"{self.id}-{index}"

    def watch(self, receive: Receive) -> None:
        """End when this connection's client goes away (a page's stream is fetched by a later
        request than the one that started the generation)."""
        self._tasks.append(asyncio.create_task(self._watch(receive)))

    async def _watch(self, receive: Receive) -> None:
        """The client went away: end now, even if no consumer ever iterates (a stream whose
        response never started), so that nothing waits for a `finally` that may not run."""
        while (await receive())["type"] != "http.disconnect":
            pass
        self.end(ClientDisconnected())
        self.close()

    def end(self, error: APIError) -> None:
        """End early: the engine requests are aborted now and the consumer gets `error` next."""
        if self._end_reason is None:
            self._end_reason = error.code or str(error.status_code)
        self._mailbox.put(None, error)
        self._abort_requests()

    def close(self) -> None:
        """Release everything; idempotent, synchronous (safe in any `finally`)."""
        if self._closed:
            return
        self._closed = True
        self._abort_requests()
        for task in self._tasks:
            if task is not asyncio.current_task():
                task.cancel()
        self._release()
        self._serving.generations.discard(self)
        if self._unfinished:
            self._serving.accounting.count_ended_early(self._end_reason or "closed")

    @property
    def closed(self) -> bool:
        return self._closed

    def _abort_requests(self) -> None:
        for index in self._unfinished:
            self._serving.engine.abort(self._request_id(index))

    # --- consuming ---------------------------------------------------------------------------------

    async def _next(self) -> tuple[int, RequestOutput]:
        index, out = await self._mailbox.get()
        if isinstance(out, APIError):
            raise out
        if isinstance(out, BaseException):  # validated already: this is the engine failing
            raise APIError(500, f"generation failed: {out}")
        self._account(index, out)
        return index, out

    def _account(self, index: int, out: RequestOutput) -> None:
        self.prompt_tokens[index] = len(out.prompt_token_ids)
        self.cached_tokens[index] = out.num_cached_tokens
        counts = self.output_tokens[index]
        for c in out.outputs:
            counts[c.index] += len(c.token_ids)
        if out.finished:
            self._unfinished.discard(index)
            self._serving.accounting.observe_request(out.metrics, len(out.prompt_token_ids), max(counts),
                                                     sum(counts))

    async def __aiter__(self) -> AsyncIterator[tuple[int, RequestOutput]]:
        while self._unfinished:
            yield await self._next()

    async def collect(self) -> list[RequestOutput]:
        """Run to the end; one RequestOutput per prompt with its whole completions."""
        merged: dict[int, RequestOutput] = {}
        async for index, delta in self:
            if index not in merged:
                merged[index] = RequestOutput(delta.request_id, delta.prompt, delta.prompt_token_ids,
                                              [CompletionOutput(i) for i in range(self.parts[index].params.n)],
                                              False, delta.metrics)
            merged[index].merge(delta)
        return [merged[i] for i in range(len(self.parts))]

    async def respond(self, stream: bool, events: Callable[["Generation"], AsyncIterator],
                      whole: Callable[[list[RequestOutput], Usage], object], done: bool = True):
        """The HTTP answer: the whole body, or an SSE stream of `events(self)` that owns this
        generation from then on (and closes it when it ends)."""
        if stream:
            return sse_response(events(self), close=self.close, done=done)
        try:
            return Response(whole(await self.collect(), self.usage()))
        finally:
            self.close()

    def usage(self) -> Usage:
        prompt = sum(self.prompt_tokens)
        completion = sum(map(sum, self.output_tokens))
        return Usage(prompt, completion, prompt + completion, PromptTokensDetails(sum(self.cached_tokens)))
