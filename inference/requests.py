"""A request checked and tokenized, ready for the engine: `EngineRequest`, the one thing that
crosses the engine boundary (to an engine on a thread, or pickled to an engine process). Making
one needs only the tokenizer and the engine's limits, so a server's front process refuses a bad
request before anything reaches the engine; the engine alone turns it into sequences."""

from __future__ import annotations

import time
from dataclasses import dataclass

from .config import EngineConfig
from .sampling_params import SamplingParams
from .tokenizer import Tokenizer


@dataclass(frozen=True, slots=True)
class EngineRequest:
    request_id: str
    prompt_token_ids: tuple[int, ...]
    params: SamplingParams
    arrival_time: float  # time.monotonic() in the process that made it (one clock for the machine)
    # the output's text continues the prompt's (a leading space is kept); False decodes it as a
    # text of its own, as Meta's chat reference does with an answer
    continues_prompt: bool = True


class RequestMaker:
    def __init__(self, tokenizer: Tokenizer, config: EngineConfig, num_blocks: int):
        self.tokenizer = tokenizer
        self.max_model_len = config.max_model_len
        self.block_size = config.block_size
        self.num_blocks = num_blocks

    def make(self, request_id: str, prompt: str | list[int], params: SamplingParams,
             continues_prompt: bool = True) -> EngineRequest:
        """Check and tokenize a request; raises ValueError with a message fit for the user."""
        if not isinstance(params, SamplingParams):
            raise ValueError(f"params must be SamplingParams, got {type(params).__name__}")
        ids = self._prompt_ids(prompt)
        limit = self.max_model_len
        if len(ids) >= limit:
            raise ValueError(f"the prompt has {len(ids)} tokens; the context window is {limit} tokens "
                             f"(the prompt must leave room for at least one new token)")
        if params.max_tokens is not None and len(ids) + params.max_tokens > limit:
            raise ValueError(f"the prompt ({len(ids)} tokens) plus max_tokens ({params.max_tokens}) exceeds "
                             f"the context window of {limit} tokens")
        needed = -(-min(limit, len(ids) + (params.max_tokens or limit)) // self.block_size)
        if needed > self.num_blocks:
            raise ValueError(f"the request needs up to {needed} KV-cache blocks but the pool has "
                             f"{self.num_blocks}; lower max_tokens or the prompt length")
        return EngineRequest(request_id, tuple(ids), params, time.monotonic(), continues_prompt)

    def _prompt_ids(self, prompt: str | list[int]) -> list[int]:
        if isinstance(prompt, str):
            if not prompt:
                raise ValueError("the prompt is empty")
            return self.tokenizer.encode(prompt, bos=True)
        if not isinstance(prompt, (list, tuple)) or not prompt:
            raise ValueError("the prompt must be a non-empty string or a non-empty list of token ids")
        vocab = self.tokenizer.vocab_size
        for t in prompt:
            if isinstance(t, bool) or not isinstance(t, int) or not 0 <= t < vocab:
                raise ValueError(f"prompt token id {t!r} is outside the vocabulary [0, {vocab})")
        return list(prompt)
