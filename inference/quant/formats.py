"""Reading the published quantized-checkpoint layouts into UnpackedWeight.

AutoAWQ GEMM (one projection, W: [N, K], 4-bit, G = group size):
    qweight  int32 [K, N / 8]      packed along N: word (k, c) holds columns 8c .. 8c + 7 with
                                   column 8c + AWQ_ORDER[i] in bits 4i .. 4i + 3
    qzeros   int32 [K / G, N / 8]  the zero points, packed the same way
    scales   float16 [K / G, N]    W[n, k] = (q - zero) * scale

GPTQ (AutoGPTQ / GPTQModel, b = 4 or 8 bits, P = 32 / b):
    qweight  int32 [K / P, N]      packed along K in order: bits b*j.. hold input P*r + j
    qzeros   int32 [G', N / P]     packed along N in order; v1 ("gptq") stores zero - 1, v2 the zero
    scales   float16 [G', N]
    g_idx    int32 [K]             each input channel's group (shuffled by act-order, desc_act)
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from kernels.quantized_weights import unpack_qweight

from .scheme import AWQ_GEMM, GPTQ_V1, GPTQ_V2
from .unpacked import UnpackedWeight

AWQ_ORDER = (0, 2, 4, 6, 1, 3, 5, 7)  # which column of its eight each 4-bit field of a word holds


def unpack_columns(packed: torch.Tensor, bits: int, order: tuple[int, ...] | None = None) -> torch.Tensor:
    """int32 [R, C] with 32 / bits columns per word -> int32 [R, C * 32 / bits]; field i of word c
    holds column c * (32 / bits) + order[i] (order: identity when None)."""
    per_word = 32 // bits
    order = order or tuple(range(per_word))
    out = torch.empty(packed.shape[0], packed.shape[1], per_word, dtype=torch.int32)
    for i, column in enumerate(order):
        out[:, :, column] = (packed >> (bits * i)) & ((1 << bits) - 1)
    return out.view(packed.shape[0], -1)


def read_projection(parts: Mapping[str, torch.Tensor], layout: str, bits: int, group_size: int,
                    shape: tuple[int, int], what: str) -> UnpackedWeight:
    """One projection's tensors (qweight, qzeros, scales, g_idx) -> UnpackedWeight, checked
    against the dense weight's shape (N, K)."""
    n, k = shape
    group = k if group_size == -1 else group_size
    per_word = 32 // bits
    missing = [p for p in ("qweight", "qzeros", "scales") if p not in parts]
    if missing:
        raise ValueError(f"{what}: missing {', '.join(missing)}")
    _expect(parts, "scales", (k // group, n), what)
    scales = parts["scales"].to(torch.float16)
    if not torch.isfinite(scales).all():
        raise ValueError(f"{what}: scales do not fit in float16")
    if layout == AWQ_GEMM:
        _expect(parts, "qweight", (k, n // per_word), what)
        _expect(parts, "qzeros", (k // group, n // per_word), what)
        q = unpack_columns(parts["qweight"], bits, AWQ_ORDER)
        zeros = unpack_columns(parts["qzeros"], bits, AWQ_ORDER)
        g_idx = torch.arange(k) // group
    elif layout in (GPTQ_V1, GPTQ_V2):
        _expect(parts, "qweight", (k // per_word, n), what)
        _expect(parts, "qzeros", (scales.shape[0], n // per_word), what)
        q = unpack_qweight(parts["qweight"], bits)
        zeros = unpack_columns(parts["qzeros"], bits) + (1 if layout == GPTQ_V1 else 0)
        g_idx = parts["g_idx"].long() if "g_idx" in parts else torch.arange(k) // group
        if g_idx.shape != (k,) or g_idx.min() < 0 or g_idx.max() >= scales.shape[0]:
            raise ValueError(f"{what}: g_idx must hold one group index in 0..{scales.shape[0] - 1} per input")
    else:
        raise ValueError(f"unknown quantized layout {layout!r}")
    return UnpackedWeight(q.to(torch.uint8), zeros.to(torch.int16), scales, g_idx, bits)


def _expect(parts: Mapping[str, torch.Tensor], name: str, shape: tuple[int, int], what: str) -> None:
    if name != "scales" and parts[name].dtype != torch.int32:
        raise ValueError(f"{what}.{name} is {parts[name].dtype}, expected int32 words")
    if tuple(parts[name].shape) != shape:
        raise ValueError(f"{what}.{name} has shape {tuple(parts[name].shape)}, expected {shape} for this "
                         f"config.json and quantization_config")
