"""POST /v1/completions: the request and what answers it (whole or as stream chunks)."""

from __future__ import annotations

import msgspec

from .common import StreamOptions, Usage

Prompt = str | list[str | int | list[int]]  # text, texts, token ids, or lists of token ids


class CompletionRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    prompt: Prompt
    model: str | None = None
    suffix: str | None = None  # given: fill in the middle between prompt and suffix
    max_tokens: int | None = 16
    temperature: float | None = None
    top_p: float | None = None
    n: int | None = None
    stream: bool | None = None
    stream_options: StreamOptions | None = None
    logprobs: int | None = None
    echo: bool | None = None
    stop: str | list[str] | None = None
    seed: int | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    best_of: int | None = None  # only best_of == n: no server-side ranking
    logit_bias: dict[str, float] | None = None  # only empty: not implemented
    user: str | None = None
    # beyond OpenAI, named as in vLLM
    top_k: int | None = None
    min_p: float | None = None
    repetition_penalty: float | None = None
    ignore_eos: bool | None = None


class CompletionLogprobs(msgspec.Struct):
    tokens: list[str]
    token_logprobs: list[float]
    top_logprobs: list[dict[str, float]]
    text_offset: list[int]


class CompletionChoice(msgspec.Struct):
    index: int
    text: str
    logprobs: CompletionLogprobs | None
    finish_reason: str | None


class Completion(msgspec.Struct, kw_only=True):
    """A whole response, or (object "text_completion" too, as OpenAI does) one stream chunk."""

    id: str
    object: str = "text_completion"
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: Usage | None = None
