"""Random paged-attention problems: sequences scattered over a shuffled block pool."""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from kernels.kv_int8 import quantize_kv_ref


@dataclass
class PagedCase:
    q: torch.Tensor  # [T, Hq, D]
    k_cache: torch.Tensor
    v_cache: torch.Tensor
    cu_seqlens_q: torch.Tensor
    context_lens: torch.Tensor
    block_tables: torch.Tensor
    scale: float
    k_scales: torch.Tensor | None = None  # with int8 caches
    v_scales: torch.Tensor | None = None

    @property
    def max_query_len(self) -> int:
        return int((self.cu_seqlens_q[1:] - self.cu_seqlens_q[:-1]).max())


def make_case(query_lens, context_lens, *, heads=4, kv_heads=2, dim=32, page=16, dtype=torch.float32,
              device="cpu", seed=0, extra_blocks=3) -> PagedCase:
    gen = torch.Generator().manual_seed(seed)
    needed = [-(-c // page) for c in context_lens]
    num_blocks = sum(needed) + extra_blocks
    order = torch.randperm(num_blocks, generator=gen).tolist()  # blocks of a sequence are scattered
    width = max(needed)
    tables = torch.zeros(len(context_lens), width, dtype=torch.int32)
    used = 0
    for i, n in enumerate(needed):
        tables[i, :n] = torch.tensor(order[used:used + n], dtype=torch.int32)
        used += n

    def rand(*shape):
        return torch.randn(*shape, generator=gen).to(dtype).to(device)

    cu = torch.tensor([0] + list(torch.tensor(query_lens).cumsum(0)), dtype=torch.int32)
    return PagedCase(rand(int(cu[-1]), heads, dim), rand(num_blocks, page, kv_heads, dim),
                     rand(num_blocks, page, kv_heads, dim), cu.to(device),
                     torch.tensor(context_lens, dtype=torch.int32, device=device), tables.to(device), dim ** -0.5)


def int8_kv(case: PagedCase) -> PagedCase:
    """The same problem over an int8 cache (each row quantized with its own scale)."""
    (k, ks), (v, vs) = (quantize_kv_ref(c.flatten(0, 1)) for c in (case.k_cache, case.v_cache))
    shape = case.k_cache.shape
    return replace(case, k_cache=k.view(shape), v_cache=v.view(shape), k_scales=ks.view(shape[:3]),
                   v_scales=vs.view(shape[:3]))
