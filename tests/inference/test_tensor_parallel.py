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

