"""The engine with quantized weights (an AWQ checkpoint, int8 rounded at load, random weights of a
scheme) and with an int8 KV cache: the same logits as transformers on the dequantized weights, a
pool sized in bytes, greedy outputs that survive preemption and prefix caching."""

import pytest
import torch

from inference import LLM, LLMEngine, SamplingParams
from inference.attention import kv_block_bytes
from inference.cli import main
from inference.config import EngineConfig
from tests.engine_steps import logits_per_step
from tests.inference.quant_checkpoints import Variant, write_quantized
from tests.inference.test_engine_generation import PROMPT_LENGTHS
from tests.models import assert_pool_full, tiny_llama


@pytest.fixture(scope="module")
def awq(tmp_path_factory):
    """(directory, transformers model on the dequantized weights) of a tiny AWQ checkpoint."""
    path = tmp_path_factory.mktemp("awq")
    _, hf = tiny_llama(tmp_path_factory.mktemp("dense"), hidden=128, intermediate=256)
    dequantized = write_quantized(hf, path, Variant("awq", 64))
    reference = type(hf)(hf.config).eval()
    reference.load_state_dict(hf.state_dict() | {f"{p}.weight": w for p, w in dequantized.items()})
    return path, reference


def test_engine_on_an_awq_checkpoint_matches_transformers_on_its_dequantized_weights(awq):
    path, reference = awq
    engine = LLMEngine(path, num_kv_blocks=32)
    assert engine.config.weight_scheme.name == "awq-w4g64"
    prompts, steps = [[1, 300, 12, 99, 4000, 3], list(range(10, 50))], 6
    forced = [[7, 8, 9, 10, 11, 12, 13], [400, 401, 402, 403, 404, 405, 406]]
    got = logits_per_step(engine, prompts, steps, forced)
    for k, prompt in enumerate(prompts):
        with torch.no_grad():
            want = reference(torch.tensor([prompt + forced[k][:steps]])).logits[0]
        for step, logits in enumerate(got[k]):
            assert (logits - want[len(prompt) - 1 + step]).abs().max() < 1e-4, (k, step)
    assert_pool_full(engine)


def test_int8_at_load_gives_the_int8_workspace_weights(tiny_model, tmp_path):
    assert main(["convert", str(tiny_model[0]), "--dst", str(tmp_path / "ws"), "--quant", "int8",
                 "--dtype", "float32", "--no-progress"]) == 0
    assert main(["convert", str(tiny_model[0]), "--dst", str(tmp_path / "dense"), "--no-progress"]) == 0
    with pytest.raises(ValueError, match="a workspace's fused weights are not rounded at load"):
        EngineConfig(tmp_path / "dense", quantization="int8")
    at_load = LLMEngine(tiny_model[0], quantization="int8", num_kv_blocks=8).runner.model
    converted = LLMEngine(tmp_path / "ws", num_kv_blocks=8).runner.model
    assert at_load.layers[0].qkv_proj.qweight.dtype == torch.int32
    for (name, p), (_, q) in zip(at_load.named_parameters(), converted.named_parameters()):
        assert torch.equal(p, q), name


def test_random_weights_of_a_scheme_generate(awq):
    llm = LLM(awq[0], load_format="random", quantization="awq", num_kv_blocks=16)
    assert llm.engine.config.weight_scheme.name == "awq-w4g128"
    out = llm.generate([[1, 2, 3]], SamplingParams(max_tokens=4, ignore_eos=True))[0]
    assert len(out.outputs[0].token_ids) == 4


def test_quantization_settings_that_cannot_work(tiny_model, awq):
    with pytest.raises(ValueError, match="AWQ needs calibration.*codellama convert ... --quant awq"):
        EngineConfig(tiny_model[0], quantization="awq")
    with pytest.raises(ValueError, match="holds awq-w4g64 weights; they cannot be served as int8"):
        EngineConfig(awq[0], quantization="int8")
    with pytest.raises(ValueError, match="unknown quantization 'gptq'"):
        EngineConfig(tiny_model[0], quantization="gptq")
    with pytest.raises(ValueError, match="unknown kv_cache_dtype 'fp8'"):
        EngineConfig(tiny_model[0], kv_cache_dtype="fp8")


