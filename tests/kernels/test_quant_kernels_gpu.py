"""Quantized-weight GEMV / GEMM and the int8 KV cache on the GPU, at bf16 and CodeLlama-7B / 34B
sizes, against the torch references; both weight kernels replayed from a CUDA graph, and a chain
of kernels launched early (kernels/dependent_launch.py) replayed with new inputs."""

import pytest
import torch

from kernels.kv_int8 import quantize_kv_ref
from kernels.paged_attention import paged_attention_ref
from kernels.paged_decode_attention import paged_decode_attention
from kernels.paged_prefill_attention import paged_prefill_attention
from kernels import quant_linear
from kernels.quant_gemm import quant_gemm, takes_float16_pairs
from kernels.gemm_input import gemm_input, gemm_input_ref, new_float16_rows
from kernels.gemv_input import new_packed_input, packed_input_ref
from kernels.quant_gemv import packed_products, quant_gemv, takes_packed_input
from kernels.quantized_weights import dequantize_ref, quant_linear_ref
from kernels.rms_norm import rms_norm, rms_norm_ref
from kernels.rotary import rotary_write_kv, rotary_write_kv_ref
from kernels.silu_mul import silu_and_mul, silu_and_mul_ref
from tests.kernels.paged_cases import int8_kv, make_case
from tests.kernels.quant_cases import make_quant_case
from tests.kernels.test_kernels_gpu import rel_err, rotary_inputs

pytestmark = pytest.mark.gpu

# (K, N) of CodeLlama-7B's projections: qkv, o, gate_up, down
SHAPES_7B = [(4096, 12288), (4096, 4096), (4096, 22016), (11008, 4096)]
SCHEMES = [(4, 128, False), (8, 11008, False), (4, 128, True)]  # w4 g128, int8 per channel (down), act-order


def case_for(k, n, bits, group, act_order):
    return make_quant_case(k, n, min(group, k), bits, act_order=act_order, device="cuda")


@pytest.mark.parametrize("k,n", SHAPES_7B, ids=["qkv", "o", "gate_up", "down"])
@pytest.mark.parametrize("bits,group,act_order", SCHEMES, ids=["w4g128", "w8", "w4g128-act"])
def test_gemv_and_gemm_at_7b_sizes(k, n, bits, group, act_order):
    case = case_for(k, n, bits, group, act_order)
    for kernel, m in [(quant_gemv, 1), (quant_gemv, 8), (quant_gemv, 16), (quant_gemv, 33), (quant_gemv, 64),
                      (quant_gemm, 17), (quant_gemm, 64), (quant_gemm, 300), (quant_gemm, 2048),
                      (quant_linear, 48), (quant_linear, 100), (quant_linear, 300)]:
        x = torch.randn(m, k, device="cuda", dtype=torch.bfloat16)
        assert rel_err(kernel(x, *case.args), quant_linear_ref(x, *case.args)) < 1e-2, (kernel, m)


@pytest.mark.parametrize("k,n", SHAPES_7B, ids=["qkv", "o", "gate_up", "down"])
@pytest.mark.parametrize("bits,group,act_order", SCHEMES, ids=["w4g128", "w8", "w4g128-act"])
def test_gemm_tiles_of_the_sweep_at_7b_sizes(k, n, bits, group, act_order):
    """The fused GEMM with tiles `bench kernels` sweeps, up to 256 rows by 128 columns (at 40 and 64
    rows 4-bit weights go in float16 pairs)."""
    case = case_for(k, n, bits, group, act_order)
    for m in (40, 64, 128, 256, 512):
        x = torch.randn(m, k, device="cuda", dtype=torch.bfloat16)
        for config in (dict(block_m=128, block_n=64, block_k=128, num_warps=4),
                       dict(block_m=256, block_n=128, block_k=64, num_warps=8)):
            got = quant_gemm(x, *case.args, **config)
            assert rel_err(got, quant_linear_ref(x, *case.args)) < 1e-2, (m, config)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_gemm_float16_weights_from_inline_assembly_are_rounded_once(dtype):
    """Unit rows pick single weights from the GEMM's float16 pairs (lop3, sub/fma and mul.f16x2):
    each is (q - z) * s rounded once to float16, zeros up to 16 (GPTQ v1) included."""
    case = case_for(512, 192, 4, 128, False)
    eye = torch.eye(512, device="cuda", dtype=dtype)
    assert takes_float16_pairs(eye[:64], 4) and not takes_float16_pairs(eye[:65], 4)
    got = torch.cat([quant_gemm(rows, *case.args) for rows in eye.split(64)])
    assert torch.equal(got, dequantize_ref(*case.args).t().half().to(dtype))


