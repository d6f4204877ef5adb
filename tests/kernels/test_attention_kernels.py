"""Paged attention kernels against the pure-torch reference (Triton interpreter on CPU)."""

from dataclasses import replace

import pytest
import torch

from kernels.paged_attention import paged_attention_ref
from kernels.paged_decode_attention import decode_num_splits, paged_decode_attention
from kernels.paged_prefill_attention import paged_prefill_attention
from tests.conftest import DEVICE
from tests.kernels.paged_cases import int8_kv, make_case

TOL = {torch.float32: 1e-5, torch.float16: 2e-3}


def reference(case):
    return paged_attention_ref(case.q, case.k_cache, case.v_cache, case.cu_seqlens_q, case.context_lens,
                               case.block_tables, case.scale, case.k_scales, case.v_scales)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("heads,kv_heads,dim,page", [(4, 4, 32, 16), (8, 2, 16, 16), (4, 1, 64, 32)],
                         ids=["mha", "gqa4", "mqa-page32"])
@pytest.mark.parametrize("splits", [1, 4])
def test_decode_matches_reference(dtype, heads, kv_heads, dim, page, splits):
    context = [1, 15, 16, 17, 70, 33]  # block boundaries and odd lengths
    case = make_case([1] * len(context), context, heads=heads, kv_heads=kv_heads, dim=dim, page=page, dtype=dtype, device=DEVICE)
    got = paged_decode_attention(case.q, case.k_cache, case.v_cache, case.block_tables, case.context_lens,
                                 case.scale, num_splits=splits)
    torch.testing.assert_close(got.float(), reference(case).float(), atol=TOL[dtype], rtol=TOL[dtype])


def test_decode_padding_rows_give_zeros_not_nans():
    case = make_case([1, 1], [5, 9], device=DEVICE)
    case.context_lens[1] = 0  # a padded row of a CUDA-graph batch
    got = paged_decode_attention(case.q, case.k_cache, case.v_cache, case.block_tables, case.context_lens,
                                 case.scale, num_splits=2)
    assert torch.isfinite(got).all() and (got[1] == 0).all()
    torch.testing.assert_close(got[0], reference(case)[0])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("heads,kv_heads,dim", [(4, 4, 32), (8, 2, 16)], ids=["mha", "gqa4"])
def test_prefill_and_extend_match_reference(dtype, heads, kv_heads, dim):
    # a whole prompt, chunks that extend a cached prefix, and a single-token query
    query_lens, context = [37, 16, 5, 1, 20], [37, 48, 21, 9, 20]
    case = make_case(query_lens, context, heads=heads, kv_heads=kv_heads, dim=dim, dtype=dtype, device=DEVICE)
    got = paged_prefill_attention(case.q, case.k_cache, case.v_cache, case.cu_seqlens_q, case.context_lens,
                                  case.block_tables, case.scale, case.max_query_len)
    torch.testing.assert_close(got.float(), reference(case).float(), atol=TOL[dtype], rtol=TOL[dtype])


def test_prefill_from_a_later_sequence_leaves_earlier_rows_alone():
    case = make_case([1, 1, 12], [7, 30, 12], device=DEVICE)
    out = torch.full_like(case.q, 7.0)
    paged_prefill_attention(case.q, case.k_cache, case.v_cache, case.cu_seqlens_q, case.context_lens,
                            case.block_tables, case.scale, 12, first_seq=2, out=out)
    assert (out[:2] == 7.0).all()
    torch.testing.assert_close(out[2:], reference(case)[2:])


def test_split_count_fills_the_gpu_without_empty_tiles():
    assert decode_num_splits(batch=1, kv_heads=32, max_context_len=512, num_sms=132) == 8
    assert decode_num_splits(batch=64, kv_heads=32, max_context_len=2048, num_sms=132) == 1
    assert decode_num_splits(batch=1, kv_heads=8, max_context_len=60, num_sms=132) == 1
    # over an int8 cache a program is one warp: four times the programs on CUDA cores, twice with groups
    assert decode_num_splits(batch=16, kv_heads=32, max_context_len=2048, num_sms=132) == 1
    assert decode_num_splits(batch=16, kv_heads=32, max_context_len=2048, num_sms=132, kv_int8=True) == 4
    assert decode_num_splits(batch=64, kv_heads=8, max_context_len=2048, num_sms=132, kv_int8=True, group=8) == 2


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("heads,kv_heads", [(8, 2), (4, 4)], ids=["gqa4-mma", "mha-cuda-cores"])
@pytest.mark.parametrize("splits", [1, 2, 4])
def test_decode_over_an_int8_cache_matches_reference(dtype, heads, kv_heads, splits):
    # a padding row (0) and 200 keys: several 64-key tiles per split, the last one partial
    context = [1, 16, 17, 70, 0, 200]
    case = int8_kv(make_case([1] * len(context), context, heads=heads, kv_heads=kv_heads, dim=32, dtype=dtype,
                             device=DEVICE))
    got = paged_decode_attention(case.q, case.k_cache, case.v_cache, case.block_tables, case.context_lens,
                                 case.scale, num_splits=splits, k_scales=case.k_scales, v_scales=case.v_scales)
    assert (got[4] == 0).all()
    torch.testing.assert_close(got.float(), reference(case).float(), atol=TOL[dtype], rtol=TOL[dtype])


