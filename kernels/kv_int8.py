"""The int8 KV cache: each (token, KV head) row of head_dim values is stored as int8 with one
float32 scale, written by the rotary/KV-write kernel and read back inside the attention kernels.

    k_cache, v_cache    int8     [num_blocks, block_size, Hk, D]   block-major, as the bf16 cache
    k_scales, v_scales  float32  [num_blocks, block_size, Hk]      one scale per cache row

    stored:  c = floor(x * 127 / amax + 1/2), amax = max |x| over the row (k after rotary)
    read:    x ~ c * scale, scale = amax / 127  (an all-zero row stores scale 0 and zeros)

For the whole model the scales are one tensor [layers, 2, num_blocks, block_size, Hk] beside the
cache [layers, 2, num_blocks, block_size, Hk, D]: a row's scale lives in the same slot of the
same block, so prefix caching and preemption move nothing extra. A row takes D + 4 bytes
(132 for D = 128, against 256 in bf16). The rounding is written out (not torch.round) so the
kernels and this reference agree bit for bit.
"""

from __future__ import annotations

import torch


def quantize_kv_ref(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """x: [T, H, D] -> (int8 [T, H, D], float32 scales [T, H])."""
    x = x.float()
    amax = x.abs().amax(-1)
    inv = torch.where(amax > 0, 127.0 / amax, torch.zeros_like(amax))
    codes = torch.floor(x * inv[..., None] + 0.5).clamp(-127, 127).to(torch.int8)
    return codes, amax / 127.0


def dequantize_kv_ref(codes: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
    """int8 [..., D] and scales [...] -> float32 [..., D]."""
    return codes.float() * scales[..., None]


def check_kv_scales(k_cache: torch.Tensor, k_scales: torch.Tensor | None, v_scales: torch.Tensor | None) -> bool:
    """Whether the cache is int8, after checking that it comes with scales of the right shape."""
    if k_cache.dtype != torch.int8:
        return False
    assert k_scales is not None and v_scales is not None, "an int8 KV cache needs its scales"
    assert k_scales.shape == v_scales.shape == k_cache.shape[:3] and k_scales.dtype == torch.float32
    assert k_scales.is_contiguous() and v_scales.is_contiguous()
    return True
