"""Random quantized layers in the kernels' layout (kernels/quantized_weights.py)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from kernels.quantized_weights import pack_qweight


@dataclass
class QuantCase:
    q: torch.Tensor  # [K, N] the integers, in weight-row order
    qweight: torch.Tensor
    scales: torch.Tensor
    zeros: torch.Tensor
    perm: torch.Tensor | None
    bits: int

    @property
    def args(self):
        return self.qweight, self.scales, self.zeros, self.perm, self.bits


def make_quant_case(k: int, n: int, group: int, bits: int = 4, *, act_order: bool = False, seed: int = 0,
                    device: str = "cpu") -> QuantCase:
    gen = torch.Generator().manual_seed(seed)
    top = 1 << bits
    q = torch.randint(0, top, (k, n), generator=gen)
    scales = (torch.rand(k // group, n, generator=gen) * 0.02 + 0.001).half()
    zeros = torch.randint(0, top + 1, (k // group, n), generator=gen).half()  # top: a GPTQ v1 zero
    perm = torch.randperm(k, generator=gen).to(torch.int32) if act_order else None
    to = dict(device=device)
    return QuantCase(q, pack_qweight(q, bits).to(**to), scales.to(**to), zeros.to(**to),
                     None if perm is None else perm.to(**to), bits)
