"""The KV pool: on the CPU sized from the model and the limits; anywhere a fixed size in GiB
when asked, the same bytes whatever the cache's dtype."""

import pytest

from inference import LLMEngine
from inference.config import EngineConfig
from inference.memory import cpu_kv_cache_budget
from tests.models import tiny_llama


def test_the_pool_holds_max_num_seqs_sequences_of_max_model_len(tmp_path):
    model = tiny_llama(tmp_path / "tiny", max_pos=1024)[0]
    engine = LLMEngine(model, device="cpu", max_model_len=200, max_num_seqs=3)
    assert engine.runner.num_blocks == 3 * 13  # 200 tokens are 13 blocks of 16
    assert engine.runner.kv_cache.numel() * engine.runner.kv_cache.element_size() == 39 * engine.runner.block_bytes


def test_a_fixed_size_or_a_window_memory_cannot_hold(tmp_path):
    model = tiny_llama(tmp_path / "tiny", max_pos=4096)[0]
    config = EngineConfig(model, max_model_len=4096, max_num_seqs=8)
    assert cpu_kv_cache_budget(config, block_bytes=1024) == 8 * 256 * 1024
    with pytest.raises(ValueError, match="one 4096-token sequence needs .* GiB of KV cache, but only .* lower --max-model-len"):
        cpu_kv_cache_budget(config, block_bytes=1 << 40)


def test_a_fixed_size_in_gib_holds_more_tokens_in_int8(tmp_path):
    model = tiny_llama(tmp_path / "tiny")[0]
    budget = 0.001 * (1 << 30)
    pools = {}
    for kv in ("auto", "int8"):
        runner = LLMEngine(model, device="cpu", kv_cache_gib=0.001, kv_cache_dtype=kv).runner
        assert budget - runner.block_bytes < runner.num_blocks * runner.block_bytes <= budget
        pools[kv] = runner.num_blocks
    assert pools["int8"] > 3 * pools["auto"]  # float32 on the CPU: 4 bytes a value against 1 and a scale
