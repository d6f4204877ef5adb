"""Quantized linear-layer weights as the kernels read them (one layout for AWQ, GPTQ and int8).

A linear layer y = x @ W.T has W: [N, K] (N outputs, K inputs). Its weights are b-bit unsigned
integers q (b = 4 or 8) with a scale and a zero point per group of G consecutive input channels
and per output (G = K: one group, per-output-channel quantization):

    W[n, k] = (q[k, n] - zeros[k // G, n]) * scales[k // G, n]

Stored as (P = 32 / b values per int32 word: 8 for 4-bit, 4 for 8-bit):

    qweight  int32 [K / P, N]   packed along K: word (r, n) holds q[P*r + j, n] in bits b*j .. b*j + b-1

                      n=0        n=1             n=N-1
              r=0  [q7..q1 q0] [q7..q1 q0] ... [q7..q1 q0]     <- k = 0..7   (4-bit: P = 8)
              r=1  [q15 ..  q8] [q15 .. q8] ... [q15 ..  q8]    <- k = 8..15
              ...    bits 31..28 hold q[P*r + 7], bits 3..0 hold q[P*r]

    scales   float16 [K / G, N]
    zeros    float16 [K / G, N]  whole numbers 0 .. 2^b (a GPTQ v1 zero, stored minus one, is 1 .. 2^b)
    perm     int32 [K], only for act-order (GPTQ desc_act): row k of qweight belongs to input channel
             perm[k], so y = x[:, perm] @ W'.T where W' has its groups contiguous again

A warp reading a row of words reads N consecutive int32 (coalesced), and a tile of BLOCK_K
inputs never straddles a group when BLOCK_K divides G, so it needs one row of scales and zeros.
The kernels turn q into float32 without a conversion instruction: (q | 0x4B000000) read as a
float32 is 2^23 + q, and 2^23 is folded into the zero (every step is exact in float32).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

SUPPORTED_BITS = (4, 8)


def pack_factor(bits: int) -> int:
    if bits not in SUPPORTED_BITS:
        raise ValueError(f"{bits}-bit weights are not supported (supported: {', '.join(map(str, SUPPORTED_BITS))})")
    return 32 // bits


def pack_qweight(q: torch.Tensor, bits: int) -> torch.Tensor:
    """q: [K, N] integers in 0 .. 2^bits - 1 -> qweight int32 [K / P, N]."""
    per_word = pack_factor(bits)
    k, n = q.shape
    if k % per_word:
        raise ValueError(f"{k} input channels do not fill whole {per_word}-value words")
    packed = torch.zeros(k // per_word, n, dtype=torch.int64, device=q.device)
    for j in range(per_word):
        packed |= q[j::per_word].to(torch.int64) << (bits * j)
    return torch.where(packed >= 1 << 31, packed - (1 << 32), packed).to(torch.int32)


def unpack_qweight(qweight: torch.Tensor, bits: int) -> torch.Tensor:
    """qweight int32 [K / P, N] -> q int32 [K, N]."""
    per_word = pack_factor(bits)
    shifts = torch.arange(0, 32, bits, dtype=torch.int32, device=qweight.device)
    q = (qweight[:, None, :] >> shifts[None, :, None]) & ((1 << bits) - 1)
    return q.reshape(qweight.shape[0] * per_word, qweight.shape[1])


def dequantize_ref(qweight: torch.Tensor, scales: torch.Tensor, zeros: torch.Tensor, perm: torch.Tensor | None,
                   bits: int) -> torch.Tensor:
    """The float32 weight W [N, K] in the layer's own input order (perm undone)."""
    q = unpack_qweight(qweight, bits).float()
    group = q.shape[0] // scales.shape[0]
    w = ((q - zeros.float().repeat_interleave(group, 0)) * scales.float().repeat_interleave(group, 0)).t()
    if perm is None:
        return w.contiguous()
    out = torch.empty_like(w)
    out[:, perm.long()] = w
    return out


def quant_linear_ref(x: torch.Tensor, qweight: torch.Tensor, scales: torch.Tensor, zeros: torch.Tensor,
                     perm: torch.Tensor | None, bits: int) -> torch.Tensor:
    """x: [M, K] -> x @ W.T, [M, N] in x's dtype: the weight dequantized, rounded to x's dtype,
    then an ordinary matmul (what the kernels compute, up to summation order)."""
    return torch.nn.functional.linear(x, dequantize_ref(qweight, scales, zeros, perm, bits).to(x.dtype))


def check_weights(qweight: torch.Tensor, scales: torch.Tensor, zeros: torch.Tensor, perm: torch.Tensor | None,
                  bits: int) -> tuple[int, int, int]:
    """(K, N, group size) after checking the shapes the kernels assume of a layer's weights."""
    k, n = qweight.shape[0] * pack_factor(bits), qweight.shape[1]
    groups = scales.shape[0]
    assert qweight.dtype == torch.int32 and qweight.is_contiguous() and scales.is_contiguous() and zeros.is_contiguous()
    assert scales.shape == zeros.shape == (groups, n) and k % groups == 0
    assert perm is None or (perm.shape == (k,) and perm.dtype == torch.int32)
    group = k // groups
    assert group % 16 == 0, f"group size {group}: the kernels need a multiple of 16"
    return k, n, group


