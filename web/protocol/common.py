"""Shapes shared by the OpenAI routes: usage, stream options, the model card, and the limits
every route's fields share (a value outside them is a 400 before anything runs)."""

from __future__ import annotations

from typing import Annotated

import msgspec

from inference.sampling_params import INT64_MAX, INT64_MIN

MAX_STOPS, MAX_STOP_CHARS = 4, 256  # OpenAI's count; each stop string is matched after every token

Int64 = Annotated[int, msgspec.Meta(ge=INT64_MIN, le=INT64_MAX)]
StopString = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_STOP_CHARS)]
StopList = Annotated[list[StopString], msgspec.Meta(max_length=MAX_STOPS)]


class StreamOptions(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    include_usage: bool | None = None
    include_obfuscation: bool | None = None  # accepted: this server never pads its chunks


class SamplingFields(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """What completions and chat requests share."""

    model: str | None = None
    temperature: float | None = None
    top_p: float | None = None
    n: int | None = None
    stream: bool | None = None
    stream_options: StreamOptions | None = None
    stop: StopString | StopList | None = None
    seed: Int64 | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    logit_bias: dict[str, float] | None = None  # only empty: not implemented
    user: str | None = None
    # beyond OpenAI, named as in vLLM
    top_k: int | None = None
    min_p: float | None = None
    repetition_penalty: float | None = None
    ignore_eos: bool | None = None


class ResponseHead(msgspec.Struct, kw_only=True):
    id: str
    object: str
    created: int
    model: str


class PromptTokensDetails(msgspec.Struct):
    cached_tokens: int  # prompt tokens served from the prefix cache


class Usage(msgspec.Struct):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    prompt_tokens_details: PromptTokensDetails


class InfillTokens(msgspec.Struct):
    """Token ids of the infilling pieces, for editor plugins that build FIM prompts themselves."""

    prefix: int
    suffix: int
    middle: int
    eot: int


class ModelCard(msgspec.Struct, kw_only=True):
    id: str
    object: str = "model"
    created: int
    owned_by: str = "codellama-serve"
    max_model_len: int  # the context window in tokens
    vocab_size: int
    capabilities: list[str]  # of completion, infilling, chat, python
    infill_token_ids: InfillTokens | None
    weights: str  # how the weights are stored: a quantization scheme (awq-w4g128, gptq-w4g128, int8) or a dtype
    kv_cache_dtype: str  # int8, or the model's dtype


class ModelList(msgspec.Struct):
    data: list[ModelCard]
    object: str = "list"
