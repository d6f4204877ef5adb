"""Kernel speeds against the copy bandwidth: paged decode attention (over a bf16 and an int8 KV
cache), prefill attention, and the quantized-weight kernels (quant_kernels_bench.py)."""

from __future__ import annotations

import torch
import triton

from kernels import decode_num_splits, paged_decode_attention, paged_prefill_attention

from .common import SHAPES, graph_ms


def _cache(batch: int, ctx: int, kv_heads: int, dim: int, page: int = 16, kv_int8: bool = False):
    """k, v caches (int8 ones with their float32 scales, see kernels/kv_int8.py) and block tables."""
    blocks_per_seq = triton.cdiv(ctx, page)
    num_blocks = batch * blocks_per_seq
    shape = (num_blocks, page, kv_heads, dim)
    if kv_int8:
        k, v = (torch.randint(-127, 128, shape, dtype=torch.int8, device="cuda") for _ in range(2))
        scales = tuple(torch.rand(shape[:3], device="cuda") / 127 for _ in range(2))
    else:
        k, v = (torch.randn(shape, dtype=torch.bfloat16, device="cuda") for _ in range(2))
        scales = (None, None)
    tables = torch.randperm(num_blocks, device="cuda", dtype=torch.int64).to(torch.int32).view(batch, blocks_per_seq)
    return k, v, scales, tables


def decode_attention(shape: str, batch: int, ctx: int, copy_bw: float, kv_int8: bool = False, **tiles) -> dict:
    """KV bytes read per second, against the copy bandwidth; an int8 cache reads D + 4 bytes per
    (token, head) row of k and of v, a bf16 one 2 * D. tiles: block_n, num_stages of the kernel."""
    _, hidden, heads, kv_heads, _ = SHAPES[shape]
    dim = hidden // heads
    k, v, (k_scales, v_scales), tables = _cache(batch, ctx, kv_heads, dim, kv_int8=kv_int8)
    q = torch.randn(batch, heads, dim, dtype=torch.bfloat16, device="cuda")
    lens = torch.full((batch,), ctx, dtype=torch.int32, device="cuda")
    sms = torch.cuda.get_device_properties(0).multi_processor_count
    splits = decode_num_splits(batch, kv_heads, ctx, sms, kv_int8=kv_int8, group=heads // kv_heads)
    ms = graph_ms([lambda: paged_decode_attention(q, k, v, tables, lens, dim ** -0.5, splits, k_scales=k_scales,
                                                  v_scales=v_scales, **tiles)] * 4)
    kv_bytes = 2 * batch * ctx * kv_heads * (dim + 4 if kv_int8 else 2 * dim)
    del k, v, k_scales, v_scales
    torch.cuda.empty_cache()
    return {"shape": shape, "kv": "int8" if kv_int8 else "bf16", "batch": batch, "context": ctx, "splits": splits,
            **tiles, "ms": ms, "gb_s": kv_bytes / ms / 1e6, "pct_of_copy_bw": 100 * kv_bytes / (ms / 1e3) / copy_bw}


def prefill_attention(shape: str, length: int) -> dict:
    _, hidden, heads, kv_heads, _ = SHAPES[shape]
    dim = hidden // heads
    k, v, _, tables = _cache(1, length, kv_heads, dim)
    q = torch.randn(length, heads, dim, dtype=torch.bfloat16, device="cuda")
    lens = torch.tensor([length], dtype=torch.int32, device="cuda")
    cu = torch.tensor([0, length], dtype=torch.int32, device="cuda")
    ms = triton.testing.do_bench(
        lambda: paged_prefill_attention(q, k, v, cu, lens, tables, dim ** -0.5, length), warmup=25, rep=100,
        return_mode="median")
    flops = 4 * heads * dim * length * length / 2  # causal: half the score matrix
    return {"shape": shape, "length": length, "ms": ms, "tflops": flops / ms / 1e9}


def int8_kv_tiles(copy_bw: float) -> list[dict]:
    """Decode attention over an int8 cache at batch 64 x 8192 (7B: the CUDA-core kernel, which
    has no pipeline depth to tune) with other key tiles than its default 8 (up to a page, 16)."""
    return [decode_attention("7b", 64, 8192, copy_bw, kv_int8=True, block_n=block_n) for block_n in (2, 4, 8, 16)]


def run(copy_bw: float, only: str | None = None) -> dict:
    from . import quant_kernels_bench

    record = {}
    if only in (None, "attention"):
        record |= {
            "decode_attention": [decode_attention(s, 64, c, copy_bw) for s in ("7b", "34b") for c in (512, 2048, 8192)]
            + [decode_attention("7b", 1, c, copy_bw) for c in (512, 4096)],
            "decode_attention_int8_kv": [decode_attention(s, b, c, copy_bw, kv_int8=True) for s in ("7b", "34b")
                                         for b, c in ((64, 512), (64, 2048), (64, 8192), (256, 512), (8, 4096))],
            "decode_attention_int8_kv_tiles": int8_kv_tiles(copy_bw),
            "prefill_attention": [prefill_attention(s, n) for s in ("7b", "34b") for n in (2048, 8192)],
        }
    if only in (None, "quant"):
        record |= quant_kernels_bench.run(copy_bw)
    if only == "quant-sweeps":  # for choosing the quantized kernels' tiles: not part of the default run
        record |= quant_kernels_bench.run(copy_bw, sweeps=True)
    return record
