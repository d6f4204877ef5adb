"""The fused 4-bit GEMM's float16 input (kernels/gemm_input.py) and its float16 weights, interpreted
here (the GPU's inline-assembly weights: tests/kernels/test_quant_kernels_gpu.py)."""

import pytest
import torch

from kernels.gemm_input import PAIR_ORDER, gemm_input, gemm_input_ref
from kernels.quant_gemm import quant_gemm
from kernels.quantized_weights import dequantize_ref, quant_linear_ref
from tests.conftest import DEVICE
from tests.kernels.quant_cases import make_quant_case


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
