"""The batch-1 4-bit GEMV's input, packed by the kernel that makes it.

The GEMV multiplies weights with inputs in float16 pairs (kernels/quant_gemv_packed.py). Packing
the inputs there costs every thread of every program the same loads, maxima and conversions,
since each thread needs the inputs of all the weights it holds. The kernels that make a GEMV's
input (RMSNorm before qkv and gate/up, SiLU-and-multiply before down) have each input once, so
they write this form beside it and the GEMV only loads it, a tile ahead with its weights.
Measured on an H200 (7B projections, batch 1, CUDA graphs over 8 layers' weights): 53.0 against
59.1 µs per layer; without any input work at all it would be 50.0.

For every 8 inputs x0..x7 one row of WORDS int32: four float16 pairs (x_j * u, x_{j+4} * u)
(x_j in the low half), then 1 / u as float32 bits, u a power of two that brings the largest of the
eight to [2^8, 2^9) (row_scale): what the GEMV would make of them (quant_gemv_packed.pack_inputs).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

WORDS = tl.constexpr(5)  # int32 per 8 inputs
HEADROOM = tl.constexpr(8)  # the largest of 8 inputs, times their power of two, is in [2^8, 2^9)


def packed_input_ref(x: torch.Tensor) -> torch.Tensor:
    """x: [1, K] (K a multiple of 8) -> [K / 8, WORDS] int32, as the producing kernels write it."""
    rows = x.float().view(-1, 8)
    up, down = row_scale_ref(rows.abs().amax(1), HEADROOM.value)
    scaled = (rows * up[:, None]).half()
    pairs = torch.stack([scaled[:, :4], scaled[:, 4:]], -1).contiguous().view(torch.int32).view(-1, 4)
    return torch.cat([pairs, down.view(torch.int32)[:, None]], 1)


def row_scale_ref(top: torch.Tensor, headroom: int) -> tuple[torch.Tensor, torch.Tensor]:
    """row_scale's (up, down) for float32 maxima top."""
    exponent = ((top.view(torch.int32) >> 23) & 0xFF).clamp(min=headroom + 1)
    return ((254 + headroom - exponent) << 23).view(torch.float32), ((exponent - headroom) << 23).view(torch.float32)


def new_packed_input(k: int, device: torch.device | str) -> torch.Tensor:
    return torch.empty(k // 8, WORDS.value, dtype=torch.int32, device=device)


@triton.jit
def row_scale(top, HEADROOM: tl.constexpr):
    """Powers of two (up, down) with top * up in [2^HEADROOM, 2^(HEADROOM + 1)) and up * down = 1,
    from top's exponent field E (clamped so both stay normal floats; top = 0 gives any)."""
    e = tl.maximum((top.to(tl.int32, bitcast=True) >> 23) & 0xFF, HEADROOM + 1)
    up = ((-(e - 254 - HEADROOM)) << 23).to(tl.float32, bitcast=True)  # tensor first: the interpreter
    down = ((e - HEADROOM) << 23).to(tl.float32, bitcast=True)
    return up, down


@triton.jit
def _half_bits(x):
    return x.to(tl.float16).to(tl.int16, bitcast=True).to(tl.int32) & 0xFFFF


@triton.jit
def store_packed_input(packed_ptr, x, first, n, BLOCK: tl.constexpr):
    """Write the packed rows of x, BLOCK float32 inputs starting at input `first` (a multiple of
    8), of which the first n are real (n a multiple of 8)."""
    ROWS: tl.constexpr = BLOCK // 8
    top = tl.max(tl.abs(tl.reshape(x, [ROWS, 8])), axis=1)
    up, down = row_scale(top, HEADROOM)
    scaled = tl.reshape(x, [ROWS, 2, 4]) * up[:, None, None]
    lo, hi = tl.split(tl.permute(scaled, (0, 2, 1)))  # [ROWS, 4]: x_j and x_{j+4}
    pairs = _half_bits(lo) | (_half_bits(hi) << 16)
    rows = first // 8 + tl.arange(0, ROWS)
    ok = tl.arange(0, ROWS) < n // 8
    tl.store(packed_ptr + rows[:, None] * WORDS + tl.arange(0, 4)[None, :], pairs, mask=ok[:, None])
    tl.store(packed_ptr + rows * WORDS + 4, down.to(tl.int32, bitcast=True), mask=ok)


@triton.jit
def load_packed_input(packed_ptr, k0, k_end, ROWS: tl.constexpr):
    """The packed rows of inputs k0 .. k0 + 8 * ROWS (none read past k_end): four [ROWS] int32
    pairs and the [ROWS] float32 powers of two that undo their scaling."""
    rows = k0 // 8 + tl.arange(0, ROWS)
    ok = rows * 8 < k_end
    row = packed_ptr + rows * WORDS
    return (tl.load(row + 0, mask=ok, other=0), tl.load(row + 1, mask=ok, other=0),
            tl.load(row + 2, mask=ok, other=0), tl.load(row + 3, mask=ok, other=0),
            tl.load(row + 4, mask=ok, other=0).to(tl.float32, bitcast=True))
