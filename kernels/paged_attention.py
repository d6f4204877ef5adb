"""Causal attention over the paged KV cache for a batch of variable-length query chunks.

Sequence i contributes queries cu_seqlens_q[i]:cu_seqlens_q[i+1], the last tokens of its context
of context_lens[i] tokens, whose keys and values (the new ones included) are already in the cache
at the blocks block_tables[i]. A decode step is the case of one query per sequence.
"""

from __future__ import annotations

import torch


def paged_attention_ref(q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor,
                        cu_seqlens_q: torch.Tensor, context_lens: torch.Tensor,
                        block_tables: torch.Tensor, scale: float) -> torch.Tensor:
    """q: [T, Hq, D]; caches: [num_blocks, block_size, Hk, D]; returns [T, Hq, D] in q's dtype."""
    out = torch.empty_like(q)
    block_size, num_kv_heads = k_cache.shape[1], k_cache.shape[2]
    group = q.shape[1] // num_kv_heads
    cu, lens = cu_seqlens_q.tolist(), context_lens.tolist()
    for i, ctx in enumerate(lens):
        start, end = cu[i], cu[i + 1]
        if end == start:
            continue
        blocks = block_tables[i, : (ctx + block_size - 1) // block_size].long()
        k = k_cache[blocks].flatten(0, 1)[:ctx].float().repeat_interleave(group, dim=1)
        v = v_cache[blocks].flatten(0, 1)[:ctx].float().repeat_interleave(group, dim=1)
        qi = q[start:end].float()
        scores = torch.einsum("qhd,khd->hqk", qi, k) * scale
        q_pos = torch.arange(ctx - (end - start), ctx, device=q.device)[:, None]
        scores.masked_fill_(torch.arange(ctx, device=q.device)[None, :] > q_pos, float("-inf"))
        out[start:end] = torch.einsum("hqk,khd->qhd", scores.softmax(-1), v).to(q.dtype)
    return out
