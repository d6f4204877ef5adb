"""Tensor parallelism across two CPU processes (gloo): the same tokens as one process."""

import pytest

from inference import LLM, SamplingParams
from tests.models import assert_pool_full


def test_two_ranks_generate_what_one_does(tiny_model):
    model_dir = tiny_model[0]
    prompts = ["def add(a, b):", "import os\nimport sys\n" * 3, "x"]
    params = [SamplingParams(max_tokens=12, temperature=0, ignore_eos=True),
              SamplingParams(max_tokens=20, temperature=0.8, seed=4, ignore_eos=True),
              SamplingParams(max_tokens=5, temperature=0, ignore_eos=True, n=2)]
    single = LLM(model_dir, num_kv_blocks=64).generate(prompts, params)
    llm = LLM(model_dir, num_kv_blocks=64, tensor_parallel_size=2)
    try:
        assert llm.engine.runner.model.layers[0].num_heads == 2  # each rank holds half the heads
        sharded = llm.generate(prompts, params)
        assert [[c.token_ids for c in o.outputs] for o in sharded] == \
               [[c.token_ids for c in o.outputs] for o in single]
        assert_pool_full(llm.engine)
    finally:
        llm.engine.shutdown()


def test_more_ranks_than_kv_heads_is_refused(tiny_model):
    model_dir = tiny_model[0]
    with pytest.raises(ValueError, match="not divisible by the tensor-parallel size"):
        LLM(model_dir, num_kv_blocks=64, tensor_parallel_size=3)



def test_two_ranks_on_a_quantized_checkpoint_with_an_int8_cache(tmp_path):
    from tests.inference.quant_checkpoints import Variant, write_quantized
    from tests.models import tiny_llama

    _, hf = tiny_llama(tmp_path / "dense", hidden=128, intermediate=256)
    write_quantized(hf, tmp_path / "awq", Variant("awq", 64))  # o_proj's 128 inputs: one group per rank
    prompts, params = ["def add(a, b):", "x = 1\n" * 5], SamplingParams(max_tokens=10, temperature=0, ignore_eos=True)
    single = LLM(tmp_path / "awq", num_kv_blocks=64, kv_cache_dtype="int8").generate(prompts, params)
    llm = LLM(tmp_path / "awq", num_kv_blocks=64, kv_cache_dtype="int8", tensor_parallel_size=2)
    try:
        assert llm.engine.runner.model.layers[0].o_proj.qweight.shape == (64 // 8, 128)  # half the inputs
        assert [o.outputs[0].token_ids for o in llm.generate(prompts, params)] == \
               [o.outputs[0].token_ids for o in single]
        assert_pool_full(llm.engine)
    finally:
        llm.engine.shutdown()
