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


@dataclass(slots=True)
class RequestOutput:
    request_id: str
    prompt: str | None
    prompt_token_ids: list[int]
    outputs: list[CompletionOutput]
    finished: bool
    metrics: RequestMetrics
    num_cached_tokens: int = 0  # prompt tokens served from the prefix cache
    # with SamplingParams.prompt_logprobs: prompt tokens 1.. (the first has no logprob), in the
    # request's first delta
    prompt_logprobs: list[TokenLogprob] | None = None

    def merge(self, later: "RequestOutput") -> None:
        """Fold a later delta of the same request into this one (a consumer that fell behind gets
        one delta for several steps)."""
        by_index = {o.index: o for o in self.outputs}
        for delta in later.outputs:
            if delta.index in by_index:
                by_index[delta.index].extend(delta)
            else:
                self.outputs.append(delta)
                by_index[delta.index] = delta
        self.finished = later.finished
        self.metrics = later.metrics
        self.prompt_logprobs = self.prompt_logprobs or later.prompt_logprobs
        self.num_cached_tokens = later.num_cached_tokens