def test_gemm_rows_of_any_magnitude_in_float16():
    """The GEMM's float16 input scales each row by its own power of two: rows of 1e-6 and 2e5
    (both outside float16's range) keep the reference's accuracy, beside ordinary ones."""
    case = case_for(4096, 4096, 4, 128, True)
    x = torch.randn(64, 4096, device="cuda")
    x[1] *= 1e-6
    x[2] *= 2e5
    x = x.to(torch.bfloat16)
    got, want = quant_gemm(x, *case.args).float(), quant_linear_ref(x.float(), *case.args)
    assert (((got - want).abs().amax(1) / want.abs().amax(1)) < 1e-2).all()


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("magnitude", [1e-5, 1.0, 100.0])
def test_batch_one_float16_products_hold_any_input_scale(dtype, magnitude):
    """Batch 1 multiplies 4-bit weights in float16 pairs (kernels/quant_gemv_packed.py), whose
    range is narrow: inputs far below it and far above it keep the reference's accuracy."""
    case = case_for(4096, 4096, 4, 128, False)
    x = (torch.randn(1, 4096, device="cuda") * magnitude).to(dtype)
    assert packed_products(x, 4) and not packed_products(x, 8)
    assert rel_err(quant_gemv(x, *case.args), quant_linear_ref(x, *case.args)) < 1e-2


def test_batch_one_float16_products_take_outliers():
    """Inputs of 6e4 (past float16's largest) among ordinary ones neither overflow nor swamp the rest."""
    case = case_for(4096, 4096, 4, 128, False)
    x = torch.randn(1, 4096, device="cuda")
    x[0, 5::64] = 6e4
    x = x.to(torch.bfloat16)
    got = quant_gemv(x, *case.args)
    assert torch.isfinite(got).all()
    assert rel_err(got, quant_linear_ref(x, *case.args)) < 1e-2


@pytest.mark.parametrize("k,n", SHAPES_7B, ids=["qkv", "o", "gate_up", "down"])
def test_batch_one_gemv_reads_its_input_as_the_producer_packed_it(k, n):
    """x packed beforehand (kernels/gemv_input.py) gives what the GEMV makes of x itself: exactly at
    the same tiling, and the reference's result at the tiling chosen for packed inputs."""
    case = case_for(k, n, 4, 128, False)
    x = (torch.randn(1, k, device="cuda") * 3).to(torch.bfloat16)
    packed = packed_input_ref(x)
    assert takes_packed_input(x, 4, None) and not takes_packed_input(x.expand(2, k), 4, None)
    assert rel_err(quant_gemv(x, *case.args, packed_input=packed), quant_linear_ref(x, *case.args)) < 1e-2
    for block_n, split_k in ((64, 8), (128, 5), (256, 16)):
        assert torch.equal(quant_gemv(x, *case.args, packed_input=packed, block_n=block_n, split_k=split_k),
                           quant_gemv(x, *case.args, block_n=block_n, split_k=split_k))


@pytest.mark.parametrize("k,n", SHAPES_7B, ids=["qkv", "o", "gate_up", "down"])
def test_rows_given_as_float16_rows_reach_the_reference(k, n):
    """2..64 rows as Float16Rows (what RMSNorm and SiLU write beside their outputs) through the kernel
    quant_linear picks (the GEMV; the fused GEMM beyond 32 rows for qkv and gate_up)."""
    case = case_for(k, n, 4, 128, False)
    for m in (2, 8, 16, 33, 64):
        x = torch.randn(m, k, device="cuda", dtype=torch.bfloat16)
        got = quant_linear(x, *case.args, packed_input=gemm_input(x, None))
        assert rel_err(got, quant_linear_ref(x, *case.args)) < 1e-2, m


@pytest.mark.parametrize("width", [4096, 5120, 11008], ids=["7b-hidden", "13b-hidden", "7b-intermediate"])
def test_norm_and_silu_write_float16_rows_of_real_widths(width):
    """RMSNorm and SiLU write Float16Rows as gemm_input_ref makes them from their outputs, also where
    their blocks run past the row (5,120 and 11,008 inputs in blocks of 8,192 and 16,384)."""
    x, residual = (torch.randn(5, width, device="cuda", dtype=torch.bfloat16) for _ in range(2))
    norm_w = torch.rand(width, device="cuda", dtype=torch.bfloat16) + 0.5
    rows = new_float16_rows(5, width, "cuda")
    out, _ = rms_norm(x, norm_w, 1e-5, residual, packed_out=rows)
    want = gemm_input_ref(out, None)
    assert torch.equal(rows.values, want.values) and torch.equal(rows.down, want.down)
    gate_up = torch.randn(5, 2 * width, device="cuda", dtype=torch.bfloat16) * 4
    out = silu_and_mul(gate_up, packed_out=rows)
    want = gemm_input_ref(out, None)
    assert torch.equal(rows.values, want.values) and torch.equal(rows.down, want.down)


