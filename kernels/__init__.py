"""Kernels of the model's forward pass, each file holding a Triton kernel beside its pure-torch
reference. The functions exported here are what the model calls: the Triton kernel for CUDA
tensors, the reference everywhere else (the CPU path)."""

import torch

from .kv_cache_write import write_kv as _write_kv_triton, write_kv_ref
from .paged_attention import paged_attention_ref
from .paged_decode_attention import MAX_SPLITS, decode_num_splits, paged_decode_attention
from .paged_prefill_attention import paged_prefill_attention
from .rms_norm import rms_norm as _rms_norm_triton, rms_norm_ref
from .rotary import rotary as _rotary_triton, rotary_cos_sin, rotary_ref
from .silu_mul import silu_and_mul as _silu_and_mul_triton, silu_and_mul_ref


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float, residual: torch.Tensor | None = None):
    """(norm(x + residual) * weight, x + residual); x and residual may be reused as outputs."""
    return (_rms_norm_triton if x.is_cuda else rms_norm_ref)(x, weight, eps, residual)


def rotary(q: torch.Tensor, k: torch.Tensor, positions: torch.Tensor, cos_sin: torch.Tensor) -> None:
    (_rotary_triton if q.is_cuda else rotary_ref)(q, k, positions, cos_sin)


def silu_and_mul(x: torch.Tensor) -> torch.Tensor:
    return (_silu_and_mul_triton if x.is_cuda else silu_and_mul_ref)(x)


def write_kv(k, v, k_cache, v_cache, slot_mapping) -> None:
    (_write_kv_triton if k.is_cuda else write_kv_ref)(k, v, k_cache, v_cache, slot_mapping)


__all__ = ["rms_norm", "rotary", "rotary_cos_sin", "silu_and_mul", "write_kv", "paged_attention_ref",
           "paged_decode_attention", "paged_prefill_attention", "decode_num_splits", "MAX_SPLITS"]
