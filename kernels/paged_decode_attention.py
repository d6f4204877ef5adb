"""Paged decode attention with split-K (flash-decoding).

One query token per sequence. Program (sequence b, KV head h, split s) takes the queries of every
query head that shares KV head h (GQA) and its share of the context, reading the keys and values
block by block through the block table; it keeps a running max and sum (online softmax). With
several splits, a second kernel merges the partial results, so a long context at a small batch
still spreads over the whole GPU.

An int8 cache with one query head per KV head (7B, 13B) runs on CUDA cores (CUDA_CORES) instead
of tl.dot: the MMA would pad the single query row to 16 rows and first move the int8 tile through
shared memory into its operand layout, which cost more instructions than the bytes saved. There
each thread turns its codes to float32 in registers and keeps one partial output row per key of
the tile, summed over the keys once per split. Such a kernel is bound by how many bytes it has in
flight and by instructions per byte, so (measured on an H200 at 64 x 8,192 keys, 60 -> 75 % of copy
bandwidth): the next tile's codes are loaded while this one is computed, and its pages looked up
a tile before that; on the GPU the codes arrive as int32 words and one `prmt` per code builds
2^23 + 128 + c (PTX); and the programs of one sequence's heads run side by side (HEADS_FIRST),
so they share the DRAM pages and scale lines that hold their rows.

With several query heads per KV head (34B, 70B) an int8 cache stays on the tensor cores, in float16
(F16): its codes are whole numbers below 128, exact in float16, built from the loaded words in
registers (on the GPU two prmt and two sub.f16x2 per four codes), so the tile enters the MMA as
float16 does; converting int8 codes to bfloat16 operands had Triton fetch them from shared memory
one byte at a time. Measured on an H200 (34B, 64 x 8,192): 0.753 -> 0.591 ms, and closer to the
float32 reference (float16 keeps three more bits of each probability than bfloat16).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .attention_tiles import dot_keys, dot_values
from .dependent_launch import dependent_launch, launch_next, wait_for_previous
from .gemv_input import row_scale
from .kv_int8 import check_kv_scales, codes_to_f32, load_int8_tile, words_to_f16

_LOG2E = 1.4426950408889634


@triton.jit
def _softmax_step(s, m, l):
    """The online softmax over a tile's scores s [G, N] (log2 domain): the probabilities, the
    factor that rescales what came before, and the new running max and sum."""
    m_new = tl.maximum(m, tl.max(s, axis=1))
    alpha = tl.exp2(m - m_new)
    p = tl.exp2(s - m_new[:, None])
    return p, alpha, m_new, l * alpha + tl.sum(p, axis=1)


@triton.jit
def _tile_slots(block_tables_ptr, b, stride_bt, t, end, PAGE: tl.constexpr):
    """The cache slots of tokens t (0 for those from end on, which are never read)."""
    page = tl.load(block_tables_ptr + b * stride_bt + t // PAGE, mask=t < end, other=0).to(tl.int64)
    return page * PAGE + t % PAGE


@triton.jit
def _attend_on_cuda_cores(q, m, l, k_cache_ptr, v_cache_ptr, k_scale_ptr, v_scale_ptr, block_tables_ptr, b,
                          stride_bt, kvh, start, end, qk_scale, HK: tl.constexpr, D: tl.constexpr,
                          BLOCK_D: tl.constexpr, PAGE: tl.constexpr, BLOCK_N: tl.constexpr, PTX: tl.constexpr):
    """One query row (float32 [1, BLOCK_D]) over the int8 keys and values start .. end - 1: the
    running max m, sum l and the output row; the next tile is loaded while this one is computed."""
    offs = tl.arange(0, BLOCK_N)
    t = start + offs
    k, v, k_scale, v_scale = load_int8_tile(k_cache_ptr, v_cache_ptr, k_scale_ptr, v_scale_ptr,
                                            _tile_slots(block_tables_ptr, b, stride_bt, t, end, PAGE), t < end,
                                            kvh, HK, D, BLOCK_D, PTX)
    next_slots = _tile_slots(block_tables_ptr, b, stride_bt, t + BLOCK_N, end, PAGE)
    acc = tl.zeros([BLOCK_N, BLOCK_D], tl.float32)  # a row per key: no tile needs a sum across threads
    for n0 in range(start, end, BLOCK_N):
        t_next = n0 + BLOCK_N + offs
        k_next, v_next, k_scale_next, v_scale_next = load_int8_tile(
            k_cache_ptr, v_cache_ptr, k_scale_ptr, v_scale_ptr, next_slots, t_next < end, kvh, HK, D, BLOCK_D, PTX)
        next_slots = _tile_slots(block_tables_ptr, b, stride_bt, t_next + BLOCK_N, end, PAGE)
        # each key's scale multiplies its score, each value's goes with its probability
        s = tl.trans(tl.sum(q * codes_to_f32(k, PTX), axis=1, keep_dims=True)) * k_scale[None, :]
        s = tl.where((n0 + offs < end)[None, :], s * qk_scale, float("-inf"))
        p, alpha, m, l = _softmax_step(s, m, l)
        acc = acc * alpha[:, None] + tl.trans(p * v_scale[None, :]) * codes_to_f32(v, PTX)
        k, v, k_scale, v_scale = k_next, v_next, k_scale_next, v_scale_next
    return m, l, tl.sum(acc, axis=0, keep_dims=True)


@triton.jit
def _attend_on_tensor_cores(q, m, l, k_cache_ptr, v_cache_ptr, k_scale_ptr, v_scale_ptr, block_tables_ptr, b,
                            stride_bt, kvh, start, end, qk_scale, HK: tl.constexpr, D: tl.constexpr,
                            BLOCK_G: tl.constexpr, BLOCK_D: tl.constexpr, PAGE: tl.constexpr,
                            BLOCK_N: tl.constexpr, IEEE: tl.constexpr, KV_INT8: tl.constexpr, F16: tl.constexpr,
                            PTX: tl.constexpr):
    """The query rows of a KV head ([BLOCK_G, BLOCK_D]) over keys and values start .. end - 1, by
    tl.dot. F16 (an int8 cache, half-precision queries): the products in float16, the codes built
    from the loaded words in registers (exact), the queries scaled by a power of two (undone on the
    scores), each value's scale taken relative to the tile's largest (applied to the tile's sum)."""
    d = tl.arange(0, BLOCK_D)
    acc = tl.zeros([BLOCK_G, BLOCK_D], tl.float32)
    if F16:
        up, q_unscale = row_scale(tl.max(tl.max(tl.abs(q.to(tl.float32)), axis=1), axis=0), 8)
        q = (q.to(tl.float32) * up).to(tl.float16)
    for n0 in range(start, end, BLOCK_N):
        t = n0 + tl.arange(0, BLOCK_N)
        tmask = t < end
        slots = _tile_slots(block_tables_ptr, b, stride_bt, t, end, PAGE)
        if F16:
            k, v, k_scale, v_scale = load_int8_tile(k_cache_ptr, v_cache_ptr, k_scale_ptr, v_scale_ptr, slots,
                                                    tmask, kvh, HK, D, BLOCK_D, True)
            s = tl.dot(q, tl.trans(words_to_f16(k, PTX))) * (k_scale * q_unscale)[None, :]
        else:
            rows = slots * (HK * D) + kvh * D
            kv_mask = tmask[:, None] & (d < D)[None, :]
            k = tl.load(k_cache_ptr + rows[:, None] + d[None, :], mask=kv_mask, other=0.0)
            s = dot_keys(q, k, IEEE)
            if KV_INT8:  # each key's scale multiplies its score
                s = s * tl.load(k_scale_ptr + slots * HK + kvh, mask=tmask, other=0.0)[None, :]
        s = tl.where(tmask[None, :], s * qk_scale, float("-inf"))
        p, alpha, m, l = _softmax_step(s, m, l)
        if F16:
            v_top = tl.max(v_scale, axis=0)
            v_top = tl.where(v_top > 0, v_top, 1.0)
            p = (p * (v_scale / v_top)[None, :]).to(tl.float16)
            acc = acc * alpha[:, None] + tl.dot(p, words_to_f16(v, PTX)) * v_top
        else:
            v = tl.load(v_cache_ptr + rows[:, None] + d[None, :], mask=kv_mask, other=0.0)
            if KV_INT8:  # each value's scale goes with its probability
                p = p * tl.load(v_scale_ptr + slots * HK + kvh, mask=tmask, other=0.0)[None, :]
            acc = acc * alpha[:, None] + dot_values(p, v, q.dtype, IEEE)
    return m, l, acc


@triton.jit(do_not_specialize=["stride_bt"])  # the block-table width changes every step
def _decode_kernel(
    q_ptr,  # [B, Hq, D] queries
    k_cache_ptr,  # [num_blocks * PAGE, Hk, D] keys (block-major)
    v_cache_ptr,  # [num_blocks * PAGE, Hk, D] values
    k_scale_ptr,  # [num_blocks * PAGE, Hk] float32 scales of an int8 cache (unused otherwise)
    v_scale_ptr,
    block_tables_ptr,  # [B, max_blocks] int32
    context_lens_ptr,  # [B] int32, tokens to attend to (0 for a padding row)
    out_ptr,  # [B, Hq, D] output, written when SPLITS == 1
    part_acc_ptr,  # [B, Hq, SPLITS, D] float32 unnormalised partial outputs
    part_ml_ptr,  # [B, Hq, SPLITS, 2] float32 partial running max (log2 domain) and sum
    qk_scale,  # softmax scale * log2(e)
    stride_qb, stride_qh, stride_ob, stride_oh, stride_bt,
    HK: tl.constexpr, GROUP: tl.constexpr, BLOCK_G: tl.constexpr,
    D: tl.constexpr, BLOCK_D: tl.constexpr, PAGE: tl.constexpr, BLOCK_N: tl.constexpr,
    SPLITS: tl.constexpr, IEEE: tl.constexpr, KV_INT8: tl.constexpr, CUDA_CORES: tl.constexpr, F16: tl.constexpr,
    PTX: tl.constexpr, HEADS_FIRST: tl.constexpr, PDL: tl.constexpr,
):
    launch_next(PDL)
    wait_for_previous(PDL)
    if HEADS_FIRST:
        kvh = tl.program_id(0)
        b = tl.program_id(1).to(tl.int64)
    else:
        b = tl.program_id(0).to(tl.int64)
        kvh = tl.program_id(1)
    split = tl.program_id(2)
    ctx = tl.load(context_lens_ptr + b)
    per_split = tl.cdiv(tl.cdiv(ctx, SPLITS), BLOCK_N) * BLOCK_N
    start = split * per_split
    end = tl.minimum(start + per_split, ctx)

    g = tl.arange(0, BLOCK_G)
    d = tl.arange(0, BLOCK_D)
    heads = kvh * GROUP + g
    gmask = g < GROUP
    dmask = d < D
    q = tl.load(q_ptr + b * stride_qb + heads[:, None] * stride_qh + d[None, :],
                mask=gmask[:, None] & dmask[None, :], other=0.0)
    m = tl.full([BLOCK_G], float("-inf"), tl.float32)
    l = tl.zeros([BLOCK_G], tl.float32)
    if CUDA_CORES:
        m, l, acc = _attend_on_cuda_cores(q.to(tl.float32), m, l, k_cache_ptr, v_cache_ptr, k_scale_ptr, v_scale_ptr,
                                          block_tables_ptr, b, stride_bt, kvh, start, end, qk_scale, HK, D, BLOCK_D,
                                          PAGE, BLOCK_N, PTX)
    else:
        m, l, acc = _attend_on_tensor_cores(q, m, l, k_cache_ptr, v_cache_ptr, k_scale_ptr, v_scale_ptr,
                                            block_tables_ptr, b, stride_bt, kvh, start, end, qk_scale, HK, D,
                                            BLOCK_G, BLOCK_D, PAGE, BLOCK_N, IEEE, KV_INT8, F16, PTX)

    out_mask = gmask[:, None] & dmask[None, :]
    if SPLITS == 1:
        out = acc / tl.where(l > 0, l, 1.0)[:, None]
        tl.store(out_ptr + b * stride_ob + heads[:, None] * stride_oh + d[None, :],
                 out.to(out_ptr.dtype.element_ty), mask=out_mask)
    else:
        part = (b * (HK * GROUP) + heads) * SPLITS + split
        tl.store(part_acc_ptr + part[:, None] * D + d[None, :], acc, mask=out_mask)
        tl.store(part_ml_ptr + part * 2, m, mask=gmask)
        tl.store(part_ml_ptr + part * 2 + 1, l, mask=gmask)


@triton.jit
def _combine_kernel(
    part_acc_ptr,  # [B, Hq, SPLITS, D] float32
    part_ml_ptr,  # [B, Hq, SPLITS, 2] float32
    out_ptr,  # [B, Hq, D]
    stride_ob, stride_oh,
    HQ: tl.constexpr, D: tl.constexpr, BLOCK_D: tl.constexpr, SPLITS: tl.constexpr, PDL: tl.constexpr,
):
    launch_next(PDL)
    wait_for_previous(PDL)
    b = tl.program_id(0).to(tl.int64)
    h = tl.program_id(1)
    base = (b * HQ + h) * SPLITS
    s = tl.arange(0, SPLITS)
    d = tl.arange(0, BLOCK_D)
    m = tl.load(part_ml_ptr + (base + s) * 2)
    l = tl.load(part_ml_ptr + (base + s) * 2 + 1)
    m_max = tl.max(m, axis=0)
    m_max = tl.where(m_max > float("-inf"), m_max, 0.0)  # every split empty: a padding row
    w = tl.where(l > 0, tl.exp2(m - m_max), 0.0)
    total = tl.sum(l * w, axis=0)
    acc = tl.load(part_acc_ptr + (base + s)[:, None] * D + d[None, :], mask=d[None, :] < D, other=0.0)
    out = tl.sum(acc * w[:, None], axis=0) / tl.where(total > 0, total, 1.0)
    tl.store(out_ptr + b * stride_ob + h * stride_oh + d, out.to(out_ptr.dtype.element_ty), mask=d < D)


MAX_SPLITS = 32


def decode_num_splits(batch: int, kv_heads: int, max_context_len: int, num_sms: int,
                      block_n: int = 64) -> int:
    """Enough programs to fill the GPU about twice, without splits shorter than one tile."""
    wanted = triton.cdiv(2 * num_sms, max(1, batch * kv_heads))
    longest = triton.cdiv(max(1, max_context_len), block_n)
    return triton.next_power_of_2(max(1, min(wanted, longest, MAX_SPLITS)))


def paged_decode_attention(q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor,
                           block_tables: torch.Tensor, context_lens: torch.Tensor, scale: float,
                           num_splits: int, out: torch.Tensor | None = None, k_scales: torch.Tensor | None = None,
                           v_scales: torch.Tensor | None = None, *, block_n: int | None = None,
                           num_stages: int = 2) -> torch.Tensor:
    """q: [B, Hq, D]; caches: [num_blocks, page, Hk, D] (int8 ones with their scales
    [num_blocks, page, Hk], see kv_int8.py); returns [B, Hq, D]. num_splits is a power of two
    fixed by the caller (fixed per CUDA-graph batch size), and the context is cut into that many
    parts at run time. block_n (keys per tile) and num_stages may be given (benchmarks); num_stages
    changes nothing on CUDA cores, where no load goes through shared memory."""
    batch, hq, dim = q.shape
    _, page, hk, _ = k_cache.shape
    assert k_cache.is_contiguous() and v_cache.is_contiguous() and q.stride(2) == 1
    assert hq % hk == 0 and num_splits & (num_splits - 1) == 0 and block_tables.dtype == torch.int32
    kv_int8 = check_kv_scales(k_cache, k_scales, v_scales)
    out = torch.empty_like(q) if out is None else out
    if batch == 0:
        return out
    group = hq // hk
    cuda_cores = kv_int8 and group == 1  # see the module docstring
    # F16: grouped heads over an int8 cache multiply in float16 (float32 queries keep float32
    # products); PTX: codes converted by inline assembly (an NVIDIA GPU). Both read codes as words.
    whole_words = dim % 4 == 0 and dim & (dim - 1) == 0
    f16 = kv_int8 and not cuda_cores and q.dtype != torch.float32 and whole_words
    ptx = kv_int8 and q.is_cuda and torch.version.cuda is not None and whole_words
    pdl = dependent_launch(q)
    # 32 keys over an int8 cache (on CUDA cores two tiles' codes and a row per key fit in 128
    # registers with 4 warps; on the tensor cores measured fastest too)
    block_n = block_n or max(page, 32 if kv_int8 else 64 if dim <= 128 else 32)
    parts = (torch.empty(batch, hq, num_splits, dim, dtype=torch.float32, device=q.device),
             torch.empty(batch, hq, num_splits, 2, dtype=torch.float32, device=q.device)) \
        if num_splits > 1 else (out, out)
    _decode_kernel[(hk, batch, num_splits) if cuda_cores else (batch, hk, num_splits)](
        q, k_cache, v_cache, k_scales if kv_int8 else k_cache, v_scales if kv_int8 else v_cache, block_tables,
        context_lens, out, parts[0], parts[1], scale * _LOG2E,
        q.stride(0), q.stride(1), out.stride(0), out.stride(1), block_tables.stride(0),
        HK=hk, GROUP=group, BLOCK_G=1 if cuda_cores else max(16, triton.next_power_of_2(group)), D=dim,
        BLOCK_D=triton.next_power_of_2(dim), PAGE=page, BLOCK_N=block_n, SPLITS=num_splits,
        IEEE=q.dtype == torch.float32, KV_INT8=kv_int8, CUDA_CORES=cuda_cores, F16=f16, PTX=ptx, HEADS_FIRST=cuda_cores,
        PDL=pdl,
        launch_pdl=pdl, num_warps=4, num_stages=num_stages)
    if num_splits > 1:
        _combine_kernel[(batch, hq)](parts[0], parts[1], out, out.stride(0), out.stride(1), HQ=hq, D=dim,
                                     BLOCK_D=triton.next_power_of_2(dim), SPLITS=num_splits, PDL=pdl, launch_pdl=pdl,
                                     num_warps=4)
    return out
