"""The attention metadata the runner builds for one step, the paged KV cache, and attention over it."""

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
                    meta: AttentionMetadata, scale: float, k_scales: torch.Tensor | None = None,
                    v_scales: torch.Tensor | None = None, out: torch.Tensor | None = None) -> torch.Tensor:
    """q: [T, Hq, D] -> [T, Hq, D] (into `out` when given). On the GPU decodes go through the
    split-K decode kernel and the other sequences through the prefill kernel; elsewhere through
    the torch reference. An int8 cache comes with its scales."""
    if not q.is_cuda:
        result = kernels.paged_attention_ref(q, k_cache, v_cache, meta.cu_seqlens_q, meta.context_lens,
                                             meta.block_tables, scale, k_scales, v_scales)
        return result if out is None else out.copy_(result)
    out = torch.empty_like(q) if out is None else out
    nd = meta.num_decodes
    if nd:
        kernels.paged_decode_attention(q[:nd], k_cache, v_cache, meta.block_tables, meta.context_lens, scale,
                                       meta.decode_splits, out=out[:nd], k_scales=k_scales, v_scales=v_scales)
    if nd < meta.context_lens.shape[0]:
        kernels.paged_prefill_attention(q, k_cache, v_cache, meta.cu_seqlens_q, meta.context_lens,
                                        meta.block_tables, scale, meta.max_query_len, first_seq=nd, out=out,
                                        k_scales=k_scales, v_scales=v_scales)
    return out


def allocate_kv_cache(num_layers: int, num_blocks: int, block_size: int, kv_heads: int, head_dim: int,
                      dtype: torch.dtype, kv_int8: bool, device: torch.device,
                      ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The paged KV cache [layers, 2 (k, v), blocks, block_size, kv_heads, head_dim] in `dtype`, or
    int8 with its scales [layers, 2, blocks, block_size, kv_heads] (float32, kernels/kv_int8.py)."""
    shape = (num_layers, 2, num_blocks, block_size, kv_heads, head_dim)
    if not kv_int8:
        return torch.zeros(shape, dtype=dtype, device=device), None
    return torch.zeros(shape, dtype=torch.int8, device=device), torch.zeros(shape[:-1], device=device)


def kv_block_bytes(num_layers: int, block_size: int, kv_heads: int, head_dim: int, dtype: torch.dtype,
                   kv_int8: bool) -> int:
    """Bytes of one block of the whole model's cache (an int8 row carries a 4-byte scale)."""
    row = head_dim + 4 if kv_int8 else head_dim * dtype.itemsize
    return 2 * num_layers * block_size * kv_heads * row


def warm_up_attention(num_heads: int, num_kv_heads: int, head_dim: int, block_size: int, dtype: torch.dtype,
                      device: torch.device, kv_int8: bool = False) -> None:
    """Compile every variant of the attention kernels that a step can ask for (split counts,
    query tile sizes) now, rather than in the middle of serving."""
    longest = 130  # over 64: the largest query tile
    caches, scales = allocate_kv_cache(1, 1, block_size, num_kv_heads, head_dim, dtype, kv_int8, device)
    cache, scales = caches[0, 0], None if scales is None else scales[0, 0]
    tables = torch.zeros(1, -(-longest // block_size), dtype=torch.int32, device=device)  # all in block 0
    q = torch.zeros(longest, num_heads, head_dim, dtype=dtype, device=device)
    for splits in (2 ** i for i in range(kernels.MAX_SPLITS.bit_length())):
        kernels.paged_decode_attention(q[:1], cache, cache, tables, torch.ones(1, dtype=torch.int32, device=device),
                                       1.0, splits, k_scales=scales, v_scales=scales)
    for q_len in (16, 64, longest):  # each query tile size
        lens = torch.tensor([q_len], dtype=torch.int32, device=device)
        cu = torch.tensor([0, q_len], dtype=torch.int32, device=device)
        kernels.paged_prefill_attention(q[:q_len], cache, cache, cu, lens, tables, 1.0, q_len, k_scales=scales,
                                        v_scales=scales)
