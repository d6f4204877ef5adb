"""Write new keys and values into the paged KV cache by slot."""

from __future__ import annotations

import torch
import triton
import triton.language as tl


def write_kv_ref(k: torch.Tensor, v: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor,
                 slot_mapping: torch.Tensor) -> None:
    """k, v: [T, Hk, D]; caches: [num_blocks, block_size, Hk, D]; slot_mapping: [T], a token's
    slot is block * block_size + offset, and -1 marks a padding token that is not written."""
    keep = slot_mapping >= 0
    slots = slot_mapping[keep]
    k_cache.view(-1, *k_cache.shape[2:])[slots] = k[keep]
    v_cache.view(-1, *v_cache.shape[2:])[slots] = v[keep]


@triton.jit
def _write_kv_kernel(
    k_ptr,  # [T, Hk, D] new keys; heads and dims contiguous within a token
    v_ptr,  # [T, Hk, D] new values, likewise
    k_cache_ptr,  # [num_blocks * block_size, Hk * D] contiguous
    v_cache_ptr,
    slot_ptr,  # [T] int64 slot per token, -1 = padding
    stride_k,  # elements between tokens of k
    stride_v,
    ROW: tl.constexpr,  # Hk * D
    BLOCK: tl.constexpr,  # ROW rounded up to a power of two
):
    t = tl.program_id(0)
    slot = tl.load(slot_ptr + t)
    if slot >= 0:
        offs = tl.arange(0, BLOCK)
        mask = offs < ROW
        k = tl.load(k_ptr + t * stride_k + offs, mask=mask)
        v = tl.load(v_ptr + t * stride_v + offs, mask=mask)
        tl.store(k_cache_ptr + slot * ROW + offs, k, mask=mask)
        tl.store(v_cache_ptr + slot * ROW + offs, v, mask=mask)


def write_kv(k: torch.Tensor, v: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor,
             slot_mapping: torch.Tensor) -> None:
    t, heads, dim = k.shape
    assert v.shape == k.shape and k_cache.shape[2:] == (heads, dim) and k_cache.is_contiguous()
    assert k.stride(1) == dim and k.stride(2) == 1 and v.stride(1) == dim and v.stride(2) == 1
    assert slot_mapping.shape == (t,) and slot_mapping.dtype == torch.int64
    if t == 0:
        return
    row = heads * dim
    _write_kv_kernel[(t,)](k, v, k_cache, v_cache, slot_mapping, k.stride(0), v.stride(0),
                           ROW=row, BLOCK=triton.next_power_of_2(row), num_warps=4)
