"""Rotary position embedding (Llama's rotate-half layout): q rotated in place, and k rotated on
its way into the paged KV cache together with v, in one kernel (a decode step touches each of
q, k and v once)."""

from __future__ import annotations

import torch
import triton
import triton.language as tl


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
                        slot_mapping: torch.Tensor) -> None:
    """q: [T, Hq, D], k and v: [T, Hk, D]; caches: [num_blocks, block_size, Hk, D]. Rotate q in
    place; write the rotated k, and v, into the caches at slot_mapping ([T]: block * block_size +
    offset; -1 marks a padding token that is not written). k itself is left as it was."""
    k = k.clone()
    rotary_ref(q, k, positions, cos_sin)
    keep = slot_mapping >= 0
    slots = slot_mapping[keep]
    k_cache.view(-1, *k_cache.shape[2:])[slots] = k[keep]
    v_cache.view(-1, *v_cache.shape[2:])[slots] = v[keep]


@triton.jit
def _rotary_write_kv_kernel(
    q_ptr,  # [T, Hq, D], rotated in place
    k_ptr,  # [T, Hk, D], read
    v_ptr,  # [T, Hk, D], read
    pos_ptr,  # [T] int64 positions
    cos_sin_ptr,  # [max_positions, D] float32
    k_cache_ptr,  # [slots, Hk, D] contiguous
    v_cache_ptr,
    slot_ptr,  # [T] int64, -1 = padding
    stride_qt, stride_qh, stride_kt, stride_vt,
    HQ: tl.constexpr, HK: tl.constexpr, BLOCK_HQ: tl.constexpr, BLOCK_HK: tl.constexpr,
    HALF: tl.constexpr, BLOCK_HALF: tl.constexpr,
):
    t = tl.program_id(0).to(tl.int64)
    pos = tl.load(pos_ptr + t)
    dims = tl.arange(0, BLOCK_HALF)[None, :]
    cos = tl.load(cos_sin_ptr + pos * 2 * HALF + dims, mask=dims < HALF)
    sin = tl.load(cos_sin_ptr + pos * 2 * HALF + HALF + dims, mask=dims < HALF)
    _rotate(q_ptr + t * stride_qt, stride_qh, cos, sin, HQ, BLOCK_HQ, HALF, BLOCK_HALF)
    slot = tl.load(slot_ptr + t)
    if slot >= 0:
        heads = tl.arange(0, BLOCK_HK)[:, None]
        mask = (heads < HK) & (dims < HALF)
        row = heads * 2 * HALF + dims  # heads and dims contiguous within a token, here and in the cache
        k1 = tl.load(k_ptr + t * stride_kt + row, mask=mask).to(tl.float32)
        k2 = tl.load(k_ptr + t * stride_kt + row + HALF, mask=mask).to(tl.float32)
        out = k_cache_ptr + slot * HK * 2 * HALF + row
        tl.store(out, (k1 * cos - k2 * sin).to(k_cache_ptr.dtype.element_ty), mask=mask)
        tl.store(out + HALF, (k2 * cos + k1 * sin).to(k_cache_ptr.dtype.element_ty), mask=mask)
        v_out = v_cache_ptr + slot * HK * 2 * HALF + row
        tl.store(v_out, tl.load(v_ptr + t * stride_vt + row, mask=mask), mask=mask)
        tl.store(v_out + HALF, tl.load(v_ptr + t * stride_vt + row + HALF, mask=mask), mask=mask)


def rotary_write_kv(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, positions: torch.Tensor,
                    cos_sin: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor,
                    slot_mapping: torch.Tensor) -> None:
    """One kernel for rotary_write_kv_ref: a decode step's q, k and v are touched once."""
    t, hq, d = q.shape
    hk = k.shape[1]
    assert q.stride(2) == 1 and cos_sin.shape[1] == d and cos_sin.dtype == torch.float32
    assert v.shape == k.shape and k_cache.shape[2:] == (hk, d) and k_cache.is_contiguous() and v_cache.is_contiguous()
    assert k.stride(1) == d and k.stride(2) == 1 and v.stride(1) == d and v.stride(2) == 1
    assert slot_mapping.shape == (t,) and slot_mapping.dtype == torch.int64
    if t == 0:
        return
    half = d // 2
    _rotary_write_kv_kernel[(t,)](q, k, v, positions, cos_sin, k_cache, v_cache, slot_mapping,
                                  q.stride(0), q.stride(1), k.stride(0), v.stride(0),
                                  HQ=hq, HK=hk, BLOCK_HQ=triton.next_power_of_2(hq),
                                  BLOCK_HK=triton.next_power_of_2(hk), HALF=half,
                                  BLOCK_HALF=triton.next_power_of_2(half), num_warps=4)
