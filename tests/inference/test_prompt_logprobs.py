"""Prompt logprobs (`SamplingParams.prompt_logprobs`): the log-softmax of transformers' logits at
every prompt position, however the prompt is computed: in one step or in chunks, after its
prefix was cached by another request, alongside other requests, with n samples, and after
being preempted and recomputed."""

import pytest
import torch

from inference import LLM, SamplingParams
from tests.models import assert_pool_full

K = 3


def _reference(hf, prompt: list[int]) -> torch.Tensor:
    """[len - 1, vocab]: transformers' log-probabilities of each next prompt token's position."""
    with torch.no_grad():
        logits = hf(torch.tensor([prompt])).logits[0].float()
    return torch.log_softmax(logits[:-1], dim=-1)


def _check_chosen(prompt: list[int], got, reference: torch.Tensor, atol: float = 1e-4) -> None:
    assert [lp.token_id for lp in got] == prompt[1:]
    chosen = reference.gather(1, torch.tensor(prompt[1:])[:, None])[:, 0]
    torch.testing.assert_close(torch.tensor([lp.logprob for lp in got]), chosen, atol=atol, rtol=0)


def _check(prompt: list[int], got, reference: torch.Tensor, atol: float = 1e-4) -> None:
    _check_chosen(prompt, got, reference, atol)
    for lp, row in zip(got, reference):
        top = row.topk(K)
        assert [t for t, _ in lp.top] == top.indices.tolist()
        torch.testing.assert_close(torch.tensor([v for _, v in lp.top]), top.values, atol=atol, rtol=0)


def _prompts(lengths: list[int], seed: int) -> list[list[int]]:
    gen = torch.Generator().manual_seed(seed)
    return [[1] + torch.randint(3, 4096, (n - 1,), generator=gen).tolist() for n in lengths]


@pytest.mark.parametrize("budget", [4096, 16])  # the whole prompt in one step, or in chunks of 16
def test_prompt_logprobs_equal_transformers(tiny_model, budget):
    model_dir, hf = tiny_model
    prompts = _prompts([2, 17, 40], seed=budget)
    llm = LLM(model_dir, num_kv_blocks=64, max_num_batched_tokens=budget)
    params = SamplingParams(max_tokens=3, temperature=0, ignore_eos=True, prompt_logprobs=K)
    plain = SamplingParams(max_tokens=3, temperature=0, ignore_eos=True)
    outs = llm.generate(prompts + ["def f(x):"], [params] * 3 + [plain])  # alongside one that does not score
    for prompt, out in zip(prompts, outs):
        _check(prompt, out.prompt_logprobs, _reference(hf, prompt))
    assert outs[3].prompt_logprobs is None
    assert_pool_full(llm.engine)


def test_a_cached_prefix_is_computed_again_to_be_scored(tiny_model):
    model_dir, hf = tiny_model
    prompt = _prompts([50], seed=7)[0]
    llm = LLM(model_dir, num_kv_blocks=64)
    first = llm.generate([prompt], SamplingParams(max_tokens=1))[0]
    scored = llm.generate([prompt], SamplingParams(max_tokens=1, prompt_logprobs=K))[0]
    again = llm.generate([prompt], SamplingParams(max_tokens=1))[0]
    assert first.num_cached_tokens == 0 and again.num_cached_tokens == 48  # the cache itself still works
    _check(prompt, scored.prompt_logprobs, _reference(hf, prompt))


def test_n_samples_get_one_scoring_of_their_prompt(tiny_model):
    model_dir, hf = tiny_model
    prompt = _prompts([21], seed=3)[0]
    out = LLM(model_dir, num_kv_blocks=64).generate(
        [prompt], SamplingParams(max_tokens=4, n=3, temperature=1.0, seed=5, prompt_logprobs=0))[0]
    assert len(out.outputs) == 3 and len(out.prompt_logprobs) == len(prompt) - 1
    assert all(lp.top == [] for lp in out.prompt_logprobs)  # k = 0: the prompt token's own logprob only
    _check_chosen(prompt, out.prompt_logprobs, _reference(hf, prompt))


def test_a_preempted_request_is_scored_once(tiny_model):
    model_dir, hf = tiny_model
    prompts = _prompts([30] * 6, seed=11)
    llm = LLM(model_dir, num_kv_blocks=14, max_num_batched_tokens=32)  # too few blocks for all at once
    outs = llm.generate(prompts, SamplingParams(max_tokens=40, temperature=0, ignore_eos=True, prompt_logprobs=K))
    assert llm.engine.scheduler.num_preemptions > 0
    for prompt, out in zip(prompts, outs):
        _check(prompt, out.prompt_logprobs, _reference(hf, prompt))  # each position once
    assert_pool_full(llm.engine)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_prompt_logprobs_on_the_gpu_equal_transformers(tiny_model):
    """The Triton kernels, chunked prefill beside decodes, and CUDA graphs kept to decode steps."""
    model_dir, hf = tiny_model
    prompts = _prompts([2, 17, 40, 100], seed=5)
    llm = LLM(model_dir, num_kv_blocks=64, max_num_batched_tokens=32, dtype="float32")
    outs = llm.generate(prompts, SamplingParams(max_tokens=8, temperature=0, ignore_eos=True, prompt_logprobs=K))
    for prompt, out in zip(prompts, outs):
        _check(prompt, out.prompt_logprobs, _reference(hf, prompt), atol=2e-3)  # TF32 in the attention kernels
    assert_pool_full(llm.engine)
