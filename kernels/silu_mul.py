"""SiLU-and-multiply: the gated activation of Llama's MLP, writing its output also in the form
down_proj's 4-bit kernel reads when asked (packed_out, as kernels/rms_norm.py's)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
import triton
import triton.language as tl

from .dependent_launch import dependent_launch, launch_next, wait_for_previous
from .gemm_input import FLOAT16_ROWS, PACKED_WORDS, Float16Rows, input_form, store_float16_row
from .gemv_input import store_packed_input


def silu_and_mul_ref(x: torch.Tensor) -> torch.Tensor:
    """x: [T, 2 * I] holding gate then up; returns silu(gate) * up, [T, I]."""
    gate, up = x.chunk(2, dim=-1)
    return F.silu(gate) * up


@triton.jit
def _silu_mul_kernel(
    x_ptr,  # [T, 2 * I] gate then up
    out_ptr,  # [T, I]
    packed_ptr,  # FORM PACKED_WORDS: [I / 8, 5] int32 for the batch-1 GEMV; FLOAT16_ROWS: [T, I] float16
    down_ptr,  # FORM FLOAT16_ROWS: [T] float32 (a row a program then: BLOCK covers I)
    I: tl.constexpr,
    BLOCK: tl.constexpr,
    FORM: tl.constexpr,
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
    if FORM == PACKED_WORDS:
        first = tl.program_id(1) * BLOCK
        store_packed_input(packed_ptr, out.to(tl.float32), first, I - first, BLOCK)
    elif FORM == FLOAT16_ROWS:
        store_float16_row(packed_ptr, down_ptr, row, out.to(tl.float32), I, BLOCK)


def silu_and_mul(x: torch.Tensor, packed_out: torch.Tensor | Float16Rows | None = None) -> torch.Tensor:
    """Same result as silu_and_mul_ref. packed_out, written too when given: a buffer for one row's
    output packed for the batch-1 GEMV (kernels/gemv_input.py), or Float16Rows for the rows (each
    row's power of two needs the whole row: one program a row then)."""
    t, two_i = x.shape
    assert x.is_contiguous() and two_i % 2 == 0
    inter = two_i // 2
    out = torch.empty(t, inter, dtype=x.dtype, device=x.device)
    form, packed, down = input_form(packed_out, out)
    pdl = dependent_launch(x)
    whole_rows = form == FLOAT16_ROWS.value
    block = triton.next_power_of_2(inter) if whole_rows else min(1024, triton.next_power_of_2(inter))
    _silu_mul_kernel[(t, triton.cdiv(inter, block))](x, out, packed, down, I=inter, BLOCK=block, FORM=form, PDL=pdl,
                                                       launch_pdl=pdl, num_warps=16 if whole_rows else 4)
    return out
