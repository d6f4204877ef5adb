"""The quantized-weight kernels at CodeLlama-7B's projection sizes, each beside bf16 cuBLAS in the same
process: the GEMV for decode batches of 1 to 64 rows (W4A16 in groups of 128, W8A16 per output
channel) with the bytes each reads as a share of the copy bandwidth (W4A16 batch 1 also with
float32 products), the fused GEMM and cuBLAS on the dequantized weight for 32 to 2,048 rows; or
(`bench kernels --only quant-sweeps`) a sweep of the batch-1 GEMV's tiles, warps and K splits, and
one of the fused GEMM's tiles and pipeline stages at 32 to 256 rows (W4A16). Every time is a CUDA-graph replay over copies of the
weights too many for L2 (common.graph_ms), as a decode step runs them: small kernels timed one
launch at a time measure the launch, not the kernel."""

from __future__ import annotations

import functools
import itertools

import torch
import torch.nn.functional as F
import triton

from kernels.quant_dequantize import dequantize
from kernels.quant_gemm import quant_gemm
from kernels.quant_gemv import new_split_counters, packed_products, quant_gemv

from .common import graph_ms, operand_copies

# input and output features of CodeLlama-7B's projections
PROJECTIONS_7B = {"qkv": (4096, 12288), "o": (4096, 4096), "gate_up": (4096, 22016), "down": (11008, 4096)}
SCHEMES = {"w4a16": (4, 128), "w8a16": (8, -1)}  # bits, group size (-1: per output channel)
GEMV_ROWS = (1, 8, 16, 32, 64)