@pytest.mark.parametrize("page", [4, 32])
def test_int8_decode_on_cuda_cores_reads_tiles_within_a_page(page):
    """The CUDA-core kernel's tiles (8 keys) lie in one page: shorter pages take shorter tiles,
    longer ones several tiles."""
    context = [3, 70, 0, 130]
    case = int8_kv(make_case([1] * len(context), context, heads=2, kv_heads=2, dim=32, page=page, device=DEVICE))
    got = paged_decode_attention(case.q, case.k_cache, case.v_cache, case.block_tables, case.context_lens,
                                 case.scale, num_splits=2, k_scales=case.k_scales, v_scales=case.v_scales)
    torch.testing.assert_close(got, reference(case), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("q_scale", [1e-7, 1.0, 1e6])
def test_grouped_heads_over_an_int8_cache_hold_any_query_scale(q_scale):
    """Grouped heads over an int8 cache multiply in float16, bfloat16 queries scaled by a power of
    two first: without it, queries this large overflow float16 and this small lose their digits."""
    context = [16, 70, 200]
    case = int8_kv(make_case([1] * len(context), context, heads=8, kv_heads=2, dim=32, dtype=torch.float32,
                             device=DEVICE))
    case = replace(case, q=(case.q * q_scale).to(torch.bfloat16))
    got = paged_decode_attention(case.q, case.k_cache, case.v_cache, case.block_tables, case.context_lens,
                                 case.scale / q_scale, num_splits=2, k_scales=case.k_scales, v_scales=case.v_scales)
    want = paged_attention_ref(case.q, case.k_cache, case.v_cache, case.cu_seqlens_q, case.context_lens,
                               case.block_tables, case.scale / q_scale, case.k_scales, case.v_scales)
    torch.testing.assert_close(got.float(), want.float(), atol=1e-2, rtol=1e-2)


@pytest.mark.parametrize("heads,kv_heads", [(4, 2), (2, 2)], ids=["gqa2-mma", "mha-cuda-cores"])
def test_int8_decode_follows_each_heads_rising_scores(heads, kv_heads):
    """Over an int8 cache the running max moves only when a score passes it by 2^8: here scores
    rise along the context by less than that per tile and by more, and the heads of a group rise
    at different keys (one along the first half of the context, its neighbour along the second;
    a max moved for the group as a whole would leave the second head's probabilities overflowing)."""
    context = [300, 90]
    case = make_case([1] * len(context), context, heads=heads, kv_heads=kv_heads, dim=32, dtype=torch.float16,
                     device=DEVICE)
    k_cache = case.k_cache.float() * 0.1
    for seq, length in enumerate(context):
        t = torch.arange(length)
        blocks, rows = case.block_tables[seq].long()[t // 16], t % 16
        k_cache[blocks, rows, :, 0] = (t.clamp(max=length // 2) / 8).to(k_cache)[:, None]
        k_cache[blocks, rows, :, 1] = ((t - length // 2).clamp(min=0) / 8).to(k_cache)[:, None]
    q = torch.zeros_like(case.q)
    q[:, 0::2, 0] = q[:, 1::2, 1] = 30.0  # log2 scores rising by 0.96 a key, up to 144 (past float32)
    case = int8_kv(replace(case, q=q, k_cache=k_cache))
    got = paged_decode_attention(case.q, case.k_cache, case.v_cache, case.block_tables, case.context_lens,
                                 case.scale, num_splits=2, k_scales=case.k_scales, v_scales=case.v_scales)
    torch.testing.assert_close(got.float(), reference(case).float(), atol=2e-3, rtol=2e-3)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_prefill_over_an_int8_cache_matches_reference(dtype):
    query_lens, context = [37, 5, 1], [37, 21, 9]
    case = int8_kv(make_case(query_lens, context, heads=4, kv_heads=2, dim=32, dtype=dtype, device=DEVICE))
    got = paged_prefill_attention(case.q, case.k_cache, case.v_cache, case.cu_seqlens_q, case.context_lens,
                                  case.block_tables, case.scale, case.max_query_len, k_scales=case.k_scales,
                                  v_scales=case.v_scales)
    torch.testing.assert_close(got.float(), reference(case).float(), atol=TOL[dtype], rtol=TOL[dtype])


def test_int8_cache_is_close_to_the_float_one():
    """What the quantization itself costs: attention over the int8 cache against the float32 cache."""
    case = make_case([1, 1, 30], [40, 90, 30], heads=4, kv_heads=2, dim=64, device=DEVICE)
    err = (reference(int8_kv(case)) - reference(case)).norm() / reference(case).norm()
    assert 0 < err < 1e-2
