"""POST /v1/completions: the request and what answers it (whole or as stream chunks)."""

from __future__ import annotations

import msgspec

from .common import ResponseHead, SamplingFields, Usage

Prompt = str | list[str | int | list[int]]  # text, texts, token ids, or lists of token ids


class CompletionRequest(SamplingFields, kw_only=True, forbid_unknown_fields=True):
    prompt: Prompt
    suffix: str | None = None  # given: fill in the middle between prompt and suffix
    max_tokens: int | None = 16
    logprobs: int | None = None
    echo: bool | None = None
    best_of: int | None = None  # only best_of == n: no server-side ranking


class CompletionLogprobs(msgspec.Struct):
    """As OpenAI: an echoed prompt's first token has null for its logprob and alternatives."""

    tokens: list[str]
    token_logprobs: list[float | None]
    top_logprobs: list[dict[str, float] | None]
    text_offset: list[int]

    def __add__(self, later: "CompletionLogprobs") -> "CompletionLogprobs":
        return CompletionLogprobs(self.tokens + later.tokens, self.token_logprobs + later.token_logprobs,
                                  self.top_logprobs + later.top_logprobs, self.text_offset + later.text_offset)


class CompletionChoice(msgspec.Struct):
    index: int
    text: str
    logprobs: CompletionLogprobs | None
    finish_reason: str | None


class Completion(ResponseHead, kw_only=True):
    """A whole response, or (object "text_completion" too, as OpenAI does) one stream chunk."""

    object: str = "text_completion"
    choices: list[CompletionChoice]
    usage: Usage | None = None
