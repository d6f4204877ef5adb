"""SiLU-and-multiply: the gated activation of Llama's MLP."""

from __future__ import annotations

import torch
import torch.nn.functional as F
import triton
import triton.language as tl

from .dependent_launch import dependent_launch, launch_next, wait_for_previous
from .gemv_input import store_packed_input


def silu_and_mul_ref(x: torch.Tensor) -> torch.Tensor:
    """x: [T, 2 * I] holding gate then up; returns silu(gate) * up, [T, I]."""
    gate, up = x.chunk(2, dim=-1)
    return F.silu(gate) * up


@triton.jit
def _silu_mul_kernel(
    x_ptr,  # [T, 2 * I] gate then up
    out_ptr,  # [T, I]
    packed_ptr,  # [I / 8, 5] int32: the output packed for the batch-1 GEMV (written when PACK)
    I: tl.constexpr,
    BLOCK: tl.constexpr,
    PACK: tl.constexpr,
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
    out = silu * up
    tl.store(out_ptr + row * I + offs, out, mask=mask)
    if PACK:
        first = tl.program_id(1) * BLOCK
        store_packed_input(packed_ptr, out.to(tl.float32), first, I - first, BLOCK)


def silu_and_mul(x: torch.Tensor, packed_out: torch.Tensor | None = None) -> torch.Tensor:
    """Same result as silu_and_mul_ref. packed_out: a buffer for one row's output packed for the
    batch-1 GEMV (kernels/gemv_input.py), written too when given."""
    t, two_i = x.shape
    assert x.is_contiguous() and two_i % 2 == 0
    inter = two_i // 2
    assert packed_out is None or (t == 1 and inter % 8 == 0)
    out = torch.empty(t, inter, dtype=x.dtype, device=x.device)
    pdl = dependent_launch(x)
    block = min(1024, triton.next_power_of_2(inter))
    _silu_mul_kernel[(t, triton.cdiv(inter, block))](x, out, out if packed_out is None else packed_out, I=inter,
                                                       BLOCK=block, PACK=packed_out is not None, PDL=pdl,
                                                       launch_pdl=pdl, num_warps=4)
    return out
