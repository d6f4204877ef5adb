"""RMSNorm, optionally fused with the residual add that precedes it."""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .dependent_launch import dependent_launch, launch_next, wait_for_previous
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
    packed_ptr,  # [H / 8, 5] int32: the output packed for the batch-1 GEMV (written when PACK)
    eps,
    H: tl.constexpr,
    BLOCK: tl.constexpr,
    HAS_RESIDUAL: tl.constexpr,
    PACK: tl.constexpr,
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
    if PACK:
        store_packed_input(packed_ptr, out.to(tl.float32), 0, H, BLOCK)


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float, residual: torch.Tensor | None = None,
             packed_out: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Same result as rms_norm_ref; x and residual are reused as output buffers, so the caller
    must not read them afterwards. packed_out: a buffer for one row's output packed for the
    batch-1 GEMV (kernels/gemv_input.py), written too when given."""
    t, h = x.shape
    assert x.is_contiguous() and weight.shape == (h,)
    assert packed_out is None or (t == 1 and h % 8 == 0)
    pdl = dependent_launch(x)
    if residual is None:  # the output is new and x is the sum
        out, total = torch.empty_like(x), x
    else:  # the output goes into x and the sum into the residual
        assert residual.shape == x.shape and residual.is_contiguous()
        out, total = x, residual
    _rms_norm_kernel[(t,)](x, total, out, weight, x if packed_out is None else packed_out, eps, H=h,
                           BLOCK=triton.next_power_of_2(h), HAS_RESIDUAL=residual is not None,
                           PACK=packed_out is not None, PDL=pdl, launch_pdl=pdl, num_warps=8)
    return out, total
