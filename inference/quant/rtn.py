"""Round-to-nearest quantization of a dense weight: the step `codellama convert --quant` ends with
(after AWQ has scaled the weight's input channels, or directly for int8)."""

from __future__ import annotations

import torch

from .unpacked import UnpackedWeight


def quantize_rtn(w: torch.Tensor, bits: int, group_size: int, symmetric: bool) -> UnpackedWeight:
    """w: [N, K] -> integers per group of `group_size` inputs (-1: all of them) and output.
    Asymmetric: the group's [min, max] (widened to hold 0) maps onto 0 .. 2^bits - 1 with a whole
    zero point; symmetric: [-amax, amax] onto -(2^(bits-1) - 1) .. 2^(bits-1) - 1, stored shifted
    by the zero 2^(bits-1). Scales are rounded to float16 before the integers are chosen, so the
    stored scale is the one the integers were rounded with."""
    n, k = w.shape
    group = k if group_size == -1 else group_size
    if k % group:
        raise ValueError(f"a weight with {k} inputs is not whole groups of {group}")
    q, zero, scale = _round(w.float().reshape(n, k // group, group), bits, symmetric)
    return UnpackedWeight(q.reshape(n, k).t().to(torch.uint8).contiguous(), zero.t().to(torch.int16).contiguous(),
                          scale.t().contiguous(), torch.arange(k, device=w.device) // group, bits)


def fake_quantize(w: torch.Tensor, bits: int, group_size: int) -> torch.Tensor:
    """w (float32 [N, K]) after asymmetric round-to-nearest and back (AWQ's scale search)."""
    n, k = w.shape
    group = k if group_size == -1 else group_size
    q, zero, scale = _round(w.reshape(n, k // group, group), bits, symmetric=False)
    return ((q - zero[..., None]) * scale.float()[..., None]).reshape(n, k)


def _round(groups: torch.Tensor, bits: int, symmetric: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """groups: float32 [N, G, group] -> (levels, zeros, float16 scales), levels and zeros as floats."""
    levels = (1 << bits) - 1
    if symmetric:
        half = (levels + 1) // 2
        scale = (groups.abs().amax(-1) / (half - 1)).clamp(min=1e-8).half()
        zero = torch.full_like(scale, half, dtype=torch.float32)
        q = torch.round(groups / scale.float()[..., None]).clamp(1 - half, half - 1) + half
    else:
        lo, hi = groups.amin(-1).clamp(max=0), groups.amax(-1).clamp(min=0)
        scale = ((hi - lo) / levels).clamp(min=1e-8).half()
        zero = torch.round(-lo / scale.float()).clamp(0, levels)
        q = (torch.round(groups / scale.float()[..., None]) + zero[..., None]).clamp(0, levels)
    return q, zero, scale
