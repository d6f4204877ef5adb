"""Kernels of the model's forward pass, each file holding a Triton kernel beside its pure-torch
reference. The functions exported here are what the model calls: the Triton kernel for CUDA
tensors, the reference everywhere else (the CPU path)."""

import torch

from .paged_attention import paged_attention_ref
from .paged_decode_attention import MAX_SPLITS, decode_num_splits, paged_decode_attention
from .paged_prefill_attention import paged_prefill_attention
from .quant_dequantize import dequantize
from .quant_gemm import BLOCK_N as GEMM_BLOCK_N, quant_gemm
from .gemm_input import Float16Rows
from .quant_gemv import MAX_ROWS as GEMV_MAX_ROWS, quant_gemv, takes_float16_rows, takes_packed_input
from .quantized_weights import quant_linear_ref
from .rms_norm import rms_norm as _rms_norm_triton, rms_norm_ref
from .rotary import rotary_cos_sin, rotary_write_kv as _rotary_write_kv_triton, rotary_write_kv_ref
from .silu_mul import silu_and_mul as _silu_and_mul_triton, silu_and_mul_ref


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float, residual: torch.Tensor | None = None,
             packed_out: torch.Tensor | Float16Rows | None = None):
    """(norm(x + residual) * weight, x + residual); x and residual may be reused as outputs.
    packed_out (GPU only): a buffer for the output in the form the next 4-bit projection reads
    (one row packed for the batch-1 GEMV, gemv_input.py; Float16Rows, gemm_input.py)."""
    if x.is_cuda:
        return _rms_norm_triton(x, weight, eps, residual, packed_out)
    assert packed_out is None, "inputs are packed for the GEMV on the GPU only"
    return rms_norm_ref(x, weight, eps, residual)


def rotary_write_kv(q, k, v, positions, cos_sin, k_cache, v_cache, slot_mapping, k_scales=None,
                    v_scales=None) -> None:
    """Rotate q in place; the rotated k and v go into the paged caches (k itself is unchanged),
    quantized when the caches are int8 (their scales into k_scales / v_scales)."""
    (_rotary_write_kv_triton if q.is_cuda else rotary_write_kv_ref)(q, k, v, positions, cos_sin, k_cache, v_cache,
                                                                    slot_mapping, k_scales, v_scales)


# Which kernel multiplies how many rows (measured at CodeLlama-7B's projections on an H200, `bench
# kernels`): the split-K GEMV up to 64 rows, except that a projection wide enough for the fused
# GEMM's column programs to fill the GPU (qkv, gate_up) takes the GEMM beyond 32 rows (at 64: 0.039
# and 0.056 against the GEMV's 0.041 and 0.064 ms); the fused GEMM up to 128 rows (there 1.3-1.5x
# cuBLAS on the dequantized weight; at 192 and 256 it was not faster); else cuBLAS on the weight
# dequantized whole.
WIDE_GEMV_MAX_ROWS = 32
FUSED_MAX_ROWS = 128


def quant_linear(x: torch.Tensor, qweight: torch.Tensor, scales: torch.Tensor, zeros: torch.Tensor,
                 perm: torch.Tensor | None, bits: int, split_counters: torch.Tensor | None = None,
                 packed_input: torch.Tensor | Float16Rows | None = None) -> torch.Tensor:
    """x @ W.T for quantized W (kernels/quantized_weights.py): the GEMV for decode-sized inputs
    (split_counters, packed_input: see quant_gemv), the fused GEMM for mid-sized ones with outputs
    enough to fill the GPU, else a matmul on the dequantized weight (the choices above)."""
    float16_rows = isinstance(packed_input, Float16Rows)
    assert packed_input is None or (takes_float16_rows if float16_rows else takes_packed_input)(x, bits, perm)
    if not x.is_cuda:
        return quant_linear_ref(x, qweight, scales, zeros, perm, bits)
    rows = x.shape[0]
    if 1 <= rows <= GEMV_MAX_ROWS and (rows <= WIDE_GEMV_MAX_ROWS or not _gemm_fills_the_gpu(qweight)):
        return quant_gemv(x, qweight, scales, zeros, perm, bits, split_counters=split_counters,
                          packed_input=packed_input)
    if rows <= FUSED_MAX_ROWS and _gemm_fills_the_gpu(qweight):
        return quant_gemm(x, qweight, scales, zeros, perm, bits, float16_rows=packed_input if float16_rows else None)
    return x @ dequantize(qweight, scales, zeros, perm, bits, x.dtype)


def _gemm_fills_the_gpu(qweight: torch.Tensor) -> bool:
    """Whether the fused GEMM's column programs alone are as many as the GPU's SMs (a wide
    projection: qkv, gate_up); looked up only past 32 rows, as decode steps also run eagerly."""
    return qweight.shape[1] // GEMM_BLOCK_N >= torch.cuda.get_device_properties(qweight.device).multi_processor_count


def silu_and_mul(x: torch.Tensor, packed_out: torch.Tensor | Float16Rows | None = None) -> torch.Tensor:
    """silu(gate) * up; packed_out as rms_norm's."""
    if x.is_cuda:
        return _silu_and_mul_triton(x, packed_out)
    assert packed_out is None, "inputs are packed for the GEMV on the GPU only"
    return silu_and_mul_ref(x)


__all__ = ["rms_norm", "rotary_write_kv", "rotary_cos_sin", "silu_and_mul", "paged_attention_ref",
           "paged_decode_attention", "paged_prefill_attention", "decode_num_splits", "MAX_SPLITS", "quant_linear"]
