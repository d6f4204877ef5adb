"""Kernel speeds against the copy bandwidth: paged decode attention, prefill attention."""

from __future__ import annotations

import torch
import triton

from kernels import decode_num_splits, paged_decode_attention, paged_prefill_attention

from .common import SHAPES


def _cache(batch: int, ctx: int, kv_heads: int, dim: int, page: int = 16):
    blocks_per_seq = triton.cdiv(ctx, page)
    num_blocks = batch * blocks_per_seq
    k = torch.randn(num_blocks, page, kv_heads, dim, dtype=torch.bfloat16, device="cuda")
    v = torch.randn_like(k)
    tables = torch.randperm(num_blocks, device="cuda", dtype=torch.int64).to(torch.int32).view(batch, blocks_per_seq)
    return k, v, tables


def decode_attention(shape: str, batch: int, ctx: int, copy_bw: float) -> dict:
    _, hidden, heads, kv_heads, _ = SHAPES[shape]
    dim = hidden // heads
    k, v, tables = _cache(batch, ctx, kv_heads, dim)
    q = torch.randn(batch, heads, dim, dtype=torch.bfloat16, device="cuda")
    lens = torch.full((batch,), ctx, dtype=torch.int32, device="cuda")
    sms = torch.cuda.get_device_properties(0).multi_processor_count
    splits = decode_num_splits(batch, kv_heads, ctx, sms)
    ms = triton.testing.do_bench(lambda: paged_decode_attention(q, k, v, tables, lens, dim ** -0.5, splits),
                                 warmup=25, rep=100, return_mode="median")
    kv_bytes = 2 * batch * ctx * kv_heads * dim * 2
    del k, v
    torch.cuda.empty_cache()
    return {"shape": shape, "batch": batch, "context": ctx, "splits": splits, "ms": ms,
            "gb_s": kv_bytes / ms / 1e6, "pct_of_copy_bw": 100 * kv_bytes / (ms / 1e3) / copy_bw}


def prefill_attention(shape: str, length: int) -> dict:
    _, hidden, heads, kv_heads, _ = SHAPES[shape]
    dim = hidden // heads
    k, v, tables = _cache(1, length, kv_heads, dim)
    q = torch.randn(length, heads, dim, dtype=torch.bfloat16, device="cuda")
    lens = torch.tensor([length], dtype=torch.int32, device="cuda")
    cu = torch.tensor([0, length], dtype=torch.int32, device="cuda")
    ms = triton.testing.do_bench(
        lambda: paged_prefill_attention(q, k, v, cu, lens, tables, dim ** -0.5, length), warmup=25, rep=100,
        return_mode="median")
    flops = 4 * heads * dim * length * length / 2  # causal: half the score matrix
    return {"shape": shape, "length": length, "ms": ms, "tflops": flops / ms / 1e9}


def run(copy_bw: float) -> dict:
    return {
        "decode_attention": [decode_attention(s, 64, c, copy_bw) for s in ("7b", "34b") for c in (512, 2048, 8192)]
        + [decode_attention("7b", 1, c, copy_bw) for c in (512, 4096)],
        "prefill_attention": [prefill_attention(s, n) for s in ("7b", "34b") for n in (2048, 8192)],
    }
