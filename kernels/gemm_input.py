"""The fused 4-bit GEMM's input: each row of x in float16, scaled by a power of two, in pair order.

The GEMM (quant_gemm.py) makes 4-bit weights as float16 pairs for up to 64 rows and multiplies
them on the tensor cores in float16, so x must be float16 too. Float16 spans far fewer powers of
two than bfloat16, so each row is scaled by the power of two that brings its largest |x| to
[2^14, 2^15) (exact; the 28 binades below stay normal numbers); the GEMM's epilogue multiplies the
row's sums by the inverse. A bfloat16 x loses nothing (float16 has three more mantissa bits).

Pair order: one lop3 puts fields j and j + 4 of a weight word into one float16 pair, so the GEMM's
weights of inputs 8r .. 8r + 7 come as q0 q4 q1 q5 q2 q6 q3 q7 (PAIR_ORDER), and x's inputs are
written in that order here, where it costs nothing. An act-order checkpoint's permutation is
applied here too: row k of the weights meets input perm[k].
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .gemv_input import row_scale, row_scale_ref

HEADROOM = tl.constexpr(14)  # a row's largest |x| times its power of two is in [2^14, 2^15)
PAIR_ORDER = (0, 4, 1, 5, 2, 6, 3, 7)  # position p of every 8 inputs holds input PAIR_ORDER[p]
BLOCK = 2048  # inputs a program reads at once


def gemm_input_ref(x: torch.Tensor, perm: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """x: [M, K] -> (float16 [M, K] scaled rows in pair order, float32 [M] powers of two undoing
    the scaling)."""
    m, k = x.shape
    if perm is not None:
        x = x[:, perm.long()]
    rows = x.float().view(m, k // 8, 8)[:, :, list(PAIR_ORDER)].reshape(m, k)
    up, down = row_scale_ref(rows.abs().amax(1), HEADROOM.value)
    return (rows * up[:, None]).half(), down


@triton.jit
def _sources(k0, perm_ptr, K, HAS_PERM: tl.constexpr, BLOCK: tl.constexpr):
    """Positions k0 .. k0 + BLOCK of a row and the inputs they take."""
    p = k0 + tl.arange(0, BLOCK)
    k = p // 8 * 8 + (p % 2) * 4 + (p % 8) // 2  # PAIR_ORDER
    if HAS_PERM:
        k = tl.load(perm_ptr + k, mask=p < K, other=0)
    return p, k


@triton.jit
def _gemm_input_kernel(x_ptr, perm_ptr, out_ptr, down_ptr, K, stride_xm, HAS_PERM: tl.constexpr,
                       BLOCK: tl.constexpr):
    row = tl.program_id(0)
    x_row = x_ptr + row.to(tl.int64) * stride_xm
    top = tl.zeros([BLOCK], tl.float32)
    for k0 in range(0, K, BLOCK):
        p, k = _sources(k0, perm_ptr, K, HAS_PERM, BLOCK)
        top = tl.maximum(top, tl.abs(tl.load(x_row + k, mask=p < K, other=0.0).to(tl.float32)))
    up, down = row_scale(tl.max(top), HEADROOM)
    for k0 in range(0, K, BLOCK):
        p, k = _sources(k0, perm_ptr, K, HAS_PERM, BLOCK)
        x = tl.load(x_row + k, mask=p < K, other=0.0).to(tl.float32)
        tl.store(out_ptr + row.to(tl.int64) * K + p, (x * up).to(tl.float16), mask=p < K)
    tl.store(down_ptr + row, down)


def gemm_input(x: torch.Tensor, perm: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """gemm_input_ref's result, one program a row."""
    m, k = x.shape
    out = torch.empty(m, k, dtype=torch.float16, device=x.device)
    down = torch.empty(m, dtype=torch.float32, device=x.device)
    if m:
        _gemm_input_kernel[(m,)](x, perm if perm is not None else x, out, down, k, x.stride(0),
                                 HAS_PERM=perm is not None, BLOCK=min(BLOCK, triton.next_power_of_2(k)), num_warps=4)
    return out, down
