"""The quantized-weight kernels at CodeLlama-7B's projection sizes, each beside bf16 cuBLAS in the
same process: the GEMV for decode batches of 1, 8 and 16 rows (W4A16 in groups of 128, W8A16 per
output channel) with the bytes each reads as a share of the copy bandwidth, the dequantizing GEMM
for a 2,048-token prefill, and a sweep of the GEMV's tile sizes at batch 1 and 16."""

from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F
import triton

from kernels.quant_gemm import quant_gemm
from kernels.quant_gemv import quant_gemv

# input and output features of CodeLlama-7B's projections
PROJECTIONS_7B = {"qkv": (4096, 12288), "o": (4096, 4096), "gate_up": (4096, 22016), "down": (11008, 4096)}
SCHEMES = {"w4a16": (4, 128), "w8a16": (8, -1)}  # bits, group size (-1: per output channel)


def _weights(k: int, n: int, bits: int, group: int) -> tuple:
    """Random weights in the kernels' layout (values do not change the speed)."""
    group = k if group == -1 else group
    qweight = torch.randint(-2 ** 31, 2 ** 31 - 1, (k * bits // 32, n), dtype=torch.int32, device="cuda")
    scales = torch.rand(k // group, n, device="cuda", dtype=torch.float16) / 100
    zeros = torch.full((k // group, n), 2 ** (bits - 1), device="cuda", dtype=torch.float16)
    return qweight, scales, zeros, None, bits


def _bytes(weights: tuple) -> int:
    return sum(t.numel() * t.element_size() for t in weights[:3])


def _ms(fn) -> float:
    return triton.testing.do_bench(fn, warmup=25, rep=100, return_mode="median")


def decode_gemv(copy_bw: float) -> list[dict]:
    rows = []
    for (name, (k, n)), m in itertools.product(PROJECTIONS_7B.items(), (1, 8, 16)):
        x = torch.randn(m, k, dtype=torch.bfloat16, device="cuda")
        dense = torch.randn(n, k, dtype=torch.bfloat16, device="cuda")
        row = {"projection": name, "k": k, "n": n, "m": m, "bf16_ms": _ms(lambda: F.linear(x, dense))}
        row["bf16_pct_of_copy_bw"] = 100 * dense.numel() * 2 / (row["bf16_ms"] / 1e3) / copy_bw
        for scheme, (bits, group) in SCHEMES.items():
            w = _weights(k, n, bits, group)
            row[f"{scheme}_ms"] = ms = _ms(lambda: quant_gemv(x, *w))
            row[f"{scheme}_speedup"] = row["bf16_ms"] / ms
            row[f"{scheme}_pct_of_copy_bw"] = 100 * _bytes(w) / (ms / 1e3) / copy_bw
        rows.append(row)
    for m in (1, 8, 16):  # one decoder layer's four projections
        layer = [r for r in rows if r["m"] == m and r["projection"] in PROJECTIONS_7B]
        total = {key: sum(r[key] for r in layer) for key in ("bf16_ms", "w4a16_ms", "w8a16_ms")}
        rows.append({"projection": "layer", "m": m, **total,
                     **{f"{s}_speedup": total["bf16_ms"] / total[f"{s}_ms"] for s in SCHEMES}})
    return rows


def prefill_gemm(m: int = 2048) -> list[dict]:
    rows = []
    for name, (k, n) in PROJECTIONS_7B.items():
        x = torch.randn(m, k, dtype=torch.bfloat16, device="cuda")
        dense = torch.randn(n, k, dtype=torch.bfloat16, device="cuda")
        flops = 2 * m * n * k
        row = {"projection": name, "m": m, "bf16_ms": _ms(lambda: F.linear(x, dense))}
        for scheme, (bits, group) in SCHEMES.items():
            w = _weights(k, n, bits, group)
            row[f"{scheme}_ms"] = _ms(lambda: quant_gemm(x, *w))
            row[f"{scheme}_unpack_by_loads_ms"] = _ms(lambda: quant_gemm(x, *w, unpack_by_loads=True))
        rows.append(row | {f"{key[:-3]}_tflops": flops / v / 1e9 for key, v in list(row.items()) if key.endswith("_ms")})
    return rows


def gemv_sweep(copy_bw: float) -> list[dict]:
    """The W4A16 GEMV's tile sizes, warps and unpacking (split count chosen as in serving), then
    its split counts at the default tiles; config None is the default."""
    rows = []
    for (k, n), m in itertools.product(((4096, 4096), (4096, 22016)), (1, 16)):
        w = _weights(k, n, 4, 128)
        x = torch.randn(m, k, dtype=torch.bfloat16, device="cuda")
        tiles = [(bn, bk, 4) for bn, bk in itertools.product((64, 128, 256) if m == 1 else (32, 64, 128), (64, 128))]
        tiles += [(128, 64, 8)] if m == 1 else []
        configs = [None] + [dict(block_n=bn, block_k=bk, num_warps=nw, unpack_by_loads=by_loads)
                            for (bn, bk, nw), by_loads in itertools.product(tiles, (False, True))] \
            + [dict(split_k=split) for split in (1, 2, 4, 8, 16, 32)]
        for config in configs:
            ms = _ms(lambda: quant_gemv(x, *w, **(config or {})))
            rows.append({"k": k, "n": n, "m": m, "config": config, "ms": ms,
                         "pct_of_copy_bw": 100 * _bytes(w) / (ms / 1e3) / copy_bw})
    return rows


def run(copy_bw: float) -> dict:
    return {"quant_gemv_7b": decode_gemv(copy_bw), "quant_gemm_7b": prefill_gemm(),
            "quant_gemv_sweep": gemv_sweep(copy_bw)}
