"""Weight-only quantized GEMV for decode steps: y = x @ W.T for a few rows of x (M <= 64) with W
in the layout of kernels/quantized_weights.py (4- or 8-bit integers, scales and zeros per group).

A decode step reads every weight once, so this kernel is about streaming qweight at the card's
bandwidth. Program (column block, K split) dequantizes its weight tiles in registers and
multiplies them with the rows of x. Split-K gives a layer whose N alone cannot fill the GPU
enough programs; each split stores its float32 partial sums and counts itself done, and the last
of a column block to finish adds them all in split order (one launch, not a second kernel's: the
result does not depend on which finished last). One row (batch 1) multiplies 4-bit weights in
packed float16 on the GPU (quant_gemv_packed.py), and in float32 on the words as loaded elsewhere
(_float32_products); 2..64 rows use tl.dot as the fused GEMM does (quant_gemm.py: the weights as
the MMA's rows, the inputs padded to 16, 32 or 64 columns), where K splits make many more programs
than the GEMM's row-and-column tiles would (measured on an H200: 16 rows of one 7B layer in 0.10
ms, 32 rows by the GEMM and cuBLAS on the dequantized weight in 0.17). Given x as Float16Rows
(kernels/gemm_input.py, written by the kernel that made x), those rows meet 4-bit weights in
float16 pairs as the GEMM's do (FLOAT16_ROWS); measured on an H200 at 2-16 rows, CUDA graphs,
without the input pass: qkv 24.1-25.1 -> 20.0-20.6 µs, gate_up 39.5-40.2 -> 32.9-33.5. Shapes are
fixed for a given M, so the launch can be captured in a CUDA graph.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import triton
import triton.language as tl

from .dependent_launch import dependent_launch, launch_next, wait_for_previous
from .gemm_input import Float16Rows
from .gemv_input import WORDS as PACKED_INPUT_WORDS, load_packed_input
from .ptx import runs_ptx
from .quant_gemm import float16_dot_tile
from .quant_gemv_packed import float16_products, pack_inputs
from .quantized_weights import check_layout, dot_tile, group_scale_zero, k_tile

MAX_ROWS = 64  # beyond, the fused GEMM (quant_gemm.py) or cuBLAS: kernels.quant_linear chooses


@triton.jit
def _load_tile(qweight_ptr, scales_ptr, zeros_ptr, k0, k_end, offs_n, n_mask, N, PER_WORD: tl.constexpr,
               GROUP: tl.constexpr, WORDS: tl.constexpr):
    """The packed words of inputs k0 .. k0 + WORDS * PER_WORD and their group's scales and zeros
    (nothing read past k_end)."""
    mask = n_mask & (tl.full(offs_n.shape, k0, tl.int32) < k_end)
    rows = k0 // PER_WORD + tl.arange(0, WORDS)
    words = tl.load(qweight_ptr + rows[:, None].to(tl.int64) * N + offs_n[None, :], mask=mask[None, :], other=0)
    scale, zero = group_scale_zero(scales_ptr, zeros_ptr, k0, offs_n, mask, N, GROUP)
    return words, scale, zero


@triton.jit
def _float32_products(x_ptr, perm_ptr, words, scale, zero, k0, BITS: tl.constexpr, HAS_PERM: tl.constexpr,
                      WORDS: tl.constexpr):
    """One tile's share of x @ W' for one row x, [WORDS, BLOCK_N] float32 (summed over rows later).

    Each weight costs few instructions: the tile's packed words are used as loaded (field j of
    every word meets inputs P * row + j: nothing reshaped or moved between threads); field j is
    masked in place, q * 2^s with s = BITS * j (one shift per word first for the upper half, so
    that 2^s < 2^16), and or-ed into the exponent of 2^23, giving the float 2^23 + q * 2^s
    exactly; less 2^23, times x * 2^-s (a power of two: exact) it adds q * x. The zero point comes
    off once per row of the tile (z * the sum of its inputs) and the group's scale once per tile."""
    PER_WORD: tl.constexpr = 32 // BITS
    HALF: tl.constexpr = PER_WORD // 2  # fields per 16-bit half of a word
    MASK: tl.constexpr = (1 << BITS) - 1
    rows = k0 // PER_WORD + tl.arange(0, WORDS)
    upper = words >> 16  # (its sign-extended bits are never selected)
    tile = tl.zeros(words.shape, tl.float32)
    x_sum = tl.zeros([WORDS], tl.float32)
    for j in tl.static_range(PER_WORD):
        inputs = rows * PER_WORD + j
        if HAS_PERM:
            inputs = tl.load(perm_ptr + inputs)
        x = tl.load(x_ptr + inputs).to(tl.float32)
        x_sum += x
        shift = BITS * (j % HALF)
        field = (words if j < HALF else upper) & (MASK << shift)
        w = (field | 0x4B000000).to(tl.float32, bitcast=True) - 8388608.0  # q * 2^shift, exactly
        tile += w * (x * (1.0 / (1 << shift)))[:, None]
    return (tile - zero[None, :] * x_sum[:, None]) * scale[None, :]