def test_int8_kv_pool_is_sized_in_bytes(tiny_model):
    llm = LLM(tiny_model[0], kv_cache_gib=0.01, kv_cache_dtype="int8")
    runner, cfg = llm.engine.runner, llm.engine.config.model_config
    per_block = kv_block_bytes(cfg.num_layers, 16, cfg.num_kv_heads, cfg.head_dim, torch.float32, kv_int8=True)
    assert per_block == 2 * cfg.num_layers * 16 * cfg.num_kv_heads * (cfg.head_dim + 4)
    assert runner.num_blocks == int(0.01 * (1 << 30) // per_block)
    assert runner.kv_cache.dtype == torch.int8 and runner.kv_scales.shape == runner.kv_cache.shape[:-1]


@pytest.fixture(scope="module")
def prompts():
    gen = torch.Generator().manual_seed(1)
    return [[1] + torch.randint(3, 4096, (n - 1,), generator=gen).tolist() for n in PROMPT_LENGTHS]


def greedy(llm: LLM, prompts) -> list[list[int]]:
    params = SamplingParams(max_tokens=32, temperature=0, ignore_eos=True)
    return [o.outputs[0].token_ids for o in llm.generate(prompts, params)]


def test_int8_kv_greedy_outputs_match_mostly_and_survive_preemption(tiny_model, prompts):
    exact = greedy(LLM(tiny_model[0], num_kv_blocks=128), prompts)
    int8 = greedy(LLM(tiny_model[0], num_kv_blocks=128, kv_cache_dtype="int8"), prompts)
    assert sum(a == b for a, b in zip(exact, int8)) >= 6, "most greedy continuations are unchanged"
    small = LLM(tiny_model[0], num_kv_blocks=12, enable_prefix_caching=False, kv_cache_dtype="int8")
    assert greedy(small, prompts) == int8
    assert small.engine.scheduler.num_preemptions > 0
    assert_pool_full(small.engine)


def test_int8_kv_prefix_cache_reuses_quantized_blocks(tiny_model, prompts):
    llm = LLM(tiny_model[0], num_kv_blocks=64, kv_cache_dtype="int8")
    prefix = prompts[-1][:48]  # three whole blocks
    fresh = LLM(tiny_model[0], num_kv_blocks=64, kv_cache_dtype="int8", enable_prefix_caching=False)
    expected = greedy(fresh, [prefix + [5, 6, 7]])
    greedy(llm, [prefix + [9, 9, 9, 9]])
    assert greedy(llm, [prefix + [5, 6, 7]]) == expected
    assert llm.engine.gauges().prefix_hits == 48
    assert_pool_full(llm.engine)


def test_roofline_counts_the_quantized_bytes():
    from inference.bench.common import kv_bytes_per_token, shape_config, weight_bytes_per_step
    from inference.config import ModelConfig
    from inference.model import LlamaModel
    from inference.quant import OWN_SCHEMES

    raw = shape_config("7b")
    cfg = ModelConfig.from_dict(raw)
    model = LlamaModel(cfg, torch.bfloat16, "meta", quant=OWN_SCHEMES["awq"])
    h, inter, layers, vocab = 4096, 11008, 32, 32016
    projections = layers * (h * 3 * h + h * h + h * 2 * inter + inter * h)  # weights of qkv, o, gate_up, down
    per_group = layers * (3 * h + h + 2 * inter) * (h // 128) + layers * h * (inter // 128)  # (scale, zero) pairs
    dense = 2 * (vocab * h + h + (2 * layers + 1) * h)  # LM head, one embedding row, the norms
    assert weight_bytes_per_step(model) == projections // 2 + 4 * per_group + dense
    assert kv_bytes_per_token(raw) == 2 * layers * 32 * 128 * 2  # k and v, 32 heads of 128 in bf16
    assert kv_bytes_per_token(raw, kv_int8=True) == 2 * layers * 32 * (128 + 4)  # int8 and a float32 scale
