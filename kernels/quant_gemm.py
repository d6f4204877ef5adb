"""Weight-only quantized GEMM for batches of more than 32 rows: y = x @ W.T with W in the layout of
kernels/quantized_weights.py, dequantized tile by tile inside the K loop (never materialised).

Program (row tile, column tile) walks K: it loads a tile of x, dequantizes the matching weight
tile in registers and feeds both to tl.dot as out.T = W @ x.T (the weights fill the MMA's 64-row
minimum). Programs are ordered in groups of row tiles so that the weight tiles they share stay in
L2.

Up to 64 rows of half-precision x meet 4-bit weights in float16 pairs: x arrives as gemm_input.py
writes it (float16, a power of two per row, inputs in pair order), and one lop3 makes two weights'
float16 1024 + q, one sub.f16x2 takes the zero off (q - z, exact) and one mul.f16x2 applies the
scale (rounded once, as float32 arithmetic rounded to float16 would): the loop's sm_90 SASS has 327
instructions a K step against 558 unpacking to float32 (64 x 64 x 128 tiles). Measured on an H200
(CUDA graphs, 7B projections): at 64 rows qkv 38.5 -> 35.0 and gate_up 57.5 -> 47.9 us; at 128 and
256 rows it was slower (gate_up 81.7 -> 92.4 at 128), so there, and for 8-bit weights or float32
x, the weights go through float32 (quantized_weights.dot_tile). Triton's interpreter (the CPU tests) makes the same
float16 weights field by field: (q - z) * s is exact in float32, so one rounding gives mul.f16x2's.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .gemm_input import Float16Rows, gemm_input
from .ptx import runs_ptx
from .quantized_weights import check_layout, dot_tile, group_scale_zero, k_tile, repeated_words

BLOCK_N = 64  # output columns per program
FLOAT16_MAX_ROWS = 64  # the most rows multiplied in float16 pairs (see above)

# one word of 4-bit fields q0..q7 ($4; the same word in $5..$11, as pack=8 hands it over), the
# column's zero as pairs 1024 + z ($12) and -(64 + z) ($16), its scale as pairs ($20) -> the
# float16 weights (q_j - z) * s in pairs (q0, q4), (q1, q5), (q2, q6), (q3, q7). Fields 1, 3, 5,
# 7 sit four bits up, 1024 + 16 q: a multiply-add by 1/16 (0x2c00) takes them to q - z.
_WORD_TO_F16 = tl.constexpr("""{
.reg .b32 t, k;
mov.b32 k, 0x2c002c00;
lop3.b32 $0, $4, 0x000f000f, 0x64006400, 0xea;
lop3.b32 $1, $4, 0x00f000f0, 0x64006400, 0xea;
shr.u32 t, $4, 8;
lop3.b32 $2, t, 0x000f000f, 0x64006400, 0xea;
lop3.b32 $3, t, 0x00f000f0, 0x64006400, 0xea;
sub.f16x2 $0, $0, $12;
fma.rn.f16x2 $1, $1, k, $16;
sub.f16x2 $2, $2, $12;
fma.rn.f16x2 $3, $3, k, $16;
mul.f16x2 $0, $0, $20;
mul.f16x2 $1, $1, $20;
mul.f16x2 $2, $2, $20;
mul.f16x2 $3, $3, $20;
}""")
_WORD_TO_F16_REGS = tl.constexpr(",".join(["=r"] * 4 + ["r"] * 20))


@triton.jit
def _float16_tile(qweight_ptr, scales_ptr, zeros_ptr, k0, offs_n, n_mask, N, GROUP: tl.constexpr,
                  BLOCK_K: tl.constexpr, BLOCK_N: tl.constexpr, PTX: tl.constexpr):
    """The float16 4-bit weights W[offs_n, k0 : k0 + BLOCK_K] ([BLOCK_N, BLOCK_K]) in pair order
    (gemm_input.PAIR_ORDER); on the GPU eight a word from one inline-assembly block, which takes the
    word's eight repeats as its eight inputs."""
    words = repeated_words(qweight_ptr, k0, offs_n, n_mask, N, 4, BLOCK_K, BLOCK_N)
    scale, zero = group_scale_zero(scales_ptr, zeros_ptr, k0, offs_n, n_mask, N, GROUP)
    if PTX:
        tile: tl.constexpr = (BLOCK_N, BLOCK_K)
        w = tl.inline_asm_elementwise(
            _WORD_TO_F16, _WORD_TO_F16_REGS,
            [words, tl.broadcast_to((1024.0 + zero).to(tl.float16)[:, None], tile),
             tl.broadcast_to((-64.0 - zero).to(tl.float16)[:, None], tile),
             tl.broadcast_to(scale.to(tl.float16)[:, None], tile)],
            dtype=tl.float16, is_pure=True, pack=8)
    else:
        p = tl.arange(0, BLOCK_K) % 8
        q = (words >> (((p % 2) * 4 + p // 2) * 4)[None, :]) & 15
        w = ((q.to(tl.float32) - zero[:, None]) * scale[:, None]).to(tl.float16)
    return w


@triton.jit
def float16_dot_tile(acc_t, x_ptr, x_rows, m_mask, qweight_ptr, scales_ptr, zeros_ptr, k0, offs_n, n_mask, N,
                     GROUP: tl.constexpr, BLOCK_K: tl.constexpr, BLOCK_N: tl.constexpr, PTX: tl.constexpr):
    """quantized_weights.dot_tile for x given as Float16Rows' values (x_rows: the rows' offsets into
    them): acc_t [BLOCK_N, rows] + the float16 4-bit weights of inputs k0 .. k0 + BLOCK_K @ x's."""
    x_t = tl.load(x_ptr + x_rows[None, :] + (k0 + tl.arange(0, BLOCK_K))[:, None], mask=m_mask[None, :], other=0.0)
    w = _float16_tile(qweight_ptr, scales_ptr, zeros_ptr, k0, offs_n, n_mask, N, GROUP, BLOCK_K, BLOCK_N, PTX)
    return tl.dot(w, x_t, acc_t)


@triton.jit
def _quant_gemm_kernel(
    x_ptr,  # [M, K] activations (F16: float16 from gemm_input, in pair order)
    down_ptr,  # [M] float32: gemm_input's powers of two (read when F16)
    qweight_ptr,  # [K / P, N] int32 packed weights
    scales_ptr,  # [K / GROUP, N]
    zeros_ptr,  # [K / GROUP, N]
    perm_ptr,  # [K] int32: the input channel of each weight row (read when HAS_PERM and not F16)
    out_ptr,  # [M, N]
    M, N, K, stride_xm, stride_om,
    BITS: tl.constexpr, GROUP: tl.constexpr, HAS_PERM: tl.constexpr, BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, GROUP_M: tl.constexpr, IEEE: tl.constexpr, F16: tl.constexpr,
    PTX: tl.constexpr,
):
    pid = tl.program_id(0)
    tiles_m, tiles_n = tl.cdiv(M, BLOCK_M), tl.cdiv(N, BLOCK_N)
    per_group = GROUP_M * tiles_n  # GROUP_M row tiles sweep all column tiles together
    first_m = pid // per_group * GROUP_M
    height = tl.minimum(tiles_m - first_m, GROUP_M)
    tile_m = first_m + (pid % per_group) % height
    tile_n = (pid % per_group) // height

    offs_m = tile_m * BLOCK_M + tl.arange(0, BLOCK_M)
    m_mask = offs_m < M
    offs_n = tile_n * BLOCK_N + tl.arange(0, BLOCK_N)
    n_mask = offs_n < N
    rows = offs_m.to(tl.int64) * stride_xm
    acc_t = tl.zeros([BLOCK_N, BLOCK_M], tl.float32)  # out.T = W @ x.T
    for k0 in range(0, K, BLOCK_K):
        if F16:
            acc_t = float16_dot_tile(acc_t, x_ptr, rows, m_mask, qweight_ptr, scales_ptr, zeros_ptr, k0, offs_n,
                                     n_mask, N, GROUP, BLOCK_K, BLOCK_N, PTX)
        else:
            acc_t = dot_tile(acc_t, x_ptr, rows, m_mask, perm_ptr, qweight_ptr, scales_ptr, zeros_ptr, k0, offs_n,
                             n_mask, N, BITS, GROUP, BLOCK_K, BLOCK_N, HAS_PERM, IEEE)
    if F16:
        acc_t *= tl.load(down_ptr + offs_m, mask=m_mask, other=0.0)[None, :]
    tl.store(out_ptr + offs_m[None, :].to(tl.int64) * stride_om + offs_n[:, None],
             acc_t.to(out_ptr.dtype.element_ty), mask=m_mask[None, :] & n_mask[:, None])


def takes_float16_pairs(x: torch.Tensor, bits: int) -> bool:
    """Whether the GEMM multiplies x in float16 pairs (else in x's dtype, weights via float32)."""
    return bits == 4 and x.dtype in (torch.bfloat16, torch.float16) and x.shape[0] <= FLOAT16_MAX_ROWS


def quant_gemm(x: torch.Tensor, qweight: torch.Tensor, scales: torch.Tensor, zeros: torch.Tensor,
               perm: torch.Tensor | None, bits: int, *, block_m: int | None = None, block_n: int = BLOCK_N,
               block_k: int = 128, num_warps: int = 4, num_stages: int = 3,
               float16_rows: Float16Rows | None = None) -> torch.Tensor:
    """x: [M, K] -> [M, N] in x's dtype; the result of quant_linear_ref. float16_rows: x as
    gemm_input makes it, made already (by the kernel that made x), for rows taken in float16 pairs."""
    m, n, group = check_layout(x, qweight, scales, zeros, perm, bits)
    block_m = block_m or max(16, min(128, triton.next_power_of_2(m)))
    block_k = min(block_k, k_tile(group))
    out = torch.empty(m, n, dtype=x.dtype, device=x.device)
    if m == 0:
        return out
    f16 = takes_float16_pairs(x, bits)
    assert float16_rows is None or (f16 and perm is None and float16_rows.values.shape == x.shape)
    x_in, down = (gemm_input(x, perm) if float16_rows is None else float16_rows) if f16 else (x, None)
    grid = (triton.cdiv(m, block_m) * triton.cdiv(n, block_n),)
    _quant_gemm_kernel[grid](
        x_in, down if f16 else x, qweight, scales, zeros, perm if perm is not None else qweight, out, m, n,
        x.shape[1], x_in.stride(0), out.stride(0), BITS=bits, GROUP=group, HAS_PERM=perm is not None,
        BLOCK_M=block_m, BLOCK_N=block_n, BLOCK_K=block_k, GROUP_M=8, IEEE=x.dtype == torch.float32, F16=f16,
        PTX=f16 and runs_ptx(x), num_warps=num_warps, num_stages=num_stages)
    return out
