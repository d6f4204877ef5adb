"""A page's answer in two requests. The form's POST starts the generation, so that a bad request
or a full queue is answered at once (as a fragment), and returns the element whose htmx SSE
extension then GETs /playground/stream/{id} to stream it. Between the two the generation waits
here; if no browser comes for it within `claim_timeout` seconds it is ended.

The stream sends `token` events (the new text, escaped) and one `done` event (the finished
answer, rendered) on which the page closes its EventSource, so the browser never reconnects."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from litestar.response import ServerSentEventMessage, Stream

from inference.outputs import RequestMetrics

from ..errors import APIError
from ..generation import Generation
from ..sse import sse_response
from .render import verbatim


def stopped() -> APIError:
    return APIError(499, "Stopped.", code="stopped")


@dataclass(frozen=True, slots=True)
class PageAnswer:
    generation: Generation
    kind: str  # "chat", "infill", "complete" or "python": which finished form the page shows
    before: str = ""  # shown before the answer: the prompt, or the code before the hole
    after: str = ""  # shown after it: the code after the hole


@dataclass(frozen=True, slots=True)
class AnswerStats:
    tokens: int
    first_token_seconds: float | None
    tokens_per_second: float | None

    @classmethod
    def of(cls, tokens: int, metrics: RequestMetrics | None) -> AnswerStats:
        if metrics is None:
            return cls(tokens, None, None)
        per_token = metrics.time_per_output_token(tokens)
        return cls(tokens, metrics.ttft, 1 / per_token if per_token else None)


class PageStreams:
    def __init__(self, claim_timeout: float = 30.0):
        self.claim_timeout = claim_timeout
        self._answers: dict[str, PageAnswer] = {}
        self._unclaimed: dict[str, asyncio.TimerHandle] = {}

    def add(self, answer: PageAnswer) -> None:
        # forget answers whose stream never ran (the browser left before it started)
        self._answers = {k: a for k, a in self._answers.items() if not a.generation.closed}
        key = answer.generation.id
        self._answers[key] = answer
        self._unclaimed[key] = asyncio.get_running_loop().call_later(
            self.claim_timeout, self._end_unclaimed, key,
            APIError(408, "no browser came for the answer", code="not_claimed"))

    def claim(self, key: str) -> PageAnswer | None:
        """The answer to stream, once; None for an unknown, ended or already streaming one."""
        timer = self._unclaimed.pop(key, None)
        if timer is None:
            return None
        timer.cancel()
        return self._answers[key]

    def stop(self, key: str) -> bool:
        """The Stop button: end the answer now (its stream then sends what came so far)."""
        if key in self._unclaimed:
            self._unclaimed.pop(key).cancel()
            self._end_unclaimed(key, stopped())
            return True
        answer = self._answers.get(key)
        if answer is None:
            return False
        answer.generation.end(stopped())
        return True

    def _end_unclaimed(self, key: str, error: APIError) -> None:
        self._unclaimed.pop(key, None)
        generation = self._answers.pop(key).generation
        generation.end(error)
        generation.close()

    def stream(self, answer: PageAnswer, render_done: Callable[..., str]) -> Stream:
        """Stream a claimed answer; `render_done(answer, text, finish_reason, note, stats)` is the
        HTML of the finished answer."""
        generation = answer.generation

        def close() -> None:
            generation.close()
            self._answers.pop(generation.id, None)

        return sse_response(_events(answer, render_done), close=close, done=False)


async def _events(answer: PageAnswer, render_done: Callable[..., str]) -> AsyncIterator[ServerSentEventMessage]:
    generation = answer.generation
    text, finish_reason, note, metrics = "", None, None, None
    try:
        async for _, out in generation:
            completion = out.outputs[0]
            metrics = out.metrics
            if completion.text:
                text += completion.text
                yield ServerSentEventMessage(data=verbatim(completion.text), event="token")
            finish_reason = completion.finish_reason or finish_reason
    except APIError as e:  # stopped, client gone, shutting down, engine failure
        note = e.detail
    stats = AnswerStats.of(generation.output_tokens[0][0], metrics)
    yield ServerSentEventMessage(data=render_done(answer, text, finish_reason, note, stats), event="done")
