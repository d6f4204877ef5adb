"""The batch-1 GEMV's packed input (kernels/gemv_input.py): the format holds x, and RMSNorm and
SiLU-and-multiply write it for their outputs (interpreted here; the GEMV that reads it is compared
with the unpacked path on the GPU, tests/kernels/test_quant_kernels_gpu.py)."""

import pytest
import torch

from kernels.gemv_input import new_packed_input, packed_input_ref
from kernels.rms_norm import rms_norm
from kernels.silu_mul import silu_and_mul
from tests.conftest import DEVICE
from tests.kernels.test_elementwise_kernels import rand


def unpack(packed: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(x as the packed rows hold it, [K]; each row's scaled values, [K / 8, 8])."""
    halves = packed[:, :4].contiguous().view(torch.float16).view(-1, 4, 2).float()
    scaled = torch.cat([halves[:, :, 0], halves[:, :, 1]], 1)  # x0..x3 low halves, x4..x7 high
    down = packed[:, 4].contiguous().view(torch.float32)
    return (scaled * down[:, None]).reshape(-1), scaled


@pytest.mark.parametrize("magnitude", [1e-6, 1.0, 3e4])
def test_packed_rows_hold_the_inputs_in_float16_range(magnitude):
    x = (torch.randn(1, 256, generator=torch.Generator().manual_seed(0)) * magnitude).to(torch.bfloat16)
    x[0, 8:16] = 0  # a row of zeros stays zeros
    values, scaled = unpack(packed_input_ref(x))
    torch.testing.assert_close(values, x.float().reshape(-1), rtol=2 ** -11, atol=0)
    top = scaled.abs().amax(1)
    assert ((top >= 256) & (top < 512) | (top == 0)).all() and (top == 0).sum() == 1


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("hidden", [64, 96])
def test_rms_norm_packs_its_output(dtype, hidden):
    x, res, w = rand(1, hidden, dtype=dtype), rand(1, hidden, dtype=dtype, seed=1), rand(hidden, dtype=dtype, seed=2)
    packed = new_packed_input(hidden, DEVICE)
    out, _ = rms_norm(x, w, 1e-5, res, packed_out=packed)
    assert torch.equal(packed, packed_input_ref(out))


@pytest.mark.parametrize("inter", [88, 1032])  # 1032: two programs, the second with one row of 8
def test_silu_and_mul_packs_its_output(inter):
    x = rand(1, 2 * inter, dtype=torch.float16)
    packed = new_packed_input(inter, DEVICE)
    out = silu_and_mul(x, packed_out=packed)
    assert torch.equal(packed, packed_input_ref(out))
