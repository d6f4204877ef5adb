"""Weight-only quantized GEMM for batches of 33 to 128 rows: y = x @ W.T with W in the layout of
kernels/quantized_weights.py, dequantized tile by tile inside the K loop (never materialised).

Program (row tile, column tile) walks K: it loads a tile of x (gathered through perm for an
act-order checkpoint), unpacks and dequantizes the matching weight tile to x's dtype in registers
and feeds both to tl.dot as out.T = W @ x.T (quantized_weights.dot_tile). Programs are ordered in
groups of row tiles so that the weight tiles they share stay in L2. Beyond 128 rows cuBLAS on the
whole dequantized weight (quant_dequantize.py) is faster; kernels.quant_linear chooses.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .quantized_weights import check_layout, dot_tile, k_tile

BLOCK_N = 64  # output columns per program


@triton.jit
def _quant_gemm_kernel(
    x_ptr,  # [M, K] activations
    qweight_ptr,  # [K / P, N] int32 packed weights
    scales_ptr,  # [K / GROUP, N]
    zeros_ptr,  # [K / GROUP, N]
    perm_ptr,  # [K] int32: the input channel of each weight row (read when HAS_PERM)
    out_ptr,  # [M, N]
    M, N, K, stride_xm, stride_om,
    BITS: tl.constexpr, GROUP: tl.constexpr, HAS_PERM: tl.constexpr, BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, GROUP_M: tl.constexpr, IEEE: tl.constexpr,
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
        acc_t = dot_tile(acc_t, x_ptr, rows, m_mask, perm_ptr, qweight_ptr, scales_ptr, zeros_ptr, k0,
                                 offs_n, n_mask, N, BITS, GROUP, BLOCK_K, BLOCK_N, HAS_PERM, IEEE)
    tl.store(out_ptr + offs_m[None, :].to(tl.int64) * stride_om + offs_n[:, None],
             acc_t.to(out_ptr.dtype.element_ty), mask=m_mask[None, :] & n_mask[:, None])


def quant_gemm(x: torch.Tensor, qweight: torch.Tensor, scales: torch.Tensor, zeros: torch.Tensor,
               perm: torch.Tensor | None, bits: int, *, block_m: int | None = None, block_n: int = BLOCK_N,
               block_k: int = 128, num_warps: int = 4, num_stages: int = 3) -> torch.Tensor:
    """x: [M, K] -> [M, N] in x's dtype; the result of quant_linear_ref."""
    m, n, group = check_layout(x, qweight, scales, zeros, perm, bits)
    block_m = block_m or max(16, min(128, triton.next_power_of_2(m)))
    block_k = min(block_k, k_tile(group))
    out = torch.empty(m, n, dtype=x.dtype, device=x.device)
    if m == 0:
        return out
    grid = (triton.cdiv(m, block_m) * triton.cdiv(n, block_n),)
    _quant_gemm_kernel[grid](
        x, qweight, scales, zeros, perm if perm is not None else qweight, out, m, n, x.shape[1], x.stride(0),
        out.stride(0), BITS=bits, GROUP=group, HAS_PERM=perm is not None, BLOCK_M=block_m, BLOCK_N=block_n,
        BLOCK_K=block_k, GROUP_M=8, IEEE=x.dtype == torch.float32, num_warps=num_warps, num_stages=num_stages)
    return out
