"""Rotary position embedding (Llama's rotate-half layout): q rotated in place, and k rotated on
its way into the paged KV cache together with v, in one kernel (a decode step touches each of
q, k and v once)."""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .dependent_launch import dependent_launch, launch_next, wait_for_previous
from .kv_int8 import check_kv_scales, quantize_kv_ref


def rotary_cos_sin(head_dim: int, max_positions: int, theta: float, scaling_factor: float = 1.0,
                   device: torch.device | str = "cpu") -> torch.Tensor:
    """[max_positions, head_dim] float32: cos of the head_dim/2 frequencies, then their sin.
    Linear scaling divides positions by the factor (position interpolation)."""
    inv_freq = 1.0 / theta ** (torch.arange(0, head_dim, 2, dtype=torch.int64, device=device).float() / head_dim)
    positions = torch.arange(max_positions, dtype=torch.float32, device=device) / scaling_factor
    freqs = torch.outer(positions, inv_freq)
    return torch.cat([freqs.cos(), freqs.sin()], dim=-1)


def rotary_ref(q: torch.Tensor, k: torch.Tensor, positions: torch.Tensor, cos_sin: torch.Tensor) -> None:
    """q: [T, Hq, D], k: [T, Hk, D], positions: [T]; rotates both in place."""
    half = q.shape[-1] // 2
    cs = cos_sin[positions]
    cos, sin = cs[:, None, :half], cs[:, None, half:]
    for x in (q, k):
        x1, x2 = x[..., :half].float(), x[..., half:].float()
        rotated = torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1)
        x.copy_(rotated.to(x.dtype))


@triton.jit
def _rotate(x_ptr, stride_h, cos, sin, H: tl.constexpr, BLOCK_H: tl.constexpr, HALF: tl.constexpr,
            BLOCK_HALF: tl.constexpr):
    heads = tl.arange(0, BLOCK_H)[:, None]
    dims = tl.arange(0, BLOCK_HALF)[None, :]
    mask = (heads < H) & (dims < HALF)
    p1 = x_ptr + heads * stride_h + dims
    x1 = tl.load(p1, mask=mask).to(tl.float32)
    x2 = tl.load(p1 + HALF, mask=mask).to(tl.float32)
    tl.store(p1, (x1 * cos - x2 * sin).to(x_ptr.dtype.element_ty), mask=mask)
    tl.store(p1 + HALF, (x2 * cos + x1 * sin).to(x_ptr.dtype.element_ty), mask=mask)


def rotary_write_kv_ref(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, positions: torch.Tensor,
                        cos_sin: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor,
                        slot_mapping: torch.Tensor, k_scales: torch.Tensor | None = None,
                        v_scales: torch.Tensor | None = None) -> None:
    """q: [T, Hq, D], k and v: [T, Hk, D]; caches: [num_blocks, block_size, Hk, D]. Rotate q in
    place; write the rotated k, and v, into the caches at slot_mapping ([T]: block * block_size +
    offset; -1 marks a padding token that is not written). k itself is left as it was. An int8
    cache stores the rows quantized, their scales going to k_scales / v_scales
    ([num_blocks, block_size, Hk], see kernels/kv_int8.py)."""
    k = k.clone()
    rotary_ref(q, k, positions, cos_sin)
    keep = slot_mapping >= 0
    slots = slot_mapping[keep]
    for x, cache, scales in ((k, k_cache, k_scales), (v, v_cache, v_scales)):
        rows = x[keep]
        if cache.dtype == torch.int8:
            rows, row_scales = quantize_kv_ref(rows)
            scales.view(-1, scales.shape[2])[slots] = row_scales
        cache.view(-1, *cache.shape[2:])[slots] = rows


