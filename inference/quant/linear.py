"""The model's quantized projection: the kernels' tensors as parameters (so checkpoints, workspaces
and tensor-parallel shards handle them like any other), and a forward that dispatches to the
GEMV for decode-sized inputs, the GEMM for prefill, or the torch reference off the GPU."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

import kernels
from kernels.gemm_input import Float16Rows, new_float16_rows
from kernels.gemv_input import new_packed_input
from kernels.quant_gemv import new_split_counters, takes_float16_rows, takes_packed_input

from .scheme import QuantScheme

SCALE_DTYPE = torch.float16


class QuantizedLinear(nn.Module):
    def __init__(self, in_features: int, out_features: int, scheme: QuantScheme, device: torch.device, what: str):
        super().__init__()
        self.bits, self.in_features, self.out_features = scheme.bits, in_features, out_features
        group = scheme.group_for(in_features)
        if in_features % group or group % 16:
            raise ValueError(f"{what}: {in_features} input channels (on each tensor-parallel rank) are not whole "
                             f"groups of {group} channels ({scheme.name})")

        def param(*shape: int, dtype: torch.dtype) -> nn.Parameter:
            return nn.Parameter(torch.empty(*shape, dtype=dtype, device=device), requires_grad=False)

        self.qweight = param(in_features * scheme.bits // 32, out_features, dtype=torch.int32)
        self.scales = param(in_features // group, out_features, dtype=SCALE_DTYPE)
        self.zeros = param(in_features // group, out_features, dtype=SCALE_DTYPE)
        self.perm = param(in_features, dtype=torch.int32) if scheme.act_order else None
        # the GEMV's split-K counters (kernels/quant_gemv.py): zero between launches, kept here so
        # that a captured decode step needs no memset
        self.register_buffer("split_counters", new_split_counters(out_features, device), persistent=False)

    @property
    def shape(self) -> tuple[int, int]:
        """(out_features, in_features), as a dense weight's."""
        return self.out_features, self.in_features

    def forward(self, x: torch.Tensor, packed_input: torch.Tensor | Float16Rows | None = None) -> torch.Tensor:
        return kernels.quant_linear(x, self.qweight, self.scales, self.zeros, self.perm, self.bits, self.split_counters,
                                    packed_input)

    def packed_input_for(self, x: torch.Tensor) -> torch.Tensor | Float16Rows | None:
        """A buffer for this projection's input in the form its 4-bit kernel reads, for the kernel
        that makes the input to fill: one row packed (kernels/gemv_input.py), or 2..64 rows as
        Float16Rows (kernels/gemm_input.py); None where the kernel reads x itself. x: the input, or
        any tensor of its rows, dtype and device."""
        if takes_packed_input(x, self.bits, self.perm):
            return new_packed_input(self.in_features, x.device)
        if x.is_cuda and takes_float16_rows(x, self.bits, self.perm):
            return new_float16_rows(x.shape[0], self.in_features, x.device)
        return None

    @torch.no_grad()
    def fill_random(self, generator: torch.Generator, std: float) -> None:
        """Seeded random integers whose dequantized weights have about the given std (benchmarks)."""
        self.qweight.random_(generator=generator)
        levels = 1 << self.bits
        self.zeros.fill_(levels // 2)
        self.scales.fill_(std * 12 ** 0.5 / levels)  # uniform integers: std = levels / sqrt(12)
        if self.perm is not None:
            self.perm.copy_(torch.randperm(self.in_features, device=self.perm.device, generator=generator))

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bits={self.bits}"


def linear(x: torch.Tensor, weight: torch.Tensor | QuantizedLinear,
           packed_input: torch.Tensor | Float16Rows | None = None) -> torch.Tensor:
    """x @ W.T for a dense weight or a quantized projection (packed_input: from packed_input())."""
    return weight(x, packed_input) if isinstance(weight, QuantizedLinear) else F.linear(x, weight)


def packed_input(x: torch.Tensor, weight: torch.Tensor | QuantizedLinear) -> torch.Tensor | Float16Rows | None:
    """QuantizedLinear.packed_input_for; None for a dense weight."""
    return weight.packed_input_for(x) if isinstance(weight, QuantizedLinear) else None
