"""A request checked and tokenized, ready for the engine. Making one needs only the tokenizer and
the engine's limits, so a server's front process can refuse a bad request without the engine."""

from __future__ import annotations

import itertools
import secrets
import time
from dataclasses import dataclass

from .detokenizer import IncrementalDetokenizer
from .output_processor import SequenceOutput
from .outputs import RequestMetrics, TokenLogprob
from .sampling_params import SamplingParams
from .sequence import Sequence
from .tokenizer import Tokenizer


@dataclass(slots=True)
class RequestState:
    request_id: str
    prompt: str | None
    prompt_token_ids: list[int]
    params: SamplingParams
    continues_prompt: bool
    seqs: list[Sequence]
    outputs: list[SequenceOutput]
    metrics: RequestMetrics
    prompt_logprobs: list[TokenLogprob] | None = None  # with params.prompt_logprobs: filled as computed
    prompt_logprobs_sent: bool = False

    @property
    def finished(self) -> bool:
        return all(s.finished for s in self.seqs)


class RequestMaker:
    def __init__(self, tokenizer: Tokenizer, max_model_len: int, block_size: int, num_blocks: int):
        self.tokenizer = tokenizer
        self.max_model_len = max_model_len
        self.block_size = block_size
        self.num_blocks = num_blocks
        self._seq_ids = itertools.count()

    def make(self, request_id: str, prompt: str | list[int], params: SamplingParams,
             continues_prompt: bool = True) -> RequestState:
        """Raises ValueError with a message fit for the user. `continues_prompt`: the output's text
        continues the prompt's (a leading space is kept); False decodes it as a text of its own,
        as Meta's chat reference does with an answer."""
        if not isinstance(params, SamplingParams):
            raise ValueError(f"params must be SamplingParams, got {type(params).__name__}")
        text, ids = self._prompt_ids(prompt)
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
        seqs, outputs = [], []
        started = continues_prompt and self.tokenizer.has_text(ids)
        base_seed = params.seed if params.seed is not None else secrets.randbits(62)
        for i in range(params.n):
            seq = Sequence(next(self._seq_ids), request_id, i, list(ids), len(ids), params,
                           seed=base_seed if i == 0 else hash((base_seed, i)), parent=seqs[0] if seqs else None)
            seqs.append(seq)
            outputs.append(SequenceOutput(i, IncrementalDetokenizer(self.tokenizer, started), params.stop))
        return RequestState(request_id, text, ids, params, continues_prompt, seqs, outputs,
                            RequestMetrics(time.monotonic()), [] if params.prompt_logprobs is not None else None)

    def _prompt_ids(self, prompt: str | list[int]) -> tuple[str | None, list[int]]:
        if isinstance(prompt, str):
            if not prompt:
                raise ValueError("the prompt is empty")
            return prompt, self.tokenizer.encode(prompt, bos=True)
        if not isinstance(prompt, (list, tuple)) or not prompt:
            raise ValueError("the prompt must be a non-empty string or a non-empty list of token ids")
        vocab = self.tokenizer.vocab_size
        for t in prompt:
            if isinstance(t, bool) or not isinstance(t, int) or not 0 <= t < vocab:
                raise ValueError(f"prompt token id {t!r} is outside the vocabulary [0, {vocab})")
        return None, list(prompt)