@triton.jit
def _store_row(cache_ptr, scale_ptr, slot, row, mask, x1, x2, HK: tl.constexpr, BLOCK_HK: tl.constexpr,
               HALF: tl.constexpr, KV_INT8: tl.constexpr):
    """Write one token's [heads, 2 * HALF] row (as halves x1, x2, float32) into a cache slot."""
    out = cache_ptr + slot * HK * 2 * HALF + row
    if KV_INT8:  # one scale per head (see kv_int8.py)
        amax = tl.maximum(tl.max(tl.abs(x1), axis=1), tl.max(tl.abs(x2), axis=1))
        inv = tl.where(amax > 0, 127.0 / tl.where(amax > 0, amax, 1.0), 0.0)[:, None]
        tl.store(out, tl.clamp(tl.floor(x1 * inv + 0.5), -127.0, 127.0).to(tl.int8), mask=mask)
        tl.store(out + HALF, tl.clamp(tl.floor(x2 * inv + 0.5), -127.0, 127.0).to(tl.int8), mask=mask)
        heads = tl.arange(0, BLOCK_HK)
        tl.store(scale_ptr + slot * HK + heads, amax / 127.0, mask=heads < HK)
    else:
        tl.store(out, x1.to(cache_ptr.dtype.element_ty), mask=mask)
        tl.store(out + HALF, x2.to(cache_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _rotary_write_kv_kernel(
    q_ptr,  # [T, Hq, D], rotated in place
    k_ptr,  # [T, Hk, D], read
    v_ptr,  # [T, Hk, D], read
    pos_ptr,  # [T] int64 positions
    cos_sin_ptr,  # [max_positions, D] float32
    k_cache_ptr,  # [slots, Hk, D] contiguous
    v_cache_ptr,
    k_scale_ptr,  # [slots, Hk] float32 scales of an int8 cache (unused otherwise)
    v_scale_ptr,
    slot_ptr,  # [T] int64, -1 = padding
    stride_qt, stride_qh, stride_kt, stride_vt,
    HQ: tl.constexpr, HK: tl.constexpr, BLOCK_HQ: tl.constexpr, BLOCK_HK: tl.constexpr,
    HALF: tl.constexpr, BLOCK_HALF: tl.constexpr, KV_INT8: tl.constexpr, PDL: tl.constexpr,
):
    launch_next(PDL)
    wait_for_previous(PDL)
    t = tl.program_id(0).to(tl.int64)
    pos = tl.load(pos_ptr + t)
    dims = tl.arange(0, BLOCK_HALF)[None, :]
    cos = tl.load(cos_sin_ptr + pos * 2 * HALF + dims, mask=dims < HALF, other=0.0)
    sin = tl.load(cos_sin_ptr + pos * 2 * HALF + HALF + dims, mask=dims < HALF, other=0.0)
    _rotate(q_ptr + t * stride_qt, stride_qh, cos, sin, HQ, BLOCK_HQ, HALF, BLOCK_HALF)
    slot = tl.load(slot_ptr + t)
    if slot >= 0:
        heads = tl.arange(0, BLOCK_HK)[:, None]
        mask = (heads < HK) & (dims < HALF)
        row = heads * 2 * HALF + dims  # heads and dims contiguous within a token, here and in the cache
        k1 = tl.load(k_ptr + t * stride_kt + row, mask=mask, other=0.0).to(tl.float32)
        k2 = tl.load(k_ptr + t * stride_kt + row + HALF, mask=mask, other=0.0).to(tl.float32)
        k1, k2 = k1 * cos - k2 * sin, k2 * cos + k1 * sin
        if KV_INT8:  # quantized from k's dtype, as the reference rotates k in place
            k1, k2 = k1.to(k_ptr.dtype.element_ty).to(tl.float32), k2.to(k_ptr.dtype.element_ty).to(tl.float32)
        _store_row(k_cache_ptr, k_scale_ptr, slot, row, mask, k1, k2, HK, BLOCK_HK, HALF, KV_INT8)
        v1 = tl.load(v_ptr + t * stride_vt + row, mask=mask, other=0.0).to(tl.float32)
        v2 = tl.load(v_ptr + t * stride_vt + row + HALF, mask=mask, other=0.0).to(tl.float32)
        _store_row(v_cache_ptr, v_scale_ptr, slot, row, mask, v1, v2, HK, BLOCK_HK, HALF, KV_INT8)


def rotary_write_kv(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, positions: torch.Tensor,
                    cos_sin: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor,
                    slot_mapping: torch.Tensor, k_scales: torch.Tensor | None = None,
                    v_scales: torch.Tensor | None = None) -> None:
    """One kernel for rotary_write_kv_ref: a decode step's q, k and v are touched once."""
    t, hq, d = q.shape
    hk = k.shape[1]
    assert q.stride(2) == 1 and cos_sin.shape[1] == d and cos_sin.dtype == torch.float32
    assert v.shape == k.shape and k_cache.shape[2:] == (hk, d) and k_cache.is_contiguous() and v_cache.is_contiguous()
    assert k.stride(1) == d and k.stride(2) == 1 and v.stride(1) == d and v.stride(2) == 1
    assert slot_mapping.shape == (t,) and slot_mapping.dtype == torch.int64
    kv_int8 = check_kv_scales(k_cache, k_scales, v_scales)
    if t == 0:
        return
    half = d // 2
    pdl = dependent_launch(q)
    _rotary_write_kv_kernel[(t,)](q, k, v, positions, cos_sin, k_cache, v_cache,
                                  k_scales if kv_int8 else k_cache, v_scales if kv_int8 else v_cache, slot_mapping,
                                  q.stride(0), q.stride(1), k.stride(0), v.stride(0),
                                  HQ=hq, HK=hk, BLOCK_HQ=triton.next_power_of_2(hq),
                                  BLOCK_HK=triton.next_power_of_2(hk), HALF=half,
                                  BLOCK_HALF=triton.next_power_of_2(half), KV_INT8=kv_int8, PDL=pdl,
                                  launch_pdl=pdl, num_warps=4)
