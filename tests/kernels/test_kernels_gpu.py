"""The kernels at bf16 and real head sizes on the GPU, against the float32 references."""

import pytest
import torch

from kernels import decode_num_splits
from kernels.paged_attention import paged_attention_ref
from kernels.paged_decode_attention import paged_decode_attention
from kernels.paged_prefill_attention import paged_prefill_attention
from kernels.rms_norm import rms_norm, rms_norm_ref
from kernels.rotary import rotary_cos_sin, rotary_write_kv, rotary_write_kv_ref
from kernels.silu_mul import silu_and_mul, silu_and_mul_ref
from tests.kernels.paged_cases import make_case

pytestmark = pytest.mark.gpu


def rel_err(got, want):
    return ((got.float() - want.float()).norm() / want.float().norm()).item()


@pytest.mark.parametrize("heads,kv_heads", [(32, 32), (64, 8)], ids=["7b", "34b"])
@pytest.mark.parametrize("page", [16, 32])
def test_decode_attention_bf16(heads, kv_heads, page):
    context = [1, 17, 511, 512, 2047, 4100, 33, 8000]
    case = make_case([1] * len(context), context, heads=heads, kv_heads=kv_heads, dim=128, page=page,
                     dtype=torch.bfloat16, device="cuda")
    want = paged_attention_ref(case.q, case.k_cache, case.v_cache, case.cu_seqlens_q, case.context_lens,
                               case.block_tables, case.scale)
    for splits in (1, decode_num_splits(len(context), kv_heads, max(context), 132), 16):
        got = paged_decode_attention(case.q, case.k_cache, case.v_cache, case.block_tables, case.context_lens,
                                     case.scale, splits)
        assert rel_err(got, want) < 1e-2, splits


@pytest.mark.parametrize("heads,kv_heads", [(32, 32), (64, 8)], ids=["7b", "34b"])
def test_prefill_attention_bf16(heads, kv_heads):
    query_lens, context = [1000, 300, 1, 77, 16], [1000, 812, 40, 77, 2064]
    case = make_case(query_lens, context, heads=heads, kv_heads=kv_heads, dim=128, dtype=torch.bfloat16,
                     device="cuda")
    want = paged_attention_ref(case.q, case.k_cache, case.v_cache, case.cu_seqlens_q, case.context_lens,
                               case.block_tables, case.scale)
    got = paged_prefill_attention(case.q, case.k_cache, case.v_cache, case.cu_seqlens_q, case.context_lens,
                                  case.block_tables, case.scale, case.max_query_len)
    assert rel_err(got, want) < 1e-2


def rotary_inputs(t: int):
    """A 7B layer's q, k, v (views into one fused projection), positions, cos/sin table and slots
    (every seventh token padding) for t tokens."""
    qkv = torch.randn(t, 3 * 4096, device="cuda", dtype=torch.bfloat16)
    q, k, v = (p.view(t, 32, 128) for p in qkv.split(4096, -1))
    slots = torch.randperm(4 * t, device="cuda")[:t]
    slots[::7] = -1
    return q, k, v, torch.randint(0, 16384, (t,), device="cuda"), rotary_cos_sin(128, 16384, 1e6, device="cuda"), slots


def test_elementwise_kernels_bf16():
    t, hidden, inter = 300, 4096, 11008
    x = torch.randn(t, hidden, device="cuda", dtype=torch.bfloat16)
    res = torch.randn_like(x)
    w = torch.randn(hidden, device="cuda", dtype=torch.bfloat16)
    want = rms_norm_ref(x, w, 1e-5, res)
    got = rms_norm(x.clone(), w, 1e-5, res.clone())
    assert rel_err(got[0], want[0]) < 1e-2 and torch.equal(got[1], want[1])

    gate_up = torch.randn(t, 2 * inter, device="cuda", dtype=torch.bfloat16)
    assert rel_err(silu_and_mul(gate_up), silu_and_mul_ref(gate_up)) < 1e-2

    q, k, v, positions, cos_sin, slots = rotary_inputs(t)
    caches = [torch.zeros(4 * t // 16, 16, 32, 128, device="cuda", dtype=torch.bfloat16) for _ in range(4)]
    want_q = q.clone()
    rotary_write_kv_ref(want_q, k, v, positions, cos_sin, caches[0], caches[1], slots)
    rotary_write_kv(q, k, v, positions, cos_sin, caches[2], caches[3], slots)
    assert rel_err(q, want_q) < 1e-2 and rel_err(caches[2], caches[0]) < 1e-2 and torch.equal(caches[1], caches[3])
