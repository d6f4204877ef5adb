"""A quantized model on the GPU (the GEMM for the prompt, the GEMV for each decode step, an int8
KV cache) against the same checkpoint on the CPU's float32 reference path."""

import pytest
import torch

from inference.config import ModelConfig
from inference.model import LlamaModel
from inference.quant import read_quantization
from inference.weights import load_weights
from tests.inference.model_steps import step_logits
from tests.inference.quant_checkpoints import Variant, write_quantized
from tests.models import tiny_llama

pytestmark = pytest.mark.gpu


@pytest.mark.parametrize("variant", [Variant("awq", 128), Variant("gptq", 64, v2=True, act_order=True),
                                     Variant("gptq", 128, bits=8, sym=True)], ids=lambda v: v.id)
def test_quantized_model_on_the_gpu_matches_the_cpu_reference(tmp_path, variant):
    _, hf = tiny_llama(tmp_path / "dense", vocab=4096, hidden=256, heads=4, kv_heads=2, intermediate=512, layers=2)
    path = tmp_path / variant.id
    write_quantized(hf, path, variant)
    scheme, _ = read_quantization(path)
    models = []
    for dtype, device in ((torch.float32, "cpu"), (torch.bfloat16, "cuda")):
        models.append(LlamaModel(ModelConfig.from_dir(path), dtype, device, quant=scheme))
        load_weights(models[-1], path)
    prompt, then = list(range(100, 140)), [7, 300, 12, 99, 400, 3]
    want = step_logits(models[0], prompt, then)
    for kv_int8 in (False, True):
        got = step_logits(models[1], prompt, then, kv_int8=kv_int8)
        for step, (w, g) in enumerate(zip(want, got)):
            assert ((g - w).norm() / w.norm()).item() < 3e-2, (kv_int8, step)


def test_engine_replays_quantized_decode_steps_from_cuda_graphs(tmp_path):
    from inference import LLMEngine
    from tests.engine_steps import logits_per_step

    _, hf = tiny_llama(tmp_path / "dense", vocab=4096, hidden=256, heads=4, kv_heads=2, intermediate=512, layers=2)
    write_quantized(hf, tmp_path / "awq", Variant("awq", 128))
    prompts, steps = [list(range(100, 140)), [1, 5, 9]], 6
    forced = [[7, 300, 12, 99, 400, 3, 17], [8, 9, 10, 11, 12, 13, 14]]
    want = logits_per_step(LLMEngine(tmp_path / "awq", num_kv_blocks=32, device="cpu"), prompts, steps, forced)
    engine = LLMEngine(tmp_path / "awq", num_kv_blocks=32, max_num_seqs=4, kv_cache_dtype="int8")
    assert engine.runner.graphs is not None
    got = logits_per_step(engine, prompts, steps, forced)
    for k in range(len(prompts)):
        for step, (w, g) in enumerate(zip(want[k], got[k])):
            assert ((g - w).norm() / w.norm()).item() < 3e-2, (k, step)


def test_a_fixed_kv_cache_size_on_the_gpu_is_checked_and_holds_twice_the_tokens_in_int8(tmp_path):
    from inference import LLMEngine

    model = tiny_llama(tmp_path / "tiny", vocab=4096, hidden=256, heads=4, kv_heads=2, intermediate=512, layers=2)[0]
    blocks = {kv: LLMEngine(model, kv_cache_gib=0.01, kv_cache_dtype=kv, enforce_eager=True).runner.num_blocks
              for kv in ("auto", "int8")}
    assert blocks["int8"] > 1.8 * blocks["auto"]
    with pytest.raises(ValueError, match="GiB KV cache does not fit: the GPU has .* GiB left"):
        LLMEngine(model, kv_cache_gib=1e6, enforce_eager=True)
