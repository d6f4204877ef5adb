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

The kernels that make a projection's input with a whole row in one program (RMSNorm before qkv
and gate/up; SiLU-and-multiply when asked) write this form beside their output
(store_float16_row), so that 2..64 rows reach the 4-bit GEMV and GEMM without this file's pass
over x (on an H200 2.7-5.2 µs a 7B projection at 2-64 rows, beside the GEMV's 10-40).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import triton
import triton.language as tl

from .gemv_input import row_scale, row_scale_ref

HEADROOM = tl.constexpr(14)  # a row's largest |x| times its power of two is in [2^14, 2^15)
PAIR_ORDER = (0, 4, 1, 5, 2, 6, 3, 7)  # position p of every 8 inputs holds input PAIR_ORDER[p]
BLOCK = 2048  # inputs a program reads at once


class Float16Rows(NamedTuple):
    """x in the form the 4-bit kernels' float16 pairs read."""
    values: torch.Tensor  # [M, K] float16: each row scaled by a power of two, inputs in pair order
    down: torch.Tensor  # [M] float32: the powers of two that undo the scaling


# what a producing kernel (RMSNorm, SiLU-and-multiply) writes besides its output
NO_FORM, PACKED_WORDS, FLOAT16_ROWS = tl.constexpr(0), tl.constexpr(1), tl.constexpr(2)


def input_form(packed_out: torch.Tensor | Float16Rows | None, out: torch.Tensor) -> tuple[int, torch.Tensor, torch.Tensor]:
    """For a producing kernel whose output is out ([T, K]): the FORM it writes packed_out in (one
    row packed for the batch-1 GEMV, kernels/gemv_input.py; or Float16Rows) and the two tensors
    it writes it to (out where unused)."""
    t, k = out.shape
    if packed_out is None:
        return NO_FORM.value, out, out
    assert k % 8 == 0
    if isinstance(packed_out, Float16Rows):
        assert packed_out.values.shape == (t, k) and packed_out.down.shape == (t,)
        return FLOAT16_ROWS.value, packed_out.values, packed_out.down
    assert t == 1, "packed words are for one row"
    return PACKED_WORDS.value, packed_out, out


def new_float16_rows(m: int, k: int, device: torch.device | str) -> Float16Rows:
    return Float16Rows(torch.empty(m, k, dtype=torch.float16, device=device),
                       torch.empty(m, dtype=torch.float32, device=device))


def gemm_input_ref(x: torch.Tensor, perm: torch.Tensor | None) -> Float16Rows:
    """x: [M, K] -> its Float16Rows (x's inputs taken through perm when given)."""
    m, k = x.shape
    if perm is not None:
        x = x[:, perm.long()]
    rows = x.float().view(m, k // 8, 8)[:, :, list(PAIR_ORDER)].reshape(m, k)
    up, down = row_scale_ref(rows.abs().amax(1), HEADROOM.value)
    return Float16Rows((rows * up[:, None]).half(), down)


@triton.jit
def _sources(k0, perm_ptr, K, HAS_PERM: tl.constexpr, BLOCK: tl.constexpr):
    """Positions k0 .. k0 + BLOCK of a row and the inputs they take."""
    p = k0 + tl.arange(0, BLOCK)
    k = p // 8 * 8 + (p % 2) * 4 + (p % 8) // 2  # PAIR_ORDER
    if HAS_PERM:
        k = tl.load(perm_ptr + k, mask=p < K, other=0)
    return p, k


@triton.jit
def store_float16_row(values_ptr, down_ptr, row, x, K, BLOCK: tl.constexpr):
    """Write row `row` of a Float16Rows from x, the whole row as float32 [BLOCK] (what lies from K on
    is not read; K a multiple of 8): the inputs of every 8 go in pair order by a permute in registers."""
    offs = tl.arange(0, BLOCK)
    x = tl.where(offs < K, x, 0.0)  # the producer's masked-off lanes may hold anything
    up, down = row_scale(tl.max(tl.abs(x), axis=0), HEADROOM)
    paired = tl.reshape(tl.permute(tl.reshape(x * up, [BLOCK // 8, 2, 4]), (0, 2, 1)), [BLOCK])
    tl.store(values_ptr + row.to(tl.int64) * K + offs, paired.to(tl.float16), mask=offs < K)
    tl.store(down_ptr + row, down)


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


def gemm_input(x: torch.Tensor, perm: torch.Tensor | None) -> Float16Rows:
    """gemm_input_ref's result, one program a row."""
    m, k = x.shape
    out, down = rows = new_float16_rows(m, k, x.device)
    if m:
        _gemm_input_kernel[(m,)](x, perm if perm is not None else x, out, down, k, x.stride(0),
                                 HAS_PERM=perm is not None, BLOCK=min(BLOCK, triton.next_power_of_2(k)), num_warps=4)
    return rows
