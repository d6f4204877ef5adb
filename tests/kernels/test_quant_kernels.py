"""The quantized-weight GEMV and GEMM against the dequantize-and-matmul reference (Triton
interpreter on CPU), and the layout's packing against a word-by-word reading of its definition."""

import pytest
import torch

from kernels.quant_dequantize import dequantize
from kernels.quant_gemm import quant_gemm
from kernels.quant_gemv import PACKED_ONE_ROW, gemv_splits, quant_gemv
from kernels.quantized_weights import dequantize_ref, k_tile, quant_linear_ref, unpack_qweight
from tests.conftest import DEVICE
from tests.kernels.quant_cases import make_quant_case

TOL = {torch.float32: dict(atol=1e-4, rtol=1e-4), torch.float16: dict(atol=2e-2, rtol=2e-2)}


@pytest.mark.parametrize("bits", [4, 8])
def test_packing_follows_the_documented_bit_positions(bits):
    case = make_quant_case(32, 5, 16, bits)
    words = case.qweight.tolist()
    per_word = 32 // bits
    for k in (0, 1, per_word - 1, per_word, 31):
        for n in range(5):
            assert (words[k // per_word][n] >> (bits * (k % per_word))) & ((1 << bits) - 1) == case.q[k, n]
    assert torch.equal(unpack_qweight(case.qweight, bits), case.q.to(torch.int32))


def test_dequantize_undoes_the_act_order_permutation():
    case = make_quant_case(64, 8, 32, act_order=True)
    w = dequantize_ref(*case.args)
    row_k = 5  # weight row 5 holds input channel perm[5], in group 0
    channel = int(case.perm[row_k])
    want = (case.q[row_k].float() - case.zeros[0].float()) * case.scales[0].float()
    assert torch.equal(w[:, channel], want)


def rand_x(m, k, dtype, seed=1):
    return torch.randn(m, k, generator=torch.Generator().manual_seed(seed)).to(dtype).to(DEVICE)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("bits,group,act_order", [(4, 32, False), (4, 64, True), (8, 128, False), (8, 16, True)],
                         ids=["w4g32", "w4g64-act", "w8-per-channel", "w8g16-act"])
@pytest.mark.parametrize("m", [1, 5, 40])
def test_gemv_matches_reference(dtype, bits, group, act_order, m):
    k, n = 128, 72  # n: a partial column block
    case = make_quant_case(k, n, group, bits, act_order=act_order, device=DEVICE)
    x = rand_x(m, k, dtype)
    want = quant_linear_ref(x, *case.args)
    for split_k in (1, 3):
        got = quant_gemv(x, *case.args, split_k=split_k, block_n=32, block_k=32)
        torch.testing.assert_close(got.float(), want.float(), **TOL[dtype])


def test_gemv_split_counters_are_left_zero_for_the_next_launch():
    """The last split of a column block adds the partial sums and resets its counter: a projection
    reuses its counters every step (a stale count would leave the output unwritten)."""
    case = make_quant_case(128, 72, 32, device=DEVICE)
    x = rand_x(1, 128, torch.float32)
    counters = torch.zeros(8, dtype=torch.int32, device=DEVICE)
    first = quant_gemv(x, *case.args, split_k=4, block_n=32, block_k=32, split_counters=counters)
    assert not counters.any()
    again = quant_gemv(x, *case.args, split_k=4, block_n=32, block_k=32, split_counters=counters)
    assert torch.equal(first, again)
    torch.testing.assert_close(first, quant_linear_ref(x, *case.args), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("bits,group,act_order", [(4, 64, False), (4, 32, True), (8, 64, False)],
                         ids=["w4g64", "w4g32-act", "w8g64"])
def test_gemm_matches_reference(dtype, bits, group, act_order):
    k, n, m = 128, 80, 37  # partial row and column tiles
    case = make_quant_case(k, n, group, bits, act_order=act_order, device=DEVICE)
    x = rand_x(m, k, dtype)
    got = quant_gemm(x, *case.args, block_m=16, block_n=32, block_k=32)
    torch.testing.assert_close(got.float(), quant_linear_ref(x, *case.args).float(), **TOL[dtype])


@pytest.mark.parametrize("bits,group,act_order", [(4, 32, False), (4, 64, True), (8, 128, False)],
                         ids=["w4g32", "w4g64-act", "w8-per-channel"])
def test_dequantize_matches_reference(bits, group, act_order):
    case = make_quant_case(128, 136, group, bits, act_order=act_order, device=DEVICE)  # 136: a partial block
    got = dequantize(*case.args, torch.float32)
    assert torch.equal(got, dequantize_ref(*case.args).t())


def test_gemv_reads_rows_through_their_stride():
    case = make_quant_case(64, 32, 32, device=DEVICE)
    wide = rand_x(2, 96, torch.float32)
    x = wide[:, 16:80]  # a view: row stride 96
    got = quant_gemv(x, *case.args, split_k=2, block_n=32, block_k=32)
    torch.testing.assert_close(got, quant_linear_ref(x.contiguous(), *case.args), atol=1e-4, rtol=1e-4)


def test_tile_and_split_choices():
    assert k_tile(128) == 128 and k_tile(64) == 64 and k_tile(11008) == 128 and k_tile(688) == 16
    assert gemv_splits(n=12288, k=4096, block_n=64, block_k=128, num_sms=132) == 6  # 192 column blocks
    assert gemv_splits(n=4096, k=4096, block_n=64, block_k=128, num_sms=132) == 8  # 8 splits of 4 tiles
    assert gemv_splits(n=4096, k=11008, block_n=64, block_k=128, num_sms=132) == 17
    assert gemv_splits(n=64, k=64, block_n=64, block_k=64, num_sms=132) == 1  # too short to split
    # batch 1's packed products: 128 columns, 4 programs per SM, down to 2 K tiles per split
    assert gemv_splits(n=12288, k=4096, block_n=128, block_k=128, num_sms=132, tiling=PACKED_ONE_ROW) == 6  # 96 blocks
    assert gemv_splits(n=4096, k=4096, block_n=128, block_k=128, num_sms=132, tiling=PACKED_ONE_ROW) == 16  # 2 tiles
    assert gemv_splits(n=22016, k=4096, block_n=128, block_k=128, num_sms=132, tiling=PACKED_ONE_ROW) == 4
