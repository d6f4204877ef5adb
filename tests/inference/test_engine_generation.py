"""Continuous batching end to end: greedy parity with transformers, preemption, prefix caching."""

import pytest
import torch

from inference import LLM, SamplingParams
from tests.models import assert_pool_full

PROMPT_LENGTHS = [3, 15, 16, 17, 31, 33, 48, 70]  # around the 16-token block boundaries


@pytest.fixture(scope="module")
def prompts_and_reference(tiny_model):
    """8 prompts of different lengths and transformers' greedy continuation of each, alone."""
    _, hf = tiny_model
    gen = torch.Generator().manual_seed(1)
    prompts = [[1] + torch.randint(3, 4096, (n - 1,), generator=gen).tolist() for n in PROMPT_LENGTHS]
    hf.generation_config.eos_token_id = None  # plain greedy: never stop early, never ban EOS
    reference = []
    for p in prompts:
        out = hf.generate(torch.tensor([p]), max_new_tokens=32, do_sample=False, pad_token_id=0)
        reference.append(out[0, len(p):].tolist())
    return prompts, reference


def _greedy_ids(llm: LLM, prompts):
    params = SamplingParams(max_tokens=32, temperature=0, ignore_eos=True)
    return [o.outputs[0].token_ids for o in llm.generate(prompts, params)]


def test_batched_greedy_equals_transformers_alone(tiny_model, prompts_and_reference):
    prompts, reference = prompts_and_reference
    llm = LLM(tiny_model[0], num_kv_blocks=128, max_num_batched_tokens=64)  # chunked prefill too
    assert _greedy_ids(llm, prompts) == reference
    assert llm.engine.scheduler.num_preemptions == 0
    assert_pool_full(llm.engine)


def test_preemption_by_recompute_changes_no_output(tiny_model, prompts_and_reference):
    prompts, reference = prompts_and_reference
    # the longest request needs 7 blocks; all eight together need 38
    llm = LLM(tiny_model[0], num_kv_blocks=12, enable_prefix_caching=False)
    assert _greedy_ids(llm, prompts) == reference
    assert llm.engine.scheduler.num_preemptions > 0
    assert_pool_full(llm.engine)


def test_prefix_cache_reuses_a_three_block_prefix(tiny_model):
    llm = LLM(tiny_model[0], num_kv_blocks=64, block_size=16)
    gen = torch.Generator().manual_seed(2)
    prefix = [1] + torch.randint(3, 4096, (47,), generator=gen).tolist()  # exactly 3 blocks
    first = prefix + torch.randint(3, 4096, (9,), generator=gen).tolist()
    second = prefix + torch.randint(3, 4096, (5,), generator=gen).tolist()
    params = SamplingParams(max_tokens=16, temperature=0, ignore_eos=True)

    fresh = LLM(tiny_model[0], num_kv_blocks=64, block_size=16, enable_prefix_caching=False)
    expected = fresh.generate([second], params)[0].outputs[0].token_ids

    llm.generate([first], params)
    hits_before = llm.engine.gauges().prefix_hits
    out = llm.generate([second], params)[0]
    assert llm.engine.gauges().prefix_hits - hits_before == 48
    assert out.num_cached_tokens == 48
    assert out.outputs[0].token_ids == expected
    assert_pool_full(llm.engine)


def test_n_samples_share_the_prompt_blocks(tiny_model):
    llm = LLM(tiny_model[0], num_kv_blocks=64, enable_prefix_caching=False)
    prompt = list(range(5, 5 + 40))  # two full blocks and a partial one
    out = llm.generate([prompt], SamplingParams(max_tokens=8, n=4, temperature=1.0, seed=7))[0]
    assert [c.index for c in out.outputs] == [0, 1, 2, 3]
    assert len({tuple(c.token_ids) for c in out.outputs}) > 1, "samples should differ"
    # samples 1..3 found sample 0's two full prompt blocks even with prefix caching off
    assert llm.engine.gauges().prefix_hits == 3 * 32
    assert_pool_full(llm.engine)
