"""RMSNorm, optionally fused with the residual add that precedes it."""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .dependent_launch import dependent_launch, launch_next, wait_for_previous


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
    eps,
    H: tl.constexpr,
    BLOCK: tl.constexpr,
    HAS_RESIDUAL: tl.constexpr,
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
    tl.store(out_ptr + row * H + offs, (h * rstd).to(x.dtype) * w, mask=mask)


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float,
             residual: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Same result as rms_norm_ref; x and residual are reused as output buffers, so the caller
    must not read them afterwards."""
    t, h = x.shape
    assert x.is_contiguous() and weight.shape == (h,)
    pdl = dependent_launch(x)
    if residual is None:
        out = torch.empty_like(x)
        _rms_norm_kernel[(t,)](x, x, out, weight, eps, H=h, BLOCK=triton.next_power_of_2(h),
                               HAS_RESIDUAL=False, PDL=pdl, launch_pdl=pdl, num_warps=8)
        return out, x
    assert residual.shape == x.shape and residual.is_contiguous()
    _rms_norm_kernel[(t,)](x, residual, x, weight, eps, H=h, BLOCK=triton.next_power_of_2(h),
                           HAS_RESIDUAL=True, PDL=pdl, launch_pdl=pdl, num_warps=8)
    return x, residual
