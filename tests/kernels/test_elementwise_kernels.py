"""RMSNorm, rotary with the KV-cache write, and SiLU-and-mul against their references."""

import pytest
import torch

from kernels.rms_norm import rms_norm, rms_norm_ref
from kernels.rotary import rotary_cos_sin, rotary_write_kv, rotary_write_kv_ref
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
@pytest.mark.parametrize("inter", [64, 88])
def test_silu_and_mul(dtype, inter):
    x = rand(3, 2 * inter, dtype=dtype)
    torch.testing.assert_close(silu_and_mul(x), silu_and_mul_ref(x), atol=2e-3 if dtype == torch.float16 else 1e-6,
                               rtol=1e-3)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("hq,hk,dim", [(4, 4, 32), (6, 2, 16), (3, 1, 64)])
def test_rotary_write_kv_in_one_kernel(dtype, hq, hk, dim):
    t, blocks, page = 6, 4, 8
    qkv = rand(t, (hq + 2 * hk) * dim, dtype=dtype)  # q, k, v are views into a fused projection
    q, k, v = (x.view(t, -1, dim) for x in qkv.split([hq * dim, hk * dim, hk * dim], -1))
    cos_sin = rotary_cos_sin(dim, 4096, theta=1e6, scaling_factor=2.0, device=DEVICE)
    positions = torch.tensor([0, 1, 17, 255, 1000, 4095], device=DEVICE)
    slots = torch.tensor([3, -1, 9, 31, 0, -1], device=DEVICE)  # -1: padding, not written
    caches = [torch.zeros(blocks, page, hk, dim, dtype=dtype, device=DEVICE) for _ in range(4)]
    want_q, k_before = q.clone(), k.clone()
    rotary_write_kv_ref(want_q, k, v, positions, cos_sin, caches[0], caches[1], slots)
    rotary_write_kv(q, k, v, positions, cos_sin, caches[2], caches[3], slots)
    tol = dict(atol=2e-3, rtol=2e-3) if dtype == torch.float16 else {}
    torch.testing.assert_close(q, want_q, **tol)
    torch.testing.assert_close(caches[2], caches[0], **tol)
    assert torch.equal(caches[3], caches[1]) and torch.equal(k, k_before)
    assert caches[2].abs().sum() > 0 and (caches[2].view(-1, hk, dim)[[1, 2]] == 0).all()  # slots left alone


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("hk,dim", [(2, 32), (3, 48)])  # 48: half a head is not a power of two
def test_rotary_write_kv_into_an_int8_cache(dtype, hk, dim):
    t, blocks, page, hq = 5, 3, 4, 2 * hk
    qkv = rand(t, (hq + 2 * hk) * dim, dtype=dtype)
    q, k, v = (x.view(t, -1, dim) for x in qkv.split([hq * dim, hk * dim, hk * dim], -1))
    k[2] = 0  # an all-zero row: scale 0, codes 0
    cos_sin = rotary_cos_sin(dim, 64, theta=1e6, device=DEVICE)
    positions = torch.tensor([0, 3, 9, 33, 63], device=DEVICE)
    slots = torch.tensor([4, -1, 7, 11, 0], device=DEVICE)
    caches = [torch.zeros(blocks, page, hk, dim, dtype=torch.int8, device=DEVICE) for _ in range(4)]
    scales = [torch.zeros(blocks, page, hk, device=DEVICE) for _ in range(4)]
    want_q = q.clone()
    rotary_write_kv_ref(want_q, k, v, positions, cos_sin, caches[0], caches[1], slots, scales[0], scales[1])
    rotary_write_kv(q, k, v, positions, cos_sin, caches[2], caches[3], slots, scales[2], scales[3])
    torch.testing.assert_close(q, want_q, **(dict(atol=2e-3, rtol=2e-3) if dtype == torch.float16 else {}))
    for want, got in zip(caches[:2] + scales[:2], caches[2:] + scales[2:]):
        assert torch.equal(got, want)  # the same rounding, written out in both
    k_rows = caches[0].view(-1, hk, dim)
    assert k_rows[[4, 11, 0]].abs().amax(-1).eq(127).all()  # each row uses the full range
    assert (scales[0].view(-1, hk)[7] == 0).all() and (k_rows[7] == 0).all()
    v_row, v_scale = caches[1].view(-1, hk, dim)[4].float(), scales[1].view(-1, hk)[4]
    assert ((v_row * v_scale[:, None] - v[0].float()).abs() <= v_scale[:, None] / 2 + 1e-6).all()
