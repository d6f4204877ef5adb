"""Rotary position embedding (Llama's rotate-half layout), applied to q and k in place."""

from __future__ import annotations

import torch


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
