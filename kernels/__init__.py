"""Kernels of the model's forward pass, each file holding a Triton kernel beside its pure-torch
reference. The functions exported here are what the model calls: the Triton kernel for CUDA
tensors, the reference everywhere else (the CPU path)."""

from .kv_cache_write import write_kv_ref
from .paged_attention import paged_attention_ref
from .rms_norm import rms_norm_ref
from .rotary import rotary_cos_sin, rotary_ref
from .silu_mul import silu_and_mul_ref

rms_norm = rms_norm_ref
rotary = rotary_ref
silu_and_mul = silu_and_mul_ref
write_kv = write_kv_ref
paged_attention = paged_attention_ref

__all__ = ["rms_norm", "rotary", "rotary_cos_sin", "silu_and_mul", "write_kv", "paged_attention"]