@triton.jit
def _one_row(x_ptr, qweight_ptr, scales_ptr, zeros_ptr, perm_ptr, packed_input_ptr, k_start, k_end, offs_n, n_mask, N,
             BITS: tl.constexpr, GROUP: tl.constexpr, HAS_PERM: tl.constexpr, BLOCK_N: tl.constexpr,
             BLOCK_K: tl.constexpr, PACKED: tl.constexpr, PACKED_INPUT: tl.constexpr, PDL: tl.constexpr):
    """x[k_start:k_end] @ W'[k_start:k_end, offs_n] for one row x: float32 [BLOCK_N].

    At batch 1 the instructions spent per weight set the pace as much as the bytes, so the products
    are made with as few as the hardware allows: 4-bit weights in packed float16 pairs on the GPU
    (PACKED: quant_gemv_packed.py), else in float32 (_float32_products). The next tile's loads are in
    flight while one is computed (two tiles ahead measured slower on an H200: 2.97 against 2.82
    ms per 7B token), with its inputs when they come packed (PACKED_INPUT: kernels/gemv_input.py)."""
    PER_WORD: tl.constexpr = 32 // BITS
    WORDS: tl.constexpr = BLOCK_K // PER_WORD
    acc = tl.zeros([WORDS, BLOCK_N], tl.float32)
    words, scale, zero = _load_tile(qweight_ptr, scales_ptr, zeros_ptr, k_start, k_end, offs_n, n_mask, N,
                                    PER_WORD, GROUP, WORDS)
    wait_for_previous(PDL)  # the first weights are on their way while the previous kernel ends
    if PACKED_INPUT:
        inputs = load_packed_input(packed_input_ptr, k_start, k_end, WORDS)
    for k0 in range(k_start, k_end, BLOCK_K):
        ahead = _load_tile(qweight_ptr, scales_ptr, zeros_ptr, k0 + BLOCK_K, k_end, offs_n, n_mask, N, PER_WORD,
                           GROUP, WORDS)
        if PACKED_INPUT:
            inputs_ahead = load_packed_input(packed_input_ptr, k0 + BLOCK_K, k_end, WORDS)
            acc += float16_products(inputs, words, scale, zero)
            inputs = inputs_ahead
        elif PACKED:
            acc += float16_products(pack_inputs(x_ptr, perm_ptr, k0, HAS_PERM, WORDS), words, scale, zero)
        else:
            acc += _float32_products(x_ptr, perm_ptr, words, scale, zero, k0, BITS, HAS_PERM, WORDS)
        words, scale, zero = ahead
    return tl.sum(acc, axis=0)