def check_layout(x: torch.Tensor, qweight: torch.Tensor, scales: torch.Tensor, zeros: torch.Tensor,
                 perm: torch.Tensor | None, bits: int) -> tuple[int, int, int]:
    """(M, N, group size) after checking the shapes the kernels assume of x and the weights."""
    k, n, group = check_weights(qweight, scales, zeros, perm, bits)
    assert x.shape[1] == k and x.stride(1) == 1, (x.shape, k)
    return x.shape[0], n, group


def k_tile(group: int, largest: int = 128) -> int:
    """The largest power-of-two K tile (16 .. largest) that divides the group size."""
    tile = largest
    while group % tile:
        tile //= 2
    return tile


@triton.jit
def dequantize_tile(qweight_ptr, scales_ptr, zeros_ptr, k0, offs_n, n_mask, N,
                    BITS: tl.constexpr, GROUP: tl.constexpr, BLOCK_K: tl.constexpr, BLOCK_N: tl.constexpr):
    """The float32 weights W[offs_n, k0 : k0 + BLOCK_K] ([BLOCK_N, BLOCK_K]); k0 is a multiple of
    BLOCK_K, and BLOCK_K divides GROUP. Each word is read once and its fields unpacked in the
    thread that loaded it (repeated_words): field j is shifted out of copy j. (Unpacking into a
    middle axis and reshaping moved values between threads: the fused GEMM at 128 rows took 0.35
    against 0.25 ms for one 7B layer's four projections on an H200.)"""
    PER_WORD: tl.constexpr = 32 // BITS
    words = repeated_words(qweight_ptr, k0, offs_n, n_mask, N, BITS, BLOCK_K, BLOCK_N)
    q = (words >> ((tl.arange(0, BLOCK_K) % PER_WORD) * BITS)[None, :]) & ((1 << BITS) - 1)
    scale, zero = group_scale_zero(scales_ptr, zeros_ptr, k0, offs_n, n_mask, N, GROUP)
    # a field q read as (q | 0x4B000000) is the float32 2^23 + q, exactly
    return ((q | 0x4B000000).to(tl.float32, bitcast=True) - (zero + 8388608.0)[:, None]) * scale[:, None]


@triton.jit
def repeated_words(qweight_ptr, k0, offs_n, n_mask, N, BITS: tl.constexpr, BLOCK_K: tl.constexpr,
                   BLOCK_N: tl.constexpr):
    """[BLOCK_N, BLOCK_K] int32: the word holding W[offs_n, k0 + i] at column i, each word loaded
    once and repeated in the registers of the thread that loaded it (tl.join along a new innermost
    axis, reshaped), so that the fields unpacked from it need not move between threads."""
    PER_WORD: tl.constexpr = 32 // BITS
    JOINS: tl.constexpr = 3 if BITS == 4 else 2  # log2(PER_WORD)
    rows = k0 // PER_WORD + tl.arange(0, BLOCK_K // PER_WORD)
    words = tl.load(qweight_ptr + rows[None, :].to(tl.int64) * N + offs_n[:, None], mask=n_mask[:, None], other=0)
    for _ in tl.static_range(JOINS):
        words = tl.reshape(tl.join(words, words), (BLOCK_N, words.shape[1] * 2))
    return words


@triton.jit
def group_scale_zero(scales_ptr, zeros_ptr, k0, offs_n, mask, N, GROUP: tl.constexpr):
    """The float32 scale and zero point of the group holding input k0, for columns offs_n (0
    where mask is not set)."""
    group = k0 // GROUP
    scale = tl.load(scales_ptr + group * N + offs_n, mask=mask, other=0.0).to(tl.float32)
    zero = tl.load(zeros_ptr + group * N + offs_n, mask=mask, other=0.0).to(tl.float32)
    return scale, zero


@triton.jit
def dot_tile(acc_t, x_ptr, x_rows, m_mask, perm_ptr, qweight_ptr, scales_ptr, zeros_ptr, k0, offs_n, n_mask, N,
             BITS: tl.constexpr, GROUP: tl.constexpr, BLOCK_K: tl.constexpr, BLOCK_N: tl.constexpr,
             HAS_PERM: tl.constexpr, IEEE: tl.constexpr):
    """acc_t [BLOCK_N, rows] + W[offs_n, k0 : k0 + BLOCK_K] @ x[rows, inputs k0 .. k0 + BLOCK_K].T on
    the tensor cores (out.T = W @ x.T: the weights, dequantized in registers, are the MMA's left
    operand and fill its 64-row minimum, the few rows of x its right one); x_rows: the rows'
    offsets into x, the inputs taken through perm when HAS_PERM."""
    offs_k = k0 + tl.arange(0, BLOCK_K)
    if HAS_PERM:
        offs_k = tl.load(perm_ptr + offs_k)
    x_t = tl.load(x_ptr + x_rows[None, :] + offs_k[:, None], mask=m_mask[None, :], other=0.0)
    w = dequantize_tile(qweight_ptr, scales_ptr, zeros_ptr, k0, offs_n, n_mask, N, BITS, GROUP, BLOCK_K,
                        BLOCK_N).to(x_t.dtype)
    if IEEE:
        acc_t += tl.dot(w, x_t, input_precision="ieee")
    else:
        acc_t += tl.dot(w, x_t)
    return acc_t

