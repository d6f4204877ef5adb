"""What the engine returns: per-request outputs, their completions, logprobs and timings."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(slots=True)
class TokenLogprob:
    token_id: int
    logprob: float
    top: list[tuple[int, float]]  # the most likely tokens at this position, best first


@dataclass(slots=True)
class CompletionOutput:
    """One of a request's n completions. In a streamed delta, text / token_ids / logprobs hold
    only what is new since the previous delta."""

    index: int
    text: str = ""
    token_ids: list[int] = field(default_factory=list)
    finish_reason: str | None = None  # "stop", "length" or "abort" once finished
    logprobs: list[TokenLogprob] | None = None

    def extend(self, delta: "CompletionOutput") -> None:
        self.text += delta.text
        self.token_ids.extend(delta.token_ids)
        if delta.logprobs is not None:
            self.logprobs = (self.logprobs or []) + delta.logprobs
        self.finish_reason = delta.finish_reason or self.finish_reason


@dataclass(slots=True)
class RequestMetrics:
    arrival_time: float
    first_scheduled_time: float | None = None
    first_token_time: float | None = None
    last_token_time: float | None = None
    finished_time: float | None = None

    @property
    def ttft(self) -> float | None:
        return None if self.first_token_time is None else self.first_token_time - self.arrival_time

    def time_per_output_token(self, num_tokens: int) -> float | None:
        """Mean seconds between the output tokens after the first, of `num_tokens` generated;
        None before the second."""
        if num_tokens < 2 or self.first_token_time is None or self.last_token_time is None:
            return None
        span = self.last_token_time - self.first_token_time
        return span / (num_tokens - 1) if span > 0 else None


@dataclass(slots=True)
class EngineOutput:
    """What the engine sends for a request after a step: the new part of each of its completions
    that got a token (a delta), or, once merged, everything so far. The prompt stays with whoever
    made the request."""

    request_id: str
    outputs: list[CompletionOutput]
    finished: bool
    metrics: RequestMetrics
    num_cached_tokens: int = 0  # prompt tokens served from the prefix cache
    # with SamplingParams.prompt_logprobs: prompt tokens 1.. (the first has no logprob), in the
    # request's first delta
    prompt_logprobs: list[TokenLogprob] | None = None

    def merge(self, later: "EngineOutput") -> "EngineOutput":
        """Fold a later delta of the same request into this one and return it: the one way deltas
        are joined (a consumer that fell behind, a whole answer from its stream)."""
        by_index = {o.index: o for o in self.outputs}
        for delta in later.outputs:
            if delta.index in by_index:
                by_index[delta.index].extend(delta)
            else:
                by_index[delta.index] = delta
        if len(by_index) > len(self.outputs):
            self.outputs = sorted(by_index.values(), key=lambda o: o.index)
        self.finished = later.finished
        self.metrics = later.metrics
        self.prompt_logprobs = self.prompt_logprobs or later.prompt_logprobs
        self.num_cached_tokens = later.num_cached_tokens
        return self


@dataclass(slots=True)
class RequestOutput(EngineOutput):
    """An engine output with the request's prompt, as the Python API returns it."""

    prompt: str | None = None  # the text, when the prompt was given as text
    prompt_token_ids: list[int] = field(default_factory=list)

    @classmethod
    def of(cls, out: EngineOutput, prompt: str | list[int] | None, prompt_token_ids, **extra) -> "RequestOutput":
        return cls(out.request_id, out.outputs, out.finished, out.metrics, out.num_cached_tokens,
                   out.prompt_logprobs, prompt if isinstance(prompt, str) else None, list(prompt_token_ids), **extra)
