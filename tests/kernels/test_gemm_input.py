"""The 4-bit kernels' float16 input (kernels/gemm_input.py): the format, the pass that makes it, the
RMSNorm and SiLU kernels that write it beside their outputs, the GEMV and GEMM reading it, and the
float16 weights it meets; interpreted here (the GPU's inline-assembly weights and the 7B sizes:
tests/kernels/test_quant_kernels_gpu.py)."""

import pytest
import torch

from kernels.gemm_input import PAIR_ORDER, Float16Rows, gemm_input, gemm_input_ref, new_float16_rows
from kernels.quant_gemm import quant_gemm
from kernels.quant_gemv import quant_gemv, takes_float16_rows
from kernels.quantized_weights import dequantize_ref, quant_linear_ref
from kernels.rms_norm import rms_norm
from kernels.silu_mul import silu_and_mul
from tests.conftest import DEVICE
from tests.kernels.quant_cases import make_quant_case
from tests.kernels.test_elementwise_kernels import rand


def rows_of_magnitudes(k: int, magnitudes: list[float]) -> torch.Tensor:
    x = torch.randn(len(magnitudes), k, generator=torch.Generator().manual_seed(0))
    return (x * torch.tensor(magnitudes)[:, None]).to(torch.bfloat16)


def test_input_rows_hold_x_in_pair_order_within_float16_range():
    x = rows_of_magnitudes(64, [1e-6, 1.0, 3e4, 0.0])
    scaled, down = gemm_input_ref(x, None)
    for p, k in enumerate(PAIR_ORDER):  # written from the format: input 8r + PAIR_ORDER[p] at 8r + p
        assert torch.equal(scaled[:, 8 + p].float() * down, x[:, 8 + k].float())
    top = scaled.float().abs().amax(1)
    assert ((top[:3] >= 2 ** 14) & (top[:3] < 2 ** 15)).all() and top[3] == 0


@pytest.mark.parametrize("k,act_order", [(136, False), (2064, True)], ids=["one-block", "two-blocks-act"])
def test_input_kernel_writes_the_reference(k, act_order):
    x = rows_of_magnitudes(k, [1e-6, 1.0, 3e4, 0.0, 5.0]).to(DEVICE)
    perm = torch.randperm(k, generator=torch.Generator().manual_seed(1)).to(torch.int32).to(DEVICE) if act_order else None
    got, got_down = gemm_input(x, perm)
    want, want_down = gemm_input_ref(x, perm)
    assert torch.equal(got, want) and torch.equal(got_down, want_down)


def test_float16_weights_are_the_quantized_values_rounded_once():
    """Unit rows pick single weights: each equals (q - z) * s rounded to float16 (exact float32
    arithmetic, one rounding; a mismatched pair order would pick another weight)."""
    case = make_quant_case(64, 48, 32, device=DEVICE)
    eye = torch.eye(64, dtype=torch.float16, device=DEVICE)
    got = quant_gemm(eye, *case.args, block_m=16, block_n=32, block_k=32)
    assert torch.equal(got, dequantize_ref(*case.args).t().half())


@pytest.mark.parametrize("act_order", [False, True])
def test_float16_gemm_keeps_rows_of_any_magnitude(act_order):
    case = make_quant_case(128, 40, 64, act_order=act_order, device=DEVICE)
    x = rows_of_magnitudes(128, [1e-6, 1.0, 2e5, 0.0, 2e-3]).to(DEVICE)
    want = quant_linear_ref(x.float(), *case.args)
    got = quant_gemm(x, *case.args, block_m=16, block_n=32, block_k=32).float()
    scale = want.abs().amax(1, keepdim=True).clamp(min=1e-30)
    assert ((got - want).abs() / scale).max() < 2e-2  # bfloat16 output
    assert not got[3].any()


def assert_rows_equal(got: Float16Rows, want: Float16Rows) -> None:
    assert torch.equal(got.values, want.values) and torch.equal(got.down, want.down)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("hidden", [64, 96])  # 96: a block of 128 with 32 inputs of padding
def test_rms_norm_writes_its_output_as_float16_rows(dtype, hidden):
    x, res, w = rand(3, hidden, dtype=dtype), rand(3, hidden, dtype=dtype, seed=1), rand(hidden, dtype=dtype, seed=2)
    rows = new_float16_rows(3, hidden, DEVICE)
    out, _ = rms_norm(x, w, 1e-5, res, packed_out=rows)
    assert_rows_equal(rows, gemm_input_ref(out, None))


@pytest.mark.parametrize("inter", [88, 1032])  # 1032: more than SiLU's 1,024-input programs
def test_silu_and_mul_writes_its_output_as_float16_rows(inter):
    x = rand(3, 2 * inter, dtype=torch.float16)
    rows = new_float16_rows(3, inter, DEVICE)
    out = silu_and_mul(x, packed_out=rows)
    assert torch.equal(out, silu_and_mul(x))  # the output itself as without
    assert_rows_equal(rows, gemm_input_ref(out, None))


@pytest.mark.parametrize("m", [2, 5, 16])
@pytest.mark.parametrize("split_k", [1, 3])
def test_gemv_reads_float16_rows(m, split_k):
    """2..64 rows given as Float16Rows meet float16 weights; each split's sums are scaled back
    before they are added."""
    case = make_quant_case(384, 48, 128, device=DEVICE)
    x = rows_of_magnitudes(384, [1e-6, 2e5, 1.0, 0.0, 3.0] * 4)[:m].to(DEVICE)
    assert takes_float16_rows(x, 4, None) and not takes_float16_rows(x[:1], 4, None)
    assert not takes_float16_rows(x, 8, None) and not takes_float16_rows(x, 4, torch.arange(384))
    want = quant_linear_ref(x.float(), *case.args)
    got = quant_gemv(x, *case.args, packed_input=gemm_input_ref(x, None), split_k=split_k, block_n=16).float()
    scale = want.abs().amax(1, keepdim=True).clamp(min=1e-30)
    assert ((got - want).abs() / scale).max() < 2e-2  # bfloat16 output
    if m > 3:
        assert not got[3].any()


def test_gemm_reads_float16_rows_made_beforehand():
    case = make_quant_case(128, 40, 64, device=DEVICE)
    x = rows_of_magnitudes(128, [1e-6, 1.0, 2e5, 0.0, 2e-3]).to(DEVICE)
    made = quant_gemm(x, *case.args, block_m=16, block_n=32, block_k=32,
                      float16_rows=gemm_input_ref(x, None))
    assert torch.equal(made, quant_gemm(x, *case.args, block_m=16, block_n=32, block_k=32))
