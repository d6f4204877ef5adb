"""Quantized weights (kernels/quantized_weights.py) dequantized whole, for a prompt's many rows:
with hundreds of rows a matmul is bound by its multiply-adds, and cuBLAS on the dequantized weight
does them faster than the dequantize-in-the-loop GEMM, for the price of writing the weight once
(2.5 bytes per weight read and written, against the GEMM's several times that in FLOPs' time).

Program (block of packed rows, column block) loads its words once and writes field j of every word
as row P * r + j of W.T, or, for an act-order checkpoint, as the row of its input channel perm[k],
so the result multiplies x in its own input order."""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .quantized_weights import check_weights


@triton.jit
def _dequantize_kernel(
    qweight_ptr,  # [K / P, N] int32 packed weights
    scales_ptr,  # [K / GROUP, N]
    zeros_ptr,  # [K / GROUP, N]
    perm_ptr,  # [K] int32: the input channel of each weight row (read when HAS_PERM)
    out_ptr,  # [K, N]: W.T in input-channel order
    K, N,
    BITS: tl.constexpr, GROUP: tl.constexpr, HAS_PERM: tl.constexpr, BLOCK_WORDS: tl.constexpr,
    BLOCK_N: tl.constexpr,
):
    PER_WORD: tl.constexpr = 32 // BITS
    rows = tl.program_id(0) * BLOCK_WORDS + tl.arange(0, BLOCK_WORDS)
    offs_n = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
    mask = (rows < K // PER_WORD)[:, None] & (offs_n < N)[None, :]
    words = tl.load(qweight_ptr + rows[:, None].to(tl.int64) * N + offs_n[None, :], mask=mask, other=0)
    for j in tl.static_range(PER_WORD):
        k = rows * PER_WORD + j
        groups = (k // GROUP)[:, None].to(tl.int64) * N + offs_n[None, :]
        scale = tl.load(scales_ptr + groups, mask=mask, other=0.0).to(tl.float32)
        zero = tl.load(zeros_ptr + groups, mask=mask, other=0.0).to(tl.float32)
        q = ((words >> (j * BITS)) & ((1 << BITS) - 1)).to(tl.float32)
        if HAS_PERM:
            k = tl.load(perm_ptr + k, mask=rows < K // PER_WORD, other=0)
        tl.store(out_ptr + k[:, None].to(tl.int64) * N + offs_n[None, :],
                 ((q - zero) * scale).to(out_ptr.dtype.element_ty), mask=mask)


def dequantize(qweight: torch.Tensor, scales: torch.Tensor, zeros: torch.Tensor, perm: torch.Tensor | None,
               bits: int, dtype: torch.dtype) -> torch.Tensor:
    """W.T: [K, N] in dtype and input-channel order, so that x @ W.T is the layer's output; equal
    to dequantize_ref(...).t() rounded to dtype."""
    k, n, group = check_weights(qweight, scales, zeros, perm, bits)
    out = torch.empty(k, n, dtype=dtype, device=qweight.device)
    block_words, block_n = 8, 128
    _dequantize_kernel[(triton.cdiv(qweight.shape[0], block_words), triton.cdiv(n, block_n))](
        qweight, scales, zeros, perm if perm is not None else qweight, out, k, n, BITS=bits, GROUP=group,
        HAS_PERM=perm is not None, BLOCK_WORDS=block_words, BLOCK_N=block_n, num_warps=4)
    return out
