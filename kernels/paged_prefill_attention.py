"""Prefill / extend attention over the paged KV cache (flash-attention style).

Each sequence brings a chunk of query tokens that end its context; their keys and values, and
those of everything before them (earlier chunks, a cached prefix), are read from the paged cache
through the block table. Program (sequence, query head, query tile) streams the key tiles up to
the tile's causal limit with an online softmax.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .attention_tiles import dot_keys, dot_values
from .kv_int8 import check_kv_scales

_LOG2E = 1.4426950408889634


@triton.jit(do_not_specialize=["first_seq", "stride_bt"])  # they change every step: compile once
def _prefill_kernel(
    q_ptr,  # [T, Hq, D] queries of all sequences, flattened
    k_cache_ptr,  # [num_blocks * PAGE, Hk, D]
    v_cache_ptr,  # [num_blocks * PAGE, Hk, D]
    k_scale_ptr,  # [num_blocks * PAGE, Hk] float32 scales of an int8 cache (unused otherwise)
    v_scale_ptr,
    block_tables_ptr,  # [B, max_blocks] int32
    context_lens_ptr,  # [B] int32, context length after this step
    cu_seqlens_ptr,  # [B + 1] int32, query token offsets
    out_ptr,  # [T, Hq, D]
    qk_scale,  # softmax scale * log2(e)
    first_seq,  # index of the first sequence this launch covers
    stride_qt, stride_qh, stride_ot, stride_oh, stride_bt,
    HK: tl.constexpr, GROUP: tl.constexpr, D: tl.constexpr, BLOCK_D: tl.constexpr, PAGE: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, IEEE: tl.constexpr, KV_INT8: tl.constexpr,
):
    seq = (tl.program_id(0) + first_seq).to(tl.int64)
    h = tl.program_id(1)
    tile = tl.program_id(2)
    q_start = tl.load(cu_seqlens_ptr + seq)
    q_len = tl.load(cu_seqlens_ptr + seq + 1) - q_start
    if tile * BLOCK_M >= q_len:
        return
    ctx = tl.load(context_lens_ptr + seq)
    kvh = h // GROUP

    rows = tile * BLOCK_M + tl.arange(0, BLOCK_M)
    rmask = rows < q_len
    pos = ctx - q_len + rows  # absolute position of each query
    d = tl.arange(0, BLOCK_D)
    dmask = d < D
    q = tl.load(q_ptr + (q_start + rows)[:, None].to(tl.int64) * stride_qt + h * stride_qh + d[None, :],
                mask=rmask[:, None] & dmask[None, :], other=0.0)

    m = tl.full([BLOCK_M], float("-inf"), tl.float32)
    l = tl.zeros([BLOCK_M], tl.float32)
    acc = tl.zeros([BLOCK_M, BLOCK_D], tl.float32)
    hi = tl.minimum(ctx, ctx - q_len + (tile + 1) * BLOCK_M)  # causal limit of this tile
    for n0 in range(0, hi, BLOCK_N):
        t = n0 + tl.arange(0, BLOCK_N)
        tmask = t < hi
        page = tl.load(block_tables_ptr + seq * stride_bt + t // PAGE, mask=tmask, other=0).to(tl.int64)
        slots = page * PAGE + t % PAGE
        kv_rows = slots * (HK * D) + kvh * D
        kv_mask = tmask[:, None] & dmask[None, :]
        k = tl.load(k_cache_ptr + kv_rows[:, None] + d[None, :], mask=kv_mask, other=0.0)
        s = dot_keys(q, k, IEEE)
        if KV_INT8:  # each key's scale multiplies its score
            s = s * tl.load(k_scale_ptr + slots * HK + kvh, mask=tmask, other=0.0)[None, :]
        visible = (t[None, :] <= pos[:, None]) & tmask[None, :]
        s = tl.where(visible, s * qk_scale, float("-inf"))
        m_new = tl.maximum(m, tl.max(s, axis=1))
        alpha = tl.exp2(m - m_new)
        p = tl.exp2(s - m_new[:, None])
        l = l * alpha + tl.sum(p, axis=1)
        v = tl.load(v_cache_ptr + kv_rows[:, None] + d[None, :], mask=kv_mask, other=0.0)
        if KV_INT8:  # each value's scale goes with its probability
            pv = p * tl.load(v_scale_ptr + slots * HK + kvh, mask=tmask, other=0.0)[None, :]
        else:
            pv = p
        acc = acc * alpha[:, None] + dot_values(pv, v, q.dtype, IEEE)
        m = m_new

    out = acc / tl.where(l > 0, l, 1.0)[:, None]
    tl.store(out_ptr + (q_start + rows)[:, None].to(tl.int64) * stride_ot + h * stride_oh + d[None, :],
             out.to(out_ptr.dtype.element_ty), mask=rmask[:, None] & dmask[None, :])


def paged_prefill_attention(q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor,
                            cu_seqlens_q: torch.Tensor, context_lens: torch.Tensor, block_tables: torch.Tensor,
                            scale: float, max_query_len: int, first_seq: int = 0,
                            out: torch.Tensor | None = None, k_scales: torch.Tensor | None = None,
                            v_scales: torch.Tensor | None = None) -> torch.Tensor:
    """Attention for sequences first_seq.. of the batch (q: [T, Hq, D] of the whole batch; only
    those sequences' rows of `out` are written). Shapes as in paged_attention_ref."""
    _, hq, dim = q.shape
    _, page, hk, _ = k_cache.shape
    assert k_cache.is_contiguous() and v_cache.is_contiguous() and q.stride(2) == 1
    assert cu_seqlens_q.dtype == torch.int32 and block_tables.dtype == torch.int32
    kv_int8 = check_kv_scales(k_cache, k_scales, v_scales)
    out = torch.empty_like(q) if out is None else out
    num_seqs = context_lens.shape[0] - first_seq
    if num_seqs <= 0 or max_query_len == 0:
        return out
    block_m = 128 if max_query_len > 64 else 64 if max_query_len > 16 else 16
    block_n = 64
    grid = (num_seqs, hq, triton.cdiv(max_query_len, block_m))
    _prefill_kernel[grid](
        q, k_cache, v_cache, k_scales if kv_int8 else k_cache, v_scales if kv_int8 else v_cache, block_tables,
        context_lens, cu_seqlens_q, out, scale * _LOG2E, first_seq,
        q.stride(0), q.stride(1), out.stride(0), out.stride(1), block_tables.stride(0),
        HK=hk, GROUP=hq // hk, D=dim, BLOCK_D=triton.next_power_of_2(dim), PAGE=page,
        BLOCK_M=block_m, BLOCK_N=block_n, IEEE=q.dtype == torch.float32, KV_INT8=kv_int8,
        num_warps=8 if block_m == 128 else 4, num_stages=2)
    return out
