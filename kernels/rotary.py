"""Rotary position embedding (Llama's rotate-half layout), applied to q and k in place."""

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


@triton.jit
def _rotary_kernel(
    q_ptr,  # [T, Hq, D], rotated in place
    k_ptr,  # [T, Hk, D], rotated in place
    pos_ptr,  # [T] int64 positions
    cos_sin_ptr,  # [max_positions, D] float32: cos then sin of each frequency
    stride_qt, stride_qh, stride_kt, stride_kh,
    HQ: tl.constexpr, HK: tl.constexpr, BLOCK_HQ: tl.constexpr, BLOCK_HK: tl.constexpr,
    HALF: tl.constexpr, BLOCK_HALF: tl.constexpr,
):
    t = tl.program_id(0).to(tl.int64)
    pos = tl.load(pos_ptr + t)
    dims = tl.arange(0, BLOCK_HALF)[None, :]
    cos = tl.load(cos_sin_ptr + pos * 2 * HALF + dims, mask=dims < HALF)
    sin = tl.load(cos_sin_ptr + pos * 2 * HALF + HALF + dims, mask=dims < HALF)
    _rotate(q_ptr + t * stride_qt, stride_qh, cos, sin, HQ, BLOCK_HQ, HALF, BLOCK_HALF)
    _rotate(k_ptr + t * stride_kt, stride_kh, cos, sin, HK, BLOCK_HK, HALF, BLOCK_HALF)


def rotary(q: torch.Tensor, k: torch.Tensor, positions: torch.Tensor, cos_sin: torch.Tensor) -> None:
    t, hq, d = q.shape
    hk = k.shape[1]
    assert q.stride(2) == 1 and k.stride(2) == 1 and cos_sin.shape[1] == d and cos_sin.dtype == torch.float32
    if t == 0:
        return
    half = d // 2
    _rotary_kernel[(t,)](q, k, positions, cos_sin, q.stride(0), q.stride(1), k.stride(0), k.stride(1),
                         HQ=hq, HK=hk, BLOCK_HQ=triton.next_power_of_2(hq), BLOCK_HK=triton.next_power_of_2(hk),
                         HALF=half, BLOCK_HALF=triton.next_power_of_2(half), num_warps=4)
