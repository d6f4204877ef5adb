"""Tensor parallelism on two GPUs: NCCL broadcasts and all-reduces between two processes."""

import pytest
import torch

from inference import LLM, SamplingParams
from tests.models import assert_pool_full, tiny_llama

pytestmark = pytest.mark.gpu


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two GPUs")
def test_two_gpus_generate_what_one_does(tmp_path):
    model_dir, _ = tiny_llama(tmp_path, vocab=4096, hidden=256, heads=8, kv_heads=4, layers=4, intermediate=512)
    prompts = ["def add(a, b):", "import os\n" * 20, "x"]
    params = SamplingParams(max_tokens=40, temperature=0, ignore_eos=True)
    kw = dict(num_kv_blocks=256, max_num_seqs=8, dtype="float32")
    single = LLM(model_dir, **kw).generate(prompts, params)
    llm = LLM(model_dir, tensor_parallel_size=2, **kw)
    try:
        sharded = llm.generate(prompts, params)
        assert [o.outputs[0].token_ids for o in sharded] == [o.outputs[0].token_ids for o in single]
        assert_pool_full(llm.engine)
    finally:
        llm.engine.shutdown()
