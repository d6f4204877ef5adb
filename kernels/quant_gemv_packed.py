"""The batch-1 4-bit GEMV's inner product in packed half precision, for the GPU.

At batch 1 the instructions spent per weight set the GEMV's pace (kernels/quant_gemv.py). Here two
weights share each instruction: one `lop3` puts two 4-bit fields of a word into the mantissas of two
float16 numbers 1024 + q (float16's unit in the last place at 1024 is 1), one `sub`/`fma` on the
pair takes the zero point off (q - z, exact), and one `fma.f16x2` multiplies them with a pair of
inputs: the products cost about two instructions per weight, and the whole loop (compiled for
sm_90) 4.7 against the float32 path's 6.2. (For 8-bit weights, four fields per word, the same
trick measured slower than float32 products on an H200 and was taken out.)

Float16 spans far fewer powers of two than bfloat16, so each row of a tile (8 inputs) is scaled by
a power of two that brings its largest input to [2^8, 2^9) (exact, and the 19 binades below the
largest are kept whole), and undone in float32 with the group's scale. Each half of a word's
float16 sum holds at most four products below 2^13, so it cannot overflow; it leaves float16 after
each word. The inputs are packed once per tile here (pack_inputs), or loaded as the kernel that
made them packed them (kernels/gemv_input.py).

PTX inline assembly runs only on an NVIDIA GPU; Triton's interpreter (and so the CPU tests) runs
the float32 path, and the GPU tests compare this one with the reference.
"""

from __future__ import annotations

import triton
import triton.language as tl

from .gemv_input import HEADROOM, row_scale

# (x_lo, x_hi) float32 -> one register holding float16 (x_lo, x_hi)
_PAIR = tl.constexpr("cvt.rn.f16x2.f32 $0, $2, $1;")

# one 4-bit word (fields q0..q7; the lower 16 bits hold q0..q3), four input pairs (x0, x4),
# (x1, x5), (x2, x6), (x3, x7) and the column's zero z as pairs 1024 + z and -(64 + z)
# -> sum of (q_j - z) * x_j, as float32. Fields 1, 3, 5, 7 sit four bits up: 1024 + 16 q, so
# they come down by a multiply-add: (1024 + 16 q) / 16 - (64 + z) = q - z (0x2c00 = 1/16).
_DOT8 = tl.constexpr("""{
.reg .b32 t, a, b, c, d, k, acc;
.reg .b16 lo, hi;
.reg .f32 flo, fhi;
mov.b32 k, 0x2c002c00;
lop3.b32 a, $1, 0x000f000f, 0x64006400, 0xea;
lop3.b32 b, $1, 0x00f000f0, 0x64006400, 0xea;
shr.u32 t, $1, 8;
lop3.b32 c, t, 0x000f000f, 0x64006400, 0xea;
lop3.b32 d, t, 0x00f000f0, 0x64006400, 0xea;
sub.f16x2 a, a, $6;
fma.rn.f16x2 b, b, k, $7;
sub.f16x2 c, c, $6;
fma.rn.f16x2 d, d, k, $7;
mul.f16x2 acc, a, $2;
fma.rn.f16x2 acc, b, $3, acc;
fma.rn.f16x2 acc, c, $4, acc;
fma.rn.f16x2 acc, d, $5, acc;
mov.b32 {lo, hi}, acc;
cvt.f32.f16 flo, lo;
cvt.f32.f16 fhi, hi;
add.f32 $0, flo, fhi;
}""")

@triton.jit
def _pack(lo, hi):
    """float32 lo, hi -> float16 (lo, hi) in one int32."""
    return tl.inline_asm_elementwise(_PAIR, "=r,f,f", [lo, hi], dtype=tl.int32, is_pure=True, pack=1)


@triton.jit
def _input(x_ptr, perm_ptr, inputs, HAS_PERM: tl.constexpr):
    if HAS_PERM:
        inputs = tl.load(perm_ptr + inputs)
    return tl.load(x_ptr + inputs).to(tl.float32)


@triton.jit
def pack_inputs(x_ptr, perm_ptr, k0, HAS_PERM: tl.constexpr, WORDS: tl.constexpr):
    """The inputs of one tile's WORDS rows as kernels/gemv_input.py packs them: four [WORDS] int32
    pairs and the [WORDS] float32 powers of two that undo their scaling."""
    first = (k0 // 8 + tl.arange(0, WORDS)) * 8  # each row's first input
    x0 = _input(x_ptr, perm_ptr, first + 0, HAS_PERM)
    x1 = _input(x_ptr, perm_ptr, first + 1, HAS_PERM)
    x2 = _input(x_ptr, perm_ptr, first + 2, HAS_PERM)
    x3 = _input(x_ptr, perm_ptr, first + 3, HAS_PERM)
    x4 = _input(x_ptr, perm_ptr, first + 4, HAS_PERM)
    x5 = _input(x_ptr, perm_ptr, first + 5, HAS_PERM)
    x6 = _input(x_ptr, perm_ptr, first + 6, HAS_PERM)
    x7 = _input(x_ptr, perm_ptr, first + 7, HAS_PERM)
    top = tl.maximum(tl.maximum(tl.maximum(tl.abs(x0), tl.abs(x1)), tl.maximum(tl.abs(x2), tl.abs(x3))),
                     tl.maximum(tl.maximum(tl.abs(x4), tl.abs(x5)), tl.maximum(tl.abs(x6), tl.abs(x7))))
    up, down = row_scale(top, HEADROOM)
    return (_pack(x0 * up, x4 * up), _pack(x1 * up, x5 * up), _pack(x2 * up, x6 * up), _pack(x3 * up, x7 * up),
            down)


@triton.jit
def float16_products(inputs, words, scale, zero):
    """One tile's share of x @ W' for one row x and 4-bit weights, [WORDS, BLOCK_N] float32, as
    quant_gemv._float32_products makes it, the products in float16 pairs; inputs: pack_inputs'
    (or load_packed_input's) pairs and powers of two."""
    z_sub = _pack(1024.0 + zero, 1024.0 + zero)[None, :]
    z_fma = _pack(-64.0 - zero, -64.0 - zero)[None, :]
    pairs0, pairs1, pairs2, pairs3, down = inputs
    tile = tl.inline_asm_elementwise(
        _DOT8, "=f,r,r,r,r,r,r,r",
        [words, pairs0[:, None], pairs1[:, None], pairs2[:, None], pairs3[:, None], z_sub, z_fma],
        dtype=tl.float32, is_pure=True, pack=1)
    return tile * (down[:, None] * scale[None, :])