@pytest.mark.parametrize("rows", [1, 8])
def test_a_captured_mlp_through_inputs_its_producers_form_sees_each_result(rows):
    """An MLP whose norm and SiLU kernels write the GEMVs' inputs in the form the GEMVs read (one row
    packed, kernels/gemv_input.py; 8 rows as Float16Rows, kernels/gemm_input.py), replayed from a
    CUDA graph with new inputs: the eager run's result exactly, and the unformed run's exactly (one
    row: the GEMV packs its input the same way) or within bf16 (float16 weights against float32)."""
    up, down = case_for(4096, 2 * 4096, 4, 128, False), case_for(4096, 4096, 4, 128, False)
    norm_w = torch.rand(4096, device="cuda", dtype=torch.bfloat16) + 0.5
    x, residual = (torch.randn(rows, 4096, device="cuda", dtype=torch.bfloat16) for _ in range(2))
    forms = [new_packed_input(4096, "cuda") if rows == 1 else new_float16_rows(rows, 4096, "cuda") for _ in range(2)]

    def mlp(x, residual, formed):
        up_in, down_in = forms if formed else (None, None)
        h, residual = rms_norm(x, norm_w, 1e-5, residual, packed_out=up_in)
        g = silu_and_mul(quant_gemv(h, *up.args, packed_input=up_in), packed_out=down_in)
        return rms_norm(quant_gemv(g, *down.args, packed_input=down_in), norm_w, 1e-5, residual)[0]

    inputs = [t.clone() for t in (x, residual)]
    mlp(*inputs, True)  # compile outside the capture
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = mlp(*inputs, True)
    for _ in range(3):
        x.normal_(), residual.normal_()
        for buffer, value in zip(inputs, (x, residual)):
            buffer.copy_(value)
        graph.replay()
        replayed, unformed = out.clone(), mlp(x.clone(), residual.clone(), False)
        assert torch.equal(replayed, mlp(x.clone(), residual.clone(), True))
        assert torch.equal(replayed, unformed) if rows == 1 else rel_err(replayed, unformed) < 1e-2


@pytest.mark.parametrize("kernel,m", [(quant_gemv, 1), (quant_gemv, 16), (quant_gemm, 64)])
def test_weight_kernels_replay_from_a_cuda_graph(kernel, m):
    case = case_for(4096, 4096, 4, 128, False)
    x = torch.randn(m, 4096, device="cuda", dtype=torch.bfloat16)
    kernel(x, *case.args)  # compile outside the capture
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = kernel(x, *case.args)
    x.copy_(torch.randn_like(x))
    graph.replay()
    torch.cuda.synchronize()
    assert rel_err(out, quant_linear_ref(x, *case.args)) < 1e-2


@pytest.mark.parametrize("m", [1, 16])
def test_a_captured_chain_of_dependent_launches_sees_each_result(m):
    """An MLP's kernels as a decode step chains them (norm with residual, GEMV, SiLU-and-multiply,
    GEMV, norm), launched early (kernels/dependent_launch.py) and replayed from a CUDA graph with
    new inputs: each kernel reads what the one before wrote in this replay, and the residual add
    in place reaches the last norm."""
    up, down = case_for(4096, 2 * 4096, 4, 128, False), case_for(4096, 4096, 4, 128, False)
    norm_w = torch.rand(4096, device="cuda", dtype=torch.bfloat16) + 0.5
    x, residual = (torch.randn(m, 4096, device="cuda", dtype=torch.bfloat16) for _ in range(2))

    def mlp(x, residual, norm, silu_mul, linear):
        h, residual = norm(x, norm_w, 1e-5, residual)
        y = linear(silu_mul(linear(h, *up.args)), *down.args)
        return norm(y, norm_w, 1e-5, residual)[0]

    inputs = [t.clone() for t in (x, residual)]
    mlp(*inputs, rms_norm, silu_and_mul, quant_gemv)  # compile outside the capture
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = mlp(*inputs, rms_norm, silu_and_mul, quant_gemv)
    for _ in range(3):
        x.normal_(), residual.normal_()
        for buffer, value in zip(inputs, (x, residual)):
            buffer.copy_(value)
        graph.replay()
        want = mlp(x.clone(), residual.clone(), rms_norm_ref, silu_and_mul_ref, quant_linear_ref)
        assert rel_err(out, want) < 2e-2


