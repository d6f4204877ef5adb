"""Causal attention over the paged KV cache for a batch of variable-length query chunks.

Sequence i contributes queries cu_seqlens_q[i]:cu_seqlens_q[i+1], the last tokens of its context
of context_lens[i] tokens, whose keys and values (the new ones included) are already in the cache
at the blocks block_tables[i]. A decode step is the case of one query per sequence.
"""

from __future__ import annotations

import torch

from .kv_int8 import dequantize_kv_ref


def paged_attention_ref(q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor,
                        cu_seqlens_q: torch.Tensor, context_lens: torch.Tensor,
                        block_tables: torch.Tensor, scale: float, k_scales: torch.Tensor | None = None,
                        v_scales: torch.Tensor | None = None) -> torch.Tensor:
    """q: [T, Hq, D]; caches: [num_blocks, block_size, Hk, D] (int8 ones with their scales
    [num_blocks, block_size, Hk], see kv_int8.py); returns [T, Hq, D] in q's dtype."""
    out = torch.empty_like(q)
    block_size, num_kv_heads = k_cache.shape[1], k_cache.shape[2]
    group = q.shape[1] // num_kv_heads
    cu, lens = cu_seqlens_q.tolist(), context_lens.tolist()
    for i, ctx in enumerate(lens):
        start, end = cu[i], cu[i + 1]
        if end == start:
            continue
        blocks = block_tables[i, : (ctx + block_size - 1) // block_size].long()
        k = _context_rows(k_cache, k_scales, blocks, ctx).repeat_interleave(group, dim=1)
        v = _context_rows(v_cache, v_scales, blocks, ctx).repeat_interleave(group, dim=1)
        qi = q[start:end].float()
        scores = torch.einsum("qhd,khd->hqk", qi, k) * scale
        q_pos = torch.arange(ctx - (end - start), ctx, device=q.device)[:, None]
        scores.masked_fill_(torch.arange(ctx, device=q.device)[None, :] > q_pos, float("-inf"))
        out[start:end] = torch.einsum("hqk,khd->qhd", scores.softmax(-1), v).to(q.dtype)
    return out


def _context_rows(cache: torch.Tensor, scales: torch.Tensor | None, blocks: torch.Tensor, ctx: int) -> torch.Tensor:
    """A sequence's first ctx cache rows, [ctx, Hk, D] in float32."""
    rows = cache[blocks].flatten(0, 1)[:ctx]
    return rows.float() if scales is None else dequantize_kv_ref(rows, scales[blocks].flatten(0, 1)[:ctx])
