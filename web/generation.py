"""The engine work behind one HTTP request: one engine request per prompt, merged into one stream
of (prompt index, output delta), and ended exactly once, however the request ends.

    route -> Generation -> EngineFront.submit (per prompt) -> one mailbox -> SSE / JSON

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

from inference import EngineOutput, RequestOutput, SamplingParams
from inference.engine_front import EngineGone, OutputMailbox
from inference.prompts import Prompt
from inference.requests import EngineRequest

from .errors import APIError, internal_error
from .protocol.common import PromptTokensDetails, Usage
from .sse import sse_response


@dataclass(frozen=True, slots=True)
class SampledPrompt:
    """One prompt of a request and how to sample it."""

    prompt: Prompt
    params: SamplingParams


class ClientDisconnected(APIError):
    def __init__(self) -> None:
        super().__init__(499, "the client closed the connection", code="client_closed_request")


class Generation:
    def __init__(self, serving, prompts: list[SampledPrompt], receive: Receive | None, ability: str):
        self.id = uuid.uuid4().hex  # unguessable: the pages use it as the stream's address
        self.prompts = prompts
        self._serving = serving
        self.requests = self._make_requests()
        self._release = serving.admission.acquire(sum(p.params.n for p in prompts))
        serving.accounting.count_request(ability)
        self._mailbox = OutputMailbox()
        self._num_finished = 0  # prompts whose engine request has finished
        self.cached_tokens = [0] * len(prompts)
        self.output_tokens = [[0] * p.params.n for p in prompts]
        self._closed = False
        self._end_reason: str | None = None
        serving.generations.add(self)
        self._tasks: list[asyncio.Task] = []
        for index, request in enumerate(self.requests):
            serving.front.submit(request, self._mailbox.deliver_to(index))
        if receive is not None:
            self.watch(receive)

    def _make_requests(self) -> list[EngineRequest]:
        """Check every prompt before any starts, so that a bad request is an HTTP 400 before a
        stream's headers go out and leaves nothing running."""
        front = self._serving.front
        requests = []
        for index, sampled in enumerate(self.prompts):
            # the recipe for a prompt of an ability: its stop tokens and strings join the request's
            params = sampled.prompt.sampling_params(sampled.params)
            try:
                requests.append(front.make_request(self._request_id(index), sampled.prompt.token_ids, params,
                                                   sampled.prompt.continues_prompt))
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
        if self._num_finished < len(self.prompts):
            self._serving.accounting.count_ended_early(self._end_reason or "closed")

    @property
    def closed(self) -> bool:
        return self._closed

    def _abort_requests(self) -> None:
        for index in range(len(self.prompts)):  # (a no-op for those that have finished)
            self._serving.front.abort(self._request_id(index))

    # --- consuming ---------------------------------------------------------------------------------

    async def _next(self) -> tuple[int, EngineOutput]:
        index, out = await self._mailbox.get()
        if isinstance(out, APIError):
            raise out
        if isinstance(out, EngineGone):  # it died (its reason is fit to show) or stopped
            raise APIError(500, f"generation failed: {out}", code="engine_unavailable")
        if isinstance(out, BaseException):  # validated already: the engine failed, its details are for the log
            raise internal_error("the engine failed while generating", out, code="engine_error")
        self._account(index, out)
        return index, out

    def _account(self, index: int, out: EngineOutput) -> None:
        self.cached_tokens[index] = out.num_cached_tokens
        counts = self.output_tokens[index]
        for c in out.outputs:
            counts[c.index] += len(c.token_ids)
        if out.finished:
            self._num_finished += 1
            self._serving.accounting.observe_request(out.metrics, len(self.requests[index].prompt_token_ids),
                                                     max(counts), sum(counts))

    async def __aiter__(self) -> AsyncIterator[tuple[int, EngineOutput]]:
        while self._num_finished < len(self.prompts):
            yield await self._next()

    async def collect(self) -> list[RequestOutput]:
        """Run to the end; one RequestOutput per prompt with its whole completions."""
        merged: dict[int, EngineOutput] = {}
        async for index, delta in self:
            merged[index] = merged[index].merge(delta) if index in merged else delta
        return [RequestOutput.of(merged[i], None, self.requests[i].prompt_token_ids) for i in range(len(self.prompts))]

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
        prompt = sum(len(r.prompt_token_ids) for r in self.requests)
        completion = sum(map(sum, self.output_tokens))
        return Usage(prompt, completion, prompt + completion, PromptTokensDetails(sum(self.cached_tokens)))