@pytest.mark.parametrize("heads,kv_heads", [(32, 32), (64, 8)], ids=["7b", "34b"])
def test_attention_over_an_int8_cache_bf16(heads, kv_heads):
    context = [1, 17, 511, 2047, 4100, 8000]
    case = int8_kv(make_case([1] * len(context), context, heads=heads, kv_heads=kv_heads, dim=128,
                             dtype=torch.bfloat16, device="cuda"))
    want = paged_attention_ref(case.q, case.k_cache, case.v_cache, case.cu_seqlens_q, case.context_lens,
                               case.block_tables, case.scale, case.k_scales, case.v_scales)
    for splits in (1, 8):
        got = paged_decode_attention(case.q, case.k_cache, case.v_cache, case.block_tables, case.context_lens,
                                     case.scale, splits, k_scales=case.k_scales, v_scales=case.v_scales)
        assert rel_err(got, want) < 1e-2, splits
    query_lens, context = [1000, 300, 1, 16], [1000, 812, 40, 2064]
    case = int8_kv(make_case(query_lens, context, heads=heads, kv_heads=kv_heads, dim=128, dtype=torch.bfloat16,
                             device="cuda"))
    want = paged_attention_ref(case.q, case.k_cache, case.v_cache, case.cu_seqlens_q, case.context_lens,
                               case.block_tables, case.scale, case.k_scales, case.v_scales)
    got = paged_prefill_attention(case.q, case.k_cache, case.v_cache, case.cu_seqlens_q, case.context_lens,
                                  case.block_tables, case.scale, case.max_query_len, k_scales=case.k_scales,
                                  v_scales=case.v_scales)
    assert rel_err(got, want) < 1e-2


@pytest.mark.parametrize("q_scale", [1e-3, 1.0, 1e3])
def test_grouped_heads_over_an_int8_cache_hold_any_query_scale(q_scale):
    """34B's heads (8 per KV head) over an int8 cache multiply in float16 with the queries scaled by
    a power of two: tiny and large queries alike stay as close to the float32 reference as bf16's
    rounding of the output allows."""
    context = [1, 17, 511, 2047, 4100, 8000]
    case = int8_kv(make_case([1] * len(context), context, heads=64, kv_heads=8, dim=128, dtype=torch.bfloat16,
                             device="cuda"))
    q = (case.q.float() * q_scale).to(torch.bfloat16)
    want = paged_attention_ref(q, case.k_cache, case.v_cache, case.cu_seqlens_q, case.context_lens,
                               case.block_tables, case.scale, case.k_scales, case.v_scales)
    for splits in (1, 8):
        got = paged_decode_attention(q, case.k_cache, case.v_cache, case.block_tables, case.context_lens, case.scale,
                                     splits, k_scales=case.k_scales, v_scales=case.v_scales)
        assert rel_err(got, want) < 2e-3, splits


def test_rotary_writes_an_int8_cache_bf16():
    q, k, v, positions, cos_sin, slots = rotary_inputs(300)
    caches = [torch.zeros(75, 16, 32, 128, device="cuda", dtype=torch.int8) for _ in range(4)]
    scales = [torch.zeros(75, 16, 32, device="cuda") for _ in range(4)]
    want_q = q.clone()
    rotary_write_kv_ref(want_q, k, v, positions, cos_sin, caches[0], caches[1], slots, scales[0], scales[1])
    rotary_write_kv(q, k, v, positions, cos_sin, caches[2], caches[3], slots, scales[2], scales[3])
    assert rel_err(q, want_q) < 1e-2
    for want, got in zip(caches[:2], caches[2:]):  # rounding may differ by one step (fused multiply-add)
        assert (want.int() - got.int()).abs().max() <= 1
    for want, got in zip(scales[:2], scales[2:]):  # and so may a row's largest value: one bfloat16 step
        torch.testing.assert_close(got, want, rtol=2 ** -7, atol=0)
    codes, _ = quantize_kv_ref(v[slots >= 0])
    assert (codes.int() - caches[3].view(-1, 32, 128)[slots[slots >= 0]].int()).abs().max() <= 1