@triton.jit
def _quant_gemv_kernel(
    x_ptr,  # [M, K] activations
    qweight_ptr,  # [K / P, N] int32 packed weights
    scales_ptr,  # [K / GROUP, N]
    zeros_ptr,  # [K / GROUP, N]
    perm_ptr,  # [K] int32: the input channel of each weight row (read when HAS_PERM)
    packed_input_ptr,  # [K / 8, 5] int32: x packed by its producer (read when PACKED_INPUT)
    out_ptr,  # [M, N] output
    part_ptr,  # [splits, M, N] float32 partial sums (when PARTIAL)
    done_ptr,  # [column blocks] int32 splits finished, zero between launches (when PARTIAL)
    down_ptr,  # [M] float32: Float16Rows' powers of two (read when FLOAT16_ROWS)
    M, N, K, k_per_split, stride_xm, stride_om,
    BITS: tl.constexpr, GROUP: tl.constexpr, HAS_PERM: tl.constexpr, ROWS: tl.constexpr,
    BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, PARTIAL: tl.constexpr, IEEE: tl.constexpr, PACKED: tl.constexpr,
    PACKED_INPUT: tl.constexpr, FLOAT16_ROWS: tl.constexpr, PTX: tl.constexpr, PDL: tl.constexpr,
):
    launch_next(PDL)
    split = tl.program_id(1)
    offs_n = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
    n_mask = offs_n < N
    offs_m = tl.arange(0, ROWS)
    m_mask = offs_m < M
    k_start = split * k_per_split
    k_end = tl.minimum(k_start + k_per_split, K)
    if ROWS == 1:
        acc = _one_row(x_ptr, qweight_ptr, scales_ptr, zeros_ptr, perm_ptr, packed_input_ptr, k_start, k_end, offs_n,
                       n_mask, N, BITS, GROUP, HAS_PERM, BLOCK_N, BLOCK_K, PACKED, PACKED_INPUT, PDL)[None, :]
    else:
        wait_for_previous(PDL)
        acc_t = tl.zeros([BLOCK_N, ROWS], tl.float32)  # out.T = W @ x.T: the weights fill the MMA's rows
        for k0 in range(k_start, k_end, BLOCK_K):
            if FLOAT16_ROWS:  # x is Float16Rows' values
                acc_t = float16_dot_tile(acc_t, x_ptr, offs_m * stride_xm, m_mask, qweight_ptr, scales_ptr, zeros_ptr,
                                         k0, offs_n, n_mask, N, GROUP, BLOCK_K, BLOCK_N, PTX)
            else:
                acc_t = dot_tile(acc_t, x_ptr, offs_m * stride_xm, m_mask, perm_ptr, qweight_ptr, scales_ptr,
                                 zeros_ptr, k0, offs_n, n_mask, N, BITS, GROUP, BLOCK_K, BLOCK_N, HAS_PERM, IEEE)
        if FLOAT16_ROWS:
            acc_t *= tl.load(down_ptr + offs_m, mask=m_mask, other=0.0)[None, :]
        acc = tl.trans(acc_t)
    mask = m_mask[:, None] & n_mask[None, :]
    out = out_ptr + offs_m[:, None] * stride_om + offs_n[None, :]
    if PARTIAL:
        part = part_ptr + offs_m[:, None] * N + offs_n[None, :]
        tl.store(part + split * M * N, acc, mask=mask)
        tl.debug_barrier()  # all of this program's partial sums are stored before it counts itself done
        done = tl.atomic_add(done_ptr + tl.program_id(0), 1, sem="acq_rel", scope="gpu")
        if done == tl.num_programs(1) - 1:  # the last split to finish adds all, in split order
            acc = tl.zeros([ROWS, BLOCK_N], tl.float32)
            for s in range(0, tl.num_programs(1)):
                acc += tl.load(part + s * M * N, mask=mask, other=0.0, cache_modifier=".cg")
            tl.store(out, acc.to(out_ptr.dtype.element_ty), mask=mask)
            tl.atomic_xchg(done_ptr + tl.program_id(0), 0, sem="relaxed")  # ready for the next launch
    else:
        tl.store(out, acc.to(out_ptr.dtype.element_ty), mask=mask)


