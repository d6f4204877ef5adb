"""SiLU-and-multiply: the gated activation of Llama's MLP."""

from __future__ import annotations

import torch
import torch.nn.functional as F
import triton
import triton.language as tl

from .dependent_launch import dependent_launch, launch_next, wait_for_previous


def silu_and_mul_ref(x: torch.Tensor) -> torch.Tensor:
    """x: [T, 2 * I] holding gate then up; returns silu(gate) * up, [T, I]."""
    gate, up = x.chunk(2, dim=-1)
    return F.silu(gate) * up


@triton.jit
def _silu_mul_kernel(
    x_ptr,  # [T, 2 * I] gate then up
    out_ptr,  # [T, I]
    I: tl.constexpr,
    BLOCK: tl.constexpr,
    PDL: tl.constexpr,
):
    launch_next(PDL)
    wait_for_previous(PDL)
    row = tl.program_id(0).to(tl.int64)
    offs = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < I
    gate = tl.load(x_ptr + row * 2 * I + offs, mask=mask).to(tl.float32)
    up = tl.load(x_ptr + row * 2 * I + I + offs, mask=mask)
    silu = (gate / (1.0 + tl.exp(-gate))).to(up.dtype)  # rounded as torch rounds F.silu
    tl.store(out_ptr + row * I + offs, silu * up, mask=mask)


def silu_and_mul(x: torch.Tensor) -> torch.Tensor:
    t, two_i = x.shape
    assert x.is_contiguous() and two_i % 2 == 0
    inter = two_i // 2
    out = torch.empty(t, inter, dtype=x.dtype, device=x.device)
    pdl = dependent_launch(x)
    block = min(1024, triton.next_power_of_2(inter))
    _silu_mul_kernel[(t, triton.cdiv(inter, block))](x, out, I=inter, BLOCK=block, PDL=pdl, launch_pdl=pdl,
                                                       num_warps=4)
    return out
