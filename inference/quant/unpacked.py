"""One projection's quantized weight in plain form: every checkpoint layout (AWQ, GPTQ, our own
quantizer) is read into this, split for tensor parallelism here, then packed into the kernels'
layout (kernels/quantized_weights.py)."""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from kernels.quantized_weights import pack_qweight


@dataclass(frozen=True, slots=True)
class UnpackedWeight:
    """W[n, k] = (q[k, n] - zeros[g_idx[k], n]) * scales[g_idx[k], n], for W: [N, K]."""

    q: torch.Tensor  # [K, N] integers 0 .. 2^bits - 1 (uint8)
    zeros: torch.Tensor  # [groups, N] whole numbers (int16: a GPTQ v1 zero may be 2^bits)
    scales: torch.Tensor  # [groups, N] float16
    g_idx: torch.Tensor  # [K] int64: each input channel's group
    bits: int

    @property
    def shape(self) -> tuple[int, int]:
        """(N, K), as the dense weight's."""
        return self.q.shape[1], self.q.shape[0]

    def dequantize(self) -> torch.Tensor:
        """The float32 weight [N, K]."""
        g = self.g_idx
        return ((self.q.float() - self.zeros[g].float()) * self.scales[g].float()).t()

    def to(self, device: torch.device | str) -> "UnpackedWeight":
        return replace(self, q=self.q.to(device), zeros=self.zeros.to(device), scales=self.scales.to(device),
                       g_idx=self.g_idx.to(device))

    def columns(self, start: int, stop: int) -> "UnpackedWeight":
        """Outputs start:stop (a column-parallel shard)."""
        return replace(self, q=self.q[:, start:stop], zeros=self.zeros[:, start:stop],
                       scales=self.scales[:, start:stop])

    def inputs(self, start: int, stop: int) -> "UnpackedWeight":
        """Input channels start:stop (a row-parallel shard); its groups are picked out by pack()."""
        return replace(self, q=self.q[start:stop], g_idx=self.g_idx[start:stop])

    def pack(self, group_size: int, act_order: bool, what: str) -> dict[str, torch.Tensor]:
        """The kernels' tensors: qweight, scales, zeros, and perm with act_order. The input channels
        are sorted by group (stable), and every group must then be `group_size` channels in a row."""
        k = self.q.shape[0]
        perm = torch.argsort(self.g_idx, stable=True)
        groups = self.g_idx[perm]
        if k % group_size or not (groups.view(-1, group_size) == groups[::group_size, None]).all() \
                or (groups[::group_size].diff() <= 0).any():
            raise ValueError(f"{what}: its {k} input channels do not form whole groups of {group_size}"
                             + (" (with act-order the row-parallel split of a layer can cut groups: use "
                                "--tp 1, or a checkpoint quantized without desc_act)" if act_order else ""))
        ordered = bool((perm == torch.arange(k)).all())
        if not act_order and not ordered:
            raise ValueError(f"{what}: g_idx is not in input order, but the checkpoint does not say desc_act")
        used = groups[::group_size]
        packed = {"qweight": pack_qweight(self.q[perm], self.bits), "scales": self.scales[used].contiguous(),
                  "zeros": self.zeros[used].to(torch.float16).contiguous()}
        if act_order:
            packed["perm"] = perm.to(torch.int32)
        return packed
