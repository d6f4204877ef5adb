"""Paged decode attention with split-K (flash-decoding).

One query token per sequence. Program (sequence b, KV head h, split s) takes the queries of every
query head that shares KV head h (GQA) and its share of the context, reading the keys and values
block by block through the block table; it keeps a running max and sum (online softmax). With
several splits, a second kernel merges the partial results, so a long context at a small batch
still spreads over the whole GPU.

Over an int8 cache each program is one warp (measured on an H200 at 64 x 8,192 keys: 7B 72 -> 93 %
of copy bandwidth, 34B 44 -> 68 %). With four warps the kernel read its memory about as fast as its
access pattern allowed (a load-only copy of it: 78 %), because every tile's reductions crossed
warps through shared memory and barriers (ten per tile); one-warp programs, many more of them per
SM, have none (a load-only copy: 97 %). Being smaller, they take more splits (decode_num_splits).
And the running max moves only when a tile's score passes it by LAZY_MAX (log2; on the first tile
always): most tiles then skip rescaling what came before, and the probabilities, below
2^LAZY_MAX, are as exact in float32 and float16 as those below 1.

With one query head per KV head (7B, 13B) an int8 cache runs on CUDA cores (CUDA_CORES): the MMA
would pad the single query row to 16 rows. Each lane turns its codes to float32 in registers and
keeps one partial output row per key of the 8-key tile, summed once per split; the next tile's
codes are loaded while this one is computed (its pages looked up a tile earlier); on the GPU the
codes arrive as int32 words and one `prmt` per code builds 2^23 + 128 + c (PTX).

With several query heads per KV head (34B, 70B) an int8 cache stays on the tensor cores, in float16
(F16): its codes are whole numbers below 128, exact in float16, built from the loaded words in
registers (on the GPU two prmt and two sub.f16x2 per four codes), so the tile enters the MMA as
float16 does; converting int8 codes to bfloat16 operands had Triton fetch them from shared memory
one byte at a time. Float16 also keeps three more bits of each probability than bfloat16.

Over an int8 cache the programs of one sequence's KV heads run side by side (HEADS_FIRST), so they
share the DRAM pages and scale lines that hold their rows (a row's scale is 4 bytes, HK of them in
a line): at 34B on an H200, 64 x 8,192 keys 68.5 -> 70.2 % of copy bandwidth, 256 x 512 59.7 -> 62.9.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .attention_tiles import dot_keys, dot_values
from .dependent_launch import dependent_launch, launch_next, wait_for_previous
from .gemv_input import row_scale
from .kv_int8 import check_kv_scales, codes_to_f32, int8_rows, load_int8_rows, load_int8_tile, words_to_f16
from .ptx import runs_ptx

_LOG2E = 1.4426950408889634
LAZY_MAX = tl.constexpr(8.0)  # log2: probabilities up to 256 before the running max moves


@triton.jit
def _softmax_step(s, m, l):
    """The online softmax over a tile's scores s [G, N] (log2 domain): the probabilities, the
    factor that rescales what came before, and the new running max and sum."""
    m_new = tl.maximum(m, tl.max(s, axis=1))
    alpha = tl.exp2(m - m_new)
    p = tl.exp2(s - m_new[:, None])
    return p, alpha, m_new, l * alpha + tl.sum(p, axis=1)


@triton.jit
def _lazy_softmax_step(s, m, l, acc):
    """The online softmax's step, the max moved only when a row's score passes it by LAZY_MAX (a
    branch for all rows: in most tiles none does, and nothing before is rescaled): the
    probabilities, and the running max, sum and output rows."""
    if tl.max(tl.max(s, axis=1) - m, axis=0) > LAZY_MAX:
        m_new = tl.maximum(m, tl.max(s, axis=1))
        alpha = tl.exp2(m - m_new)
        acc = acc * alpha[:, None]
        l = l * alpha
        m = m_new
    p = tl.exp2(s - m[:, None])
    return p, m, l + tl.sum(p, axis=1), acc


@triton.jit
def _tile_slots(block_tables_ptr, b, stride_bt, t, end, PAGE: tl.constexpr):
    """The cache slots of tokens t, a tensor or one (0 for those from end on, which are never read)."""
    page = tl.load(block_tables_ptr + b * stride_bt + t // PAGE, mask=t < end, other=0).to(tl.int64)
    return page * PAGE + t % PAGE


@triton.jit
def _attend_on_cuda_cores(q, k_cache_ptr, v_cache_ptr, k_scale_ptr, v_scale_ptr, block_tables_ptr, b, stride_bt, kvh,
                          start, end, qk_scale, HK: tl.constexpr, D: tl.constexpr, BLOCK_D: tl.constexpr,
                          PAGE: tl.constexpr, BLOCK_N: tl.constexpr, PTX: tl.constexpr):
    """One query row (float32 [1, BLOCK_D]) over the int8 keys and values start .. end - 1, by one
    warp: the running max and sum ([1]) and the output row. A tile lies in one page (BLOCK_N
    divides PAGE), so it is one page lookup and one offset from fixed places; the next tile is
    loaded while this one is computed, and the max moves lazily (module docstring)."""
    q = q * qk_scale
    offs = tl.arange(0, BLOCK_N)
    at = int8_rows(k_cache_ptr, v_cache_ptr, k_scale_ptr, v_scale_ptr, offs, kvh, HK, D, BLOCK_D, PTX)
    first = _tile_slots(block_tables_ptr, b, stride_bt, start, end, PAGE)
    k, v, k_scale, v_scale = load_int8_rows(*at, first, start + offs < end, HK, D, BLOCK_D, PTX)
    first = _tile_slots(block_tables_ptr, b, stride_bt, start + BLOCK_N, end, PAGE)
    m = float("-inf")
    l = 0.0
    acc = tl.zeros([BLOCK_N, BLOCK_D], tl.float32)  # a row per key: no tile needs a sum across lanes
    for n0 in range(start, end, BLOCK_N):
        k_next, v_next, k_scale_next, v_scale_next = load_int8_rows(*at, first, n0 + BLOCK_N + offs < end, HK, D,
                                                                    BLOCK_D, PTX)
        first = _tile_slots(block_tables_ptr, b, stride_bt, n0 + 2 * BLOCK_N, end, PAGE)
        # each key's scale multiplies its score, each value's goes with its probability
        s = tl.where(n0 + offs < end, tl.sum(q * codes_to_f32(k, PTX), axis=1) * k_scale, float("-inf"))
        top = tl.max(s, axis=0)
        if top > m + LAZY_MAX:
            alpha = tl.exp2(m - top)
            acc = acc * alpha
            l = l * alpha
            m = top
        p = tl.exp2(s - m)
        l += tl.sum(p, axis=0)
        acc += (p * v_scale)[:, None] * codes_to_f32(v, PTX)
        k, v, k_scale, v_scale = k_next, v_next, k_scale_next, v_scale_next
    return tl.zeros([1], tl.float32) + m, tl.zeros([1], tl.float32) + l, tl.sum(acc, axis=0, keep_dims=True)


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
        if F16:
            p, m, l, acc = _lazy_softmax_step(s, m, l, acc)
            v_top = tl.max(v_scale, axis=0)
            v_top = tl.where(v_top > 0, v_top, 1.0)
            p = (p * (v_scale / v_top)[None, :]).to(tl.float16)
            acc += tl.dot(p, words_to_f16(v, PTX)) * v_top
        else:
            p, alpha, m, l = _softmax_step(s, m, l)
            v = tl.load(v_cache_ptr + rows[:, None] + d[None, :], mask=kv_mask, other=0.0)
            if KV_INT8:  # each value's scale goes with its probability
                p = p * tl.load(v_scale_ptr + slots * HK + kvh, mask=tmask, other=0.0)[None, :]
            acc = acc * alpha[:, None] + dot_values(p, v, q.dtype, IEEE)  # the rescale beside the MMA, not before
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
    if CUDA_CORES:
        m, l, acc = _attend_on_cuda_cores(q.to(tl.float32), k_cache_ptr, v_cache_ptr, k_scale_ptr, v_scale_ptr,
                                          block_tables_ptr, b, stride_bt, kvh, start, end, qk_scale, HK, D, BLOCK_D,
                                          PAGE, BLOCK_N, PTX)
    else:
        m = tl.full([BLOCK_G], float("-inf"), tl.float32)
        l = tl.zeros([BLOCK_G], tl.float32)
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


def decode_num_splits(batch: int, kv_heads: int, max_context_len: int, num_sms: int, kv_int8: bool = False,
                      group: int = 1) -> int:
    """Enough programs to fill the GPU about twice, without splits shorter than a tile (64 keys; 32
    over int8). Over an int8 cache a program is one warp, a quarter of the others: on CUDA cores
    (group 1) four times as many, with grouped heads (their tiles take more registers) twice as many
    (measured best on an H200)."""
    per_sm = (8 if group == 1 else 4) if kv_int8 else 2
    wanted = triton.cdiv(per_sm * num_sms, max(1, batch * kv_heads))
    longest = triton.cdiv(max(1, max_context_len), 32 if kv_int8 else 64)
    return triton.next_power_of_2(max(1, min(wanted, longest, MAX_SPLITS)))


def paged_decode_attention(q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor,
                           block_tables: torch.Tensor, context_lens: torch.Tensor, scale: float,
                           num_splits: int, out: torch.Tensor | None = None, k_scales: torch.Tensor | None = None,
                           v_scales: torch.Tensor | None = None, *, block_n: int | None = None,
                           num_stages: int = 2) -> torch.Tensor:
    """q: [B, Hq, D]; caches: [num_blocks, page, Hk, D] (int8 ones with their scales
    [num_blocks, page, Hk], see kv_int8.py); returns [B, Hq, D]. num_splits is a power of two
    fixed by the caller (fixed per CUDA-graph batch size; decode_num_splits), and the context is cut
    into that many parts at run time. block_n (keys per tile) and num_stages may be given
    (benchmarks); num_stages changes nothing on CUDA cores, where no load goes through shared memory."""
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
    ptx = kv_int8 and runs_ptx(q) and whole_words
    pdl = dependent_launch(q)
    # over an int8 cache one warp a program, 8 keys a tile on CUDA cores (two tiles' codes and a
    # row per key in registers; fewer if a page is shorter), 32 on the tensor cores (measured fastest)
    block_n = block_n or (min(8, page) if cuda_cores else 32 if kv_int8 else max(page, 64 if dim <= 128 else 32))
    assert not cuda_cores or page % block_n == 0, "on CUDA cores a tile lies in one page"
    parts = (torch.empty(batch, hq, num_splits, dim, dtype=torch.float32, device=q.device),
             torch.empty(batch, hq, num_splits, 2, dtype=torch.float32, device=q.device)) \
        if num_splits > 1 else (out, out)
    heads_first = kv_int8  # see the module docstring
    _decode_kernel[(hk, batch, num_splits) if heads_first else (batch, hk, num_splits)](
        q, k_cache, v_cache, k_scales if kv_int8 else k_cache, v_scales if kv_int8 else v_cache, block_tables,
        context_lens, out, parts[0], parts[1], scale * _LOG2E,
        q.stride(0), q.stride(1), out.stride(0), out.stride(1), block_tables.stride(0),
        HK=hk, GROUP=group, BLOCK_G=1 if cuda_cores else max(16, triton.next_power_of_2(group)), D=dim,
        BLOCK_D=triton.next_power_of_2(dim), PAGE=page, BLOCK_N=block_n, SPLITS=num_splits,
        IEEE=q.dtype == torch.float32, KV_INT8=kv_int8, CUDA_CORES=cuda_cores, F16=f16, PTX=ptx, HEADS_FIRST=heads_first,
        PDL=pdl, launch_pdl=pdl, num_warps=1 if kv_int8 else 4, num_stages=num_stages)
    if num_splits > 1:
        _combine_kernel[(batch, hq)](parts[0], parts[1], out, out.stride(0), out.stride(1), HQ=hq, D=dim,
                                     BLOCK_D=triton.next_power_of_2(dim), SPLITS=num_splits, PDL=pdl, launch_pdl=pdl,
                                     num_warps=4)
    return out
