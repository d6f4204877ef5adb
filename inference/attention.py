"""The attention metadata the runner builds for one step and the model reads."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(slots=True)
class AttentionMetadata:
    """One step's batch, as attention sees it. Sequence i has query tokens
    cu_seqlens_q[i]:cu_seqlens_q[i+1] of the step's flat token list; they are the last tokens of
    its context of context_lens[i] tokens, stored in the blocks block_tables[i]."""

    cu_seqlens_q: torch.Tensor  # [B + 1] int32
    context_lens: torch.Tensor  # [B] int32, tokens in the cache after this step
    block_tables: torch.Tensor  # [B, max_blocks] int32, padded with 0
    slot_mapping: torch.Tensor  # [T] int64: where each new token's K/V goes; -1 = padding
    max_query_len: int
    max_context_len: int

    @property
    def is_decode(self) -> bool:
        return self.max_query_len == 1
