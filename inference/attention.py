"""The attention metadata the runner builds for one step, and attention over the paged cache."""

from __future__ import annotations

from dataclasses import dataclass

import torch

import kernels


@dataclass(slots=True)
class AttentionMetadata:
    """One step's batch, as attention sees it. Sequence i has query tokens
    cu_seqlens_q[i]:cu_seqlens_q[i+1] of the step's flat token list; they are the last tokens of
    its context of context_lens[i] tokens, stored in the blocks block_tables[i]. The first
    `num_decodes` sequences have one query token each (the scheduler puts decodes first)."""

    cu_seqlens_q: torch.Tensor  # [B + 1] int32
    context_lens: torch.Tensor  # [B] int32, tokens in the cache after this step
    block_tables: torch.Tensor  # [B, max_blocks] int32, padded with 0
    slot_mapping: torch.Tensor  # [T] int64: where each new token's K/V goes; -1 = padding
    max_query_len: int
    max_context_len: int
    num_decodes: int = 0
    decode_splits: int = 1  # split-K parts of the decode kernel (a power of two)


def paged_attention(q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor,
                    meta: AttentionMetadata, scale: float) -> torch.Tensor:
    """q: [T, Hq, D] -> [T, Hq, D]. On the GPU decodes go through the split-K decode kernel and
    the other sequences through the prefill kernel; elsewhere through the torch reference."""
    if not q.is_cuda:
        return kernels.paged_attention_ref(q, k_cache, v_cache, meta.cu_seqlens_q, meta.context_lens,
                                           meta.block_tables, scale)
    out = torch.empty_like(q)
    nd = meta.num_decodes
    if nd:
        kernels.paged_decode_attention(q[:nd], k_cache, v_cache, meta.block_tables, meta.context_lens, scale,
                                       meta.decode_splits, out=out[:nd])
    if nd < meta.context_lens.shape[0]:
        kernels.paged_prefill_attention(q, k_cache, v_cache, meta.cu_seqlens_q, meta.context_lens,
                                        meta.block_tables, scale, meta.max_query_len, first_seq=nd, out=out)
    return out