def packed_products(x: torch.Tensor, bits: int) -> bool:
    """Whether batch 1 takes the packed float16 products of kernels/quant_gemv_packed.py: PTX,
    so on an NVIDIA GPU only, for 16-bit activations (float32 keeps float32 products), and for
    4-bit weights: with 8-bit ones float32 products measured faster on an H200 (one 7B layer's
    four projections 89.5-91.5 against 96.2-97.4 µs in two runs)."""
    return bits == 4 and runs_ptx(x) and x.dtype in (torch.bfloat16, torch.float16)


def takes_packed_input(x: torch.Tensor, bits: int, perm: torch.Tensor | None) -> bool:
    """Whether quant_gemv can read x packed by the kernel that made it (kernels/gemv_input.py):
    one row on packed products, its inputs in order (no act-order permutation)."""
    return x.shape[0] == 1 and perm is None and packed_products(x, bits)


def takes_float16_rows(x: torch.Tensor, bits: int, perm: torch.Tensor | None) -> bool:
    """Whether quant_gemv (and quant_gemm, up to its float16 rows) can read x as Float16Rows made
    by the kernel that made x: 2..MAX_ROWS rows of half precision, 4-bit weights, inputs in order."""
    return 2 <= x.shape[0] <= MAX_ROWS and bits == 4 and perm is None and x.dtype in (torch.bfloat16, torch.float16)


def new_split_counters(n: int, device: torch.device | str) -> torch.Tensor:
    """Split counters for a projection of n outputs (quant_gemv's split_counters): one per column
    block of the narrowest tile (16), all zero."""
    return torch.zeros(triton.cdiv(n, 16), dtype=torch.int32, device=device)


@dataclass(frozen=True)
class Tiling:
    """The default column tile and K splits: about `programs_per_sm` programs per SM, each split
    keeping at least `least_tiles` K tiles."""
    block_n: int
    programs_per_sm: int
    least_tiles: int


# From `bench kernels --only quant-sweeps` on an H200 at the 7B projections. Batch 1 with packed
# products, swept under dependent launch (benchmarks/2026-12-02-h200-call9-gemv-sweep.json): a
# layer's projections in 60.1 µs against 65.1 with the tiling before (64 columns, 8 per SM, 4
# tiles), which 8-bit weights keep (128 columns were slower for them) as do 2-64 rows (swept
# before, at batch 1).
PACKED_ONE_ROW = Tiling(block_n=128, programs_per_sm=4, least_tiles=2)
DEFAULT_TILING = Tiling(block_n=64, programs_per_sm=8, least_tiles=4)

# (K, N) -> (block_n, K splits) for batch 1 on inputs packed by their producer where a sweep found
# a tiling at least 3 % faster than PACKED_ONE_ROW's (an H200, 8 layers' weights
# per CUDA graph: benchmarks/2026-12-02-h200-packed-gemv-sweep.json, µs): CodeLlama-7B's gate_up
# 20.81 against 21.65, down_proj 12.61 / 13.08; 34B's gate_up 62.76 / 70.02, down_proj 34.57 /
# 37.00. The very wide gate_up wants narrow columns and more programs, down_proj wide columns and
# fewer, which no programs-per-SM rule gave both of. (o_proj, whose input is not packed, measured
# the same either way: 8.02 against 8.03.)
MEASURED_ONE_ROW = {(4096, 22016): (64, 8), (11008, 4096): (256, 17), (8192, 44032): (64, 4), (22016, 8192): (256, 8)}


