"""RMSNorm, rotary, SiLU-and-mul and the KV-cache write against their references."""

import pytest
import torch

from kernels.kv_cache_write import write_kv, write_kv_ref
from kernels.rms_norm import rms_norm, rms_norm_ref
from kernels.rotary import rotary, rotary_cos_sin, rotary_ref
from kernels.silu_mul import silu_and_mul, silu_and_mul_ref
from tests.conftest import DEVICE

DTYPES = [torch.float32, torch.float16]


def rand(*shape, dtype=torch.float32, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)).to(dtype).to(DEVICE)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("hidden", [64, 96])
def test_rms_norm_with_and_without_residual(dtype, hidden):
    x, res, w = rand(5, hidden, dtype=dtype), rand(5, hidden, dtype=dtype, seed=1), rand(hidden, dtype=dtype, seed=2)
    want_out, want_res = rms_norm_ref(x, w, 1e-5, res)
    got_out, got_res = rms_norm(x.clone(), w, 1e-5, res.clone())
    torch.testing.assert_close(got_res, want_res)
    torch.testing.assert_close(got_out, want_out, atol=2e-3 if dtype == torch.float16 else 1e-5, rtol=1e-3)
    want_out, want_res = rms_norm_ref(x, w, 1e-5)
    got_out, got_res = rms_norm(x.clone(), w, 1e-5)
    torch.testing.assert_close(got_out, want_out, atol=2e-3 if dtype == torch.float16 else 1e-5, rtol=1e-3)
    assert torch.equal(got_res, x)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("hq,hk,dim", [(4, 4, 32), (6, 2, 16), (3, 1, 64)])
def test_rotary_in_place_on_strided_views(dtype, hq, hk, dim):
    t = 7
    qkv = rand(t, (hq + 2 * hk) * dim, dtype=dtype)  # q and k are views into a fused projection
    cos_sin = rotary_cos_sin(dim, 4096, theta=1e6, scaling_factor=2.0, device=DEVICE)
    positions = torch.tensor([0, 1, 17, 255, 1000, 4095, 3], device=DEVICE)
    want_q, want_k = [x.clone().view(t, -1, dim) for x in qkv.split([hq * dim, hk * dim, hk * dim], -1)[:2]]
    rotary_ref(want_q, want_k, positions, cos_sin)
    q, k, _ = qkv.split([hq * dim, hk * dim, hk * dim], -1)
    q, k = q.view(t, hq, dim), k.view(t, hk, dim)
    rotary(q, k, positions, cos_sin)
    tol = dict(atol=2e-3, rtol=2e-3) if dtype == torch.float16 else {}
    torch.testing.assert_close(q, want_q, **tol)
    torch.testing.assert_close(k, want_k, **tol)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("inter", [64, 88])
def test_silu_and_mul(dtype, inter):
    x = rand(3, 2 * inter, dtype=dtype)
    torch.testing.assert_close(silu_and_mul(x), silu_and_mul_ref(x), atol=2e-3 if dtype == torch.float16 else 1e-6,
                               rtol=1e-3)


@pytest.mark.parametrize("dtype", DTYPES)
def test_kv_write_skips_padding_slots(dtype):
    t, heads, dim, blocks, page = 6, 2, 16, 4, 8
    qkv = rand(t, 3 * heads * dim, dtype=dtype)
    _, k, v = (x.view(t, heads, dim) for x in qkv.split(heads * dim, -1))
    slots = torch.tensor([3, 8, -1, 31, 16, -1], device=DEVICE)
    want_k = torch.zeros(blocks, page, heads, dim, dtype=dtype, device=DEVICE)
    want_v = torch.zeros_like(want_k)
    write_kv_ref(k, v, want_k, want_v, slots)
    got_k, got_v = torch.zeros_like(want_k), torch.zeros_like(want_v)
    write_kv(k, v, got_k, got_v, slots)
    assert torch.equal(got_k, want_k) and torch.equal(got_v, want_v)
    assert got_k.view(-1, heads, dim)[[3, 8, 31, 16]].abs().sum() > 0
