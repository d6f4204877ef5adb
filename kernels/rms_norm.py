"""RMSNorm, optionally fused with the residual add that precedes it, and writing its output also
in the form a 4-bit projection's kernel reads (packed_out: kernels/gemv_input.py for one row,
kernels/gemm_input.Float16Rows for more)."""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .dependent_launch import dependent_launch, launch_next, wait_for_previous
from .gemm_input import FLOAT16_ROWS, PACKED_WORDS, Float16Rows, input_form, store_float16_row
from .gemv_input import store_packed_input


def rms_norm_ref(x: torch.Tensor, weight: torch.Tensor, eps: float,
                 residual: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Returns (norm(x + residual) * weight, x + residual); without residual, (norm(x) * weight, x).
    Computed in float32 and cast back, as transformers' LlamaRMSNorm does."""
    if residual is not None:
        x = x + residual
    h = x.float()
    h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + eps)
    return weight * h.to(x.dtype), x


@triton.jit
def _rms_norm_kernel(
    x_ptr,  # [T, H] input; overwritten with the output when a residual is given
    residual_ptr,  # [T, H] residual; overwritten with x + residual (unused without one)
    out_ptr,  # [T, H] output
    w_ptr,  # [H] weight
    packed_ptr,  # FORM PACKED_WORDS: [H / 8, 5] int32 for the batch-1 GEMV; FLOAT16_ROWS: [T, H] float16
    down_ptr,  # FORM FLOAT16_ROWS: [T] float32
    eps,
    H: tl.constexpr,
    BLOCK: tl.constexpr,
    HAS_RESIDUAL: tl.constexpr,
    FORM: tl.constexpr,
    PDL: tl.constexpr,
):
    launch_next(PDL)
    wait_for_previous(PDL)
    row = tl.program_id(0).to(tl.int64)
    offs = tl.arange(0, BLOCK)
    mask = offs < H
    x = tl.load(x_ptr + row * H + offs, mask=mask, other=0.0)
    if HAS_RESIDUAL:
        x = x + tl.load(residual_ptr + row * H + offs, mask=mask, other=0.0)
        tl.store(residual_ptr + row * H + offs, x, mask=mask)
    h = x.to(tl.float32)
    rstd = tl.rsqrt(tl.sum(h * h, axis=0) / H + eps)
    w = tl.load(w_ptr + offs, mask=mask)
    out = (h * rstd).to(x.dtype) * w
    tl.store(out_ptr + row * H + offs, out, mask=mask)
    if FORM == PACKED_WORDS:
        store_packed_input(packed_ptr, out.to(tl.float32), 0, H, BLOCK)
    elif FORM == FLOAT16_ROWS:
        store_float16_row(packed_ptr, down_ptr, row, out.to(tl.float32), H, BLOCK)


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float, residual: torch.Tensor | None = None,
             packed_out: torch.Tensor | Float16Rows | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Same result as rms_norm_ref; x and residual are reused as output buffers, so the caller
    must not read them afterwards. packed_out, written too when given: a buffer for one row's
    output packed for the batch-1 GEMV (kernels/gemv_input.py), or Float16Rows for the rows."""
    t, h = x.shape
    assert x.is_contiguous() and weight.shape == (h,)
    form, packed, down = input_form(packed_out, x)
    pdl = dependent_launch(x)
    if residual is None:  # the output is new and x is the sum
        out, total = torch.empty_like(x), x
    else:  # the output goes into x and the sum into the residual
        assert residual.shape == x.shape and residual.is_contiguous()
        out, total = x, residual
    _rms_norm_kernel[(t,)](x, total, out, weight, packed, down, eps, H=h, BLOCK=triton.next_power_of_2(h),
                           HAS_RESIDUAL=residual is not None, FORM=form, PDL=pdl, launch_pdl=pdl, num_warps=8)
    return out, total

