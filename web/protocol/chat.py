"""POST /v1/chat/completions: the request and what answers it (whole or as stream chunks)."""

from __future__ import annotations

from typing import Any

import msgspec

from .common import ResponseHead, SamplingFields, Usage


class ContentPart(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    type: str  # only "text"
    text: str | None = None


class Message(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    role: str
    content: str | list[ContentPart] | None = None
    name: str | None = None


class ChatCompletionRequest(SamplingFields, kw_only=True, forbid_unknown_fields=True):
    messages: list[Message]
    max_tokens: int | None = None
    max_completion_tokens: int | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = None
    # OpenAI fields that change nothing here: accepted and ignored
    store: bool | None = None
    metadata: dict[str, str] | None = None
    service_tier: str | None = None
    prompt_cache_key: str | None = None
    safety_identifier: str | None = None
    # OpenAI fields this server cannot honour: refused unless null or neutral (see routes/chat.py)
    response_format: dict[str, Any] | None = None
    tools: list[Any] | None = None
    tool_choice: Any | None = None
    parallel_tool_calls: bool | None = None
    functions: list[Any] | None = None
    function_call: Any | None = None
    modalities: list[str] | None = None
    audio: Any | None = None
    prediction: Any | None = None
    reasoning_effort: str | None = None
    web_search_options: Any | None = None


class TopLogprob(msgspec.Struct):
    token: str
    logprob: float
    bytes: list[int]


class ChatTokenLogprob(msgspec.Struct):
    token: str
    logprob: float
    bytes: list[int]
    top_logprobs: list[TopLogprob]


class ChoiceLogprobs(msgspec.Struct):
    content: list[ChatTokenLogprob]


class AssistantMessage(msgspec.Struct):
    content: str
    role: str = "assistant"


class ChatChoice(msgspec.Struct):
    index: int
    message: AssistantMessage
    logprobs: ChoiceLogprobs | None
    finish_reason: str | None


class ChatCompletion(ResponseHead, kw_only=True):
    object: str = "chat.completion"
    choices: list[ChatChoice]
    usage: Usage


class Delta(msgspec.Struct, omit_defaults=True):
    role: str | None = None
    content: str | None = None


class ChunkChoice(msgspec.Struct):
    index: int
    delta: Delta
    logprobs: ChoiceLogprobs | None
    finish_reason: str | None


class ChatCompletionChunk(ResponseHead, kw_only=True):
    object: str = "chat.completion.chunk"
    choices: list[ChunkChoice]
    usage: Usage | None = None