def _weights(k: int, n: int, bits: int, group: int) -> tuple:
    """Random weights in the kernels' layout (values do not change the speed)."""
    group = k if group == -1 else group
    qweight = torch.randint(-2 ** 31, 2 ** 31 - 1, (k * bits // 32, n), dtype=torch.int32, device="cuda")
    scales = torch.rand(k // group, n, device="cuda", dtype=torch.float16) / 100
    zeros = torch.full((k // group, n), 2 ** (bits - 1), device="cuda", dtype=torch.float16)
    return qweight, scales, zeros, None, bits


def _bytes(weights: tuple) -> int:
    return sum(t.numel() * t.element_size() for t in weights[:3])


def _weight_pool(k: int, n: int, bits: int, group: int) -> list[tuple]:
    one = _weights(k, n, bits, group)
    return [one] + [_weights(k, n, bits, group) for _ in range(operand_copies(_bytes(one)) - 1)]


def _dense_pool(k: int, n: int) -> list[torch.Tensor]:
    return [torch.randn(n, k, dtype=torch.bfloat16, device="cuda") for _ in range(operand_copies(2 * n * k))]


def _pct(nbytes: int, ms: float, copy_bw: float) -> float:
    return 100 * nbytes / (ms / 1e3) / copy_bw


def decode_gemv(copy_bw: float) -> list[dict]:
    rows = []
    for name, (k, n) in PROJECTIONS_7B.items():
        dense = _dense_pool(k, n)
        pools = {scheme: _weight_pool(k, n, bits, group) for scheme, (bits, group) in SCHEMES.items()}
        gemv = functools.partial(quant_gemv, split_counters=new_split_counters(n, "cuda"))
        for m in GEMV_ROWS:
            x = torch.randn(m, k, dtype=torch.bfloat16, device="cuda")
            ms = graph_ms([functools.partial(F.linear, x, w) for w in dense])
            row = {"projection": name, "k": k, "n": n, "m": m, "bf16_ms": ms,
                   "bf16_pct_of_copy_bw": _pct(2 * n * k, ms, copy_bw)}
            for scheme, pool in pools.items():
                row[f"{scheme}_ms"] = ms = graph_ms([functools.partial(gemv, x, *w) for w in pool])
                row[f"{scheme}_speedup"] = row["bf16_ms"] / ms
                row[f"{scheme}_pct_of_copy_bw"] = _pct(_bytes(pool[0]), ms, copy_bw)
                if m == 1 and packed_products(x, SCHEMES[scheme][0]):  # beside float32 products
                    row[f"{scheme}_float32_products_ms"] = graph_ms(
                        [functools.partial(gemv, x, *w, packed=False) for w in pool])
            rows.append(row)
        del dense, pools
    for m in GEMV_ROWS:  # one decoder layer's four projections
        layer = [r for r in rows if r["m"] == m]
        total = {key: sum(r[key] for r in layer) for key in layer[0] if key.endswith("_ms")}
        rows.append({"projection": "layer", "m": m, **total,
                     **{f"{s}_speedup": total["bf16_ms"] / total[f"{s}_ms"] for s in SCHEMES}})
    return rows


def _dequantized_matmul(x: torch.Tensor, *weights) -> torch.Tensor:
    return x @ dequantize(*weights, x.dtype)


def prefill_gemm(row_counts=(32, 64, 128, 256, 512, 2048)) -> list[dict]:
    """At each row count: bf16 cuBLAS, the fused GEMM, and cuBLAS on the dequantized weight (what
    kernels.quant_linear picks beyond FUSED_MAX_ROWS rows)."""
    rows = []
    for name, (k, n) in PROJECTIONS_7B.items():
        dense = _dense_pool(k, n)
        pools = {scheme: _weight_pool(k, n, bits, group) for scheme, (bits, group) in SCHEMES.items()}
        for m in row_counts:
            x = torch.randn(m, k, dtype=torch.bfloat16, device="cuda")
            row = {"projection": name, "m": m, "bf16_ms": graph_ms([functools.partial(F.linear, x, w) for w in dense])}
            for scheme, pool in pools.items():
                row[f"{scheme}_ms"] = graph_ms([functools.partial(quant_gemm, x, *w) for w in pool])
                row[f"{scheme}_dequantized_ms"] = graph_ms([functools.partial(_dequantized_matmul, x, *w)
                                                            for w in pool])
            flops = 2 * m * n * k
            rows.append(row | {f"{key[:-3]}_tflops": flops / v / 1e9 for key, v in list(row.items())
                               if key.endswith("_ms")})
        del dense, pools
    return rows


def gemv_configs(k: int, n: int, sms: int) -> list[dict]:
    """Tiles, warps, and K splits giving 1, 2, 4 or 8 programs per SM."""
    configs = []
    for block_n, block_k, warps in itertools.product((32, 64, 128, 256), (64, 128), (4, 8)):
        programs = triton.cdiv(n, block_n)
        splits = {max(1, min(triton.cdiv(per_sm * sms, programs), k // block_k)) for per_sm in (1, 2, 4, 8)}
        configs += [dict(block_n=block_n, block_k=block_k, num_warps=warps, split_k=s) for s in sorted(splits)]
    return configs


def gemv_sweep(copy_bw: float) -> list[dict]:
    """The batch-1 GEMV over gemv_configs at every projection (W4A16) and two (W8A16); config None
    is the default choice."""
    sms = torch.cuda.get_device_properties(0).multi_processor_count
    rows = []
    cases = [(name, "w4a16") for name in PROJECTIONS_7B] + [("qkv", "w8a16"), ("down", "w8a16")]
    for name, scheme in cases:
        (k, n), (bits, group) = PROJECTIONS_7B[name], SCHEMES[scheme]
        pool = _weight_pool(k, n, bits, group)
        x = torch.randn(1, k, dtype=torch.bfloat16, device="cuda")
        gemv = functools.partial(quant_gemv, split_counters=new_split_counters(n, "cuda"))
        for config in [None] + gemv_configs(k, n, sms):
            ms = graph_ms([functools.partial(gemv, x, *w, **(config or {})) for w in pool])
            rows.append({"projection": name, "scheme": scheme, "k": k, "n": n, "config": config, "ms": ms,
                         "pct_of_copy_bw": _pct(_bytes(pool[0]), ms, copy_bw)})
        del pool
    return rows


def gemm_configs(m: int) -> list[dict]:
    """Row tiles of the next power of two of m and half that (16 to 256), 32 to 128 columns (8
    warps for 128, else 4), 64 or 128 inputs, 3 or 4 stages."""
    top = min(256, max(16, triton.next_power_of_2(m)))
    return [dict(block_m=bm, block_n=bn, block_k=bk, num_warps=8 if bn == 128 else 4, num_stages=st)
            for bm, bn, bk, st in itertools.product(sorted({max(16, top // 2), top}), (32, 64, 128), (64, 128), (3, 4))]


def gemm_sweep(row_counts=(32, 64, 128, 192, 256)) -> list[dict]:
    """The fused W4A16 GEMM over gemm_configs at every projection; config None is the default
    choice. A config the GPU cannot run (too many registers or too much shared memory) is
    recorded with its error."""
    rows = []
    bits, group = SCHEMES["w4a16"]
    for name, (k, n) in PROJECTIONS_7B.items():
        pool = _weight_pool(k, n, bits, group)
        for m in row_counts:
            x = torch.randn(m, k, dtype=torch.bfloat16, device="cuda")
            for config in [None] + gemm_configs(m):
                row = {"projection": name, "m": m, "config": config}
                try:
                    row["ms"] = graph_ms([functools.partial(quant_gemm, x, *w, **(config or {})) for w in pool])
                    row["tflops"] = 2 * m * n * k / row["ms"] / 1e9
                except Exception as error:  # noqa: BLE001 - a sweep records what does not run
                    row["error"] = f"{type(error).__name__}: {str(error)[:200]}"
                rows.append(row)
        del pool
    return rows


def run(copy_bw: float, sweeps: bool = False) -> dict:
    """The kernels beside bf16, or (sweeps) the sweeps of their tiles."""
    if sweeps:
        return {"quant_gemv_sweep": gemv_sweep(copy_bw), "quant_gemm_sweep": gemm_sweep()}
    return {"quant_gemv_7b": decode_gemv(copy_bw), "quant_gemm_7b": prefill_gemm()}