def gemv_splits(n: int, k: int, block_n: int, block_k: int, num_sms: int, tiling: Tiling = DEFAULT_TILING) -> int:
    """Splits of K for block_n-wide column programs, by the tiling's programs per SM and least K
    tiles per split."""
    programs = triton.cdiv(n, block_n)
    return max(1, min(triton.cdiv(tiling.programs_per_sm * num_sms, programs), k // block_k // tiling.least_tiles))


def quant_gemv(x: torch.Tensor, qweight: torch.Tensor, scales: torch.Tensor, zeros: torch.Tensor,
               perm: torch.Tensor | None, bits: int, *, split_k: int | None = None, block_n: int | None = None,
               block_k: int | None = None, num_warps: int = 4, packed: bool | None = None,
               split_counters: torch.Tensor | None = None,
               packed_input: torch.Tensor | Float16Rows | None = None) -> torch.Tensor:
    """x: [M, K] with M <= 64 -> [M, N] in x's dtype; the result of quant_linear_ref. The tile
    sizes, split count, warps and batch 1's products (packed, 4-bit only: see packed_products) may
    be given (benchmarks), else they are chosen here. split_counters: new_split_counters' zeros,
    which the kernel leaves zero (a projection keeps its own, so a CUDA graph needs no memset);
    allocated here when not given. packed_input, read instead of x: x as kernels/gemv_input.py packs
    it (where takes_packed_input), or as Float16Rows (where takes_float16_rows)."""
    m, n, group = check_layout(x, qweight, scales, zeros, perm, bits)
    assert 1 <= m <= MAX_ROWS, f"quant_gemv takes 1..{MAX_ROWS} rows, got {m}"
    assert not packed or bits == 4, "packed float16 products are for 4-bit weights"
    packed = packed_products(x, bits) if packed is None else packed
    k = x.shape[1]
    float16_rows = isinstance(packed_input, Float16Rows)
    if float16_rows:
        assert takes_float16_rows(x, bits, perm) and packed_input.values.shape == x.shape
    elif packed_input is not None:
        assert takes_packed_input(x, bits, perm) and packed, "a packed input is for one row on packed products"
        assert packed_input.dtype == torch.int32 and packed_input.shape == (k // 8, PACKED_INPUT_WORDS.value)
    rows = 1 if m == 1 else max(16, triton.next_power_of_2(m))
    tiling = PACKED_ONE_ROW if m == 1 and packed else DEFAULT_TILING
    if m == 1 and packed_input is not None and block_n is None and split_k is None and (k, n) in MEASURED_ONE_ROW:
        block_n, split_k = MEASURED_ONE_ROW[k, n]
    block_n = block_n or tiling.block_n
    block_k = min(block_k or 128, k_tile(group))
    if split_k is None:
        sms = torch.cuda.get_device_properties(x.device).multi_processor_count if x.is_cuda else 1
        split_k = gemv_splits(n, k, block_n, block_k, sms, tiling)
    k_per_split = triton.cdiv(triton.cdiv(k, block_k), split_k) * block_k
    split_k = triton.cdiv(k, k_per_split)  # no empty split
    out = torch.empty(m, n, dtype=x.dtype, device=x.device)
    blocks = triton.cdiv(n, block_n)
    pdl = dependent_launch(x)
    if split_k > 1:
        parts = torch.empty(split_k, m, n, dtype=torch.float32, device=x.device)
        if split_counters is None:
            split_counters = new_split_counters(n, x.device)
        assert split_counters.dtype == torch.int32 and split_counters.numel() >= blocks
    else:
        parts = split_counters = out  # not read
    x_in, down = packed_input if float16_rows else (x, out)
    words = None if float16_rows else packed_input  # batch 1's packed input, if given
    _quant_gemv_kernel[(blocks, split_k)](
        x_in, qweight, scales, zeros, perm if perm is not None else qweight,
        qweight if words is None else words, out, parts, split_counters, down,
        m, n, k, k_per_split, x_in.stride(0), out.stride(0),
        BITS=bits, GROUP=group, HAS_PERM=perm is not None, ROWS=rows, BLOCK_N=block_n, BLOCK_K=block_k,
        PARTIAL=split_k > 1, IEEE=x.dtype == torch.float32, PACKED=packed,
        PACKED_INPUT=words is not None, FLOAT16_ROWS=float16_rows,
        PTX=float16_rows and runs_ptx(x), PDL=pdl, launch_pdl=pdl, num_warps=num_warps)
    return out
