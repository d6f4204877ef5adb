"""The two products of a tile of keys and values that the paged decode and prefill attention
kernels share; an int8 cache's codes are whole numbers, exact in the queries' dtype, and their
scales are applied by the caller (to each key's score, with each value's probability)."""

from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def dot_keys(q, k, IEEE: tl.constexpr):
    """q @ k.T: the scores of a tile of keys."""
    if k.dtype == tl.int8:
        k = k.to(q.dtype)
    if IEEE:
        s = tl.dot(q, tl.trans(k), input_precision="ieee")
    else:
        s = tl.dot(q, tl.trans(k))
    return s


@triton.jit
def dot_values(p, v, DTYPE: tl.constexpr, IEEE: tl.constexpr):
    """p @ v in the queries' dtype DTYPE: the probabilities' share of a tile of values."""
    if v.dtype == tl.int8:
        v = v.to(DTYPE)
    if IEEE:
        out = tl.dot(p.to(v.dtype), v, input_precision="ieee")
    else:
        out = tl.dot(p.to(v.dtype), v)
    return out
