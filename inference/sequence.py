"""One generated sequence: its tokens, its place in the KV cache, and its status."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from .sampling_params import SamplingParams


PENDING = -1  # a sampled token still on the GPU (see Scheduler)


class Status(enum.Enum):
    WAITING = "waiting"
    RUNNING = "running"
    FINISHED = "finished"


@dataclass(slots=True, eq=False)
class Sequence:
    """`token_ids` holds the prompt then the output. `num_computed_tokens` of them have their
    keys/values in the cache (or are being computed by the step in flight), in the blocks of
    `block_table`; the rest are computed by the next steps (a prefill chunk, or the last sampled
    token in a decode step). The last token may be PENDING: sampled by the step in flight, its
    value not yet read back. Sample `index` of a request with n > 1 waits for sample 0
    (`parent`) to cache its prompt blocks, then shares them. With `params.prompt_logprobs`,
    sample 0 also scores its prompt: the logprob of each prompt token after the first,
    `next_prompt_logprob` being the next one the scheduler assigns to a step (so a prompt
    recomputed after preemption is not scored twice)."""

    seq_id: int
    request_id: str
    index: int
    token_ids: list[int]
    num_prompt_tokens: int
    params: SamplingParams
    seed: int
    parent: "Sequence | None" = None
    status: Status = Status.WAITING
    block_table: list[int] = field(default_factory=list)
    block_hashes: list[int] = field(default_factory=list)  # of the full, computed blocks
    num_computed_tokens: int = 0
    num_cached_tokens: int = 0  # prompt tokens found in the prefix cache at first admission
    admitted: bool = False
    finish_reason: str | None = None
    next_prompt_logprob: int = 1

    @property
    def num_tokens(self) -> int:
        return len(self.token_ids)

    @property
    def num_output_tokens(self) -> int:
        return len(self.token_ids) - self.num_prompt_tokens

    @property
    def output_token_ids(self) -> list[int]:
        return self.token_ids[self.num_prompt_tokens:]

    @property
    def num_uncomputed_tokens(self) -> int:
        return len(self.token_ids) - self.num_computed_tokens

    @property
    def output_limit_reached(self) -> bool:
        """max_tokens tokens are sampled (the last may still be pending): nothing more to schedule."""
        return self.params.max_tokens is not None and self.num_output_tokens >= self.params.max_tokens

    @property
    def wants_prompt_logprobs(self) -> bool:
        return (self.index == 0 and self.params.prompt_logprobs is not None
                and self.next_prompt_logprob < self.num_prompt_tokens)

    @property
    def finished(self) -> bool:
        return self.status is Status.FINISHED
