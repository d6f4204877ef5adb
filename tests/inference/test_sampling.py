"""Sampling: seeds, filters, penalties and logprobs, checked on the engine and on the sampler."""

import pytest
import torch

from inference import LLM, SamplingParams
from inference.sampler import SamplingTensors, apply_penalties, exponential_noise, sample, uniform_from_bits
from tests.models import assert_pool_full, tiny_llama


@pytest.fixture(scope="module")
def llm(tmp_path_factory):
    model_dir, _ = tiny_llama(tmp_path_factory.mktemp("sampling"), init_std=0.02)
    return LLM(model_dir, num_kv_blocks=256)


def test_seeded_request_gives_the_same_tokens_alone_and_in_a_batch_of_16(llm):
    params = SamplingParams(max_tokens=24, temperature=0.9, top_p=0.95, seed=1234, ignore_eos=True)
    alone = llm.generate(["def add(a, b):"], params)[0].outputs[0].token_ids
    others = [SamplingParams(max_tokens=24 + i, temperature=1.0, seed=i, ignore_eos=True) for i in range(15)]
    prompts = [f"x = {i} * {i}\n" * (i % 4 + 1) for i in range(15)]
    batch = llm.generate(prompts[:7] + ["def add(a, b):"] + prompts[7:], others[:7] + [params] + others[7:])
    assert batch[7].outputs[0].token_ids == alone
    assert len({tuple(o.outputs[0].token_ids) for o in batch}) > 8  # the others really sampled
    assert_pool_full(llm.engine)


def test_unseeded_requests_differ_and_temperature_zero_is_greedy(llm):
    sampled = llm.generate(["import os"] * 4, SamplingParams(max_tokens=16, temperature=1.0, ignore_eos=True))
    assert len({tuple(o.outputs[0].token_ids) for o in sampled}) > 1
    greedy = llm.generate(["import os"] * 2, SamplingParams(max_tokens=16, temperature=0, ignore_eos=True))
    top_k_1 = llm.generate(["import os"], SamplingParams(max_tokens=16, top_k=1, ignore_eos=True, seed=3))
    assert greedy[0].outputs[0].token_ids == greedy[1].outputs[0].token_ids == top_k_1[0].outputs[0].token_ids


def test_logprobs_are_the_models_log_softmax(llm):
    out = llm.generate(["for i in range("], SamplingParams(max_tokens=4, temperature=0, logprobs=3))[0]
    comp = out.outputs[0]
    assert len(comp.logprobs) == len(comp.token_ids) == 4
    for lp, token in zip(comp.logprobs, comp.token_ids):
        assert lp.token_id == token
        assert [t for t, _ in lp.top][0] == token  # greedy takes the most likely token
        assert lp.logprob == pytest.approx(lp.top[0][1])
        values = [v for _, v in lp.top]
        assert values == sorted(values, reverse=True) and len(values) == 3
        assert all(v <= 0 for v in values)


def _tensors(batch: int, vocab: int, **overrides) -> SamplingTensors:
    def full(v, dtype=torch.float32):
        return torch.full((batch,), v, dtype=dtype)

    fields = dict(temperature=full(1.0), top_p=full(1.0), top_k=full(vocab, torch.int64), min_p=full(0.0),
                  seeds=torch.arange(batch, dtype=torch.int64), positions=torch.zeros(batch, dtype=torch.int64),
                  repetition_penalty=None, presence_penalty=None, frequency_penalty=None,
                  output_counts=None, prompt_mask=None, num_logprobs=-1, all_greedy=False)
    fields.update(overrides)
    fields["any_top_k_top_p"] = bool((fields["top_k"] < vocab).any() or (fields["top_p"] < 1).any())
    fields["any_min_p"] = bool((fields["min_p"] > 0).any())
    return SamplingTensors(**fields)


def test_sampling_follows_the_distribution():
    """Thousands of independently seeded rows over a 4-token distribution: frequencies within
    a few standard errors of the probabilities."""
    probs = torch.tensor([0.5, 0.3, 0.15, 0.05])
    rows = 20000
    logits = probs.log().expand(rows, 4).clone()
    tokens = sample(logits, _tensors(rows, 4)).tokens
    freq = torch.bincount(tokens, minlength=4).float() / rows
    se = (probs * (1 - probs) / rows).sqrt()
    assert ((freq - probs).abs() < 5 * se).all(), freq


def test_top_k_top_p_and_min_p_exclude_tokens():
    probs = torch.tensor([0.4, 0.3, 0.2, 0.1])
    rows = 4000
    logits = probs.log().expand(rows, 4).clone()
    seen = lambda t: set(sample(logits, t).tokens.tolist())  # noqa: E731
    assert seen(_tensors(rows, 4, top_k=torch.full((rows,), 2))) == {0, 1}
    assert seen(_tensors(rows, 4, top_p=torch.full((rows,), 0.65))) == {0, 1}
    assert seen(_tensors(rows, 4, min_p=torch.full((rows,), 0.5))) == {0, 1}
    assert seen(_tensors(rows, 4)) == {0, 1, 2, 3}


def test_uniform_noise_never_reaches_zero_or_one():
    extremes = torch.tensor([0, -1, (1 << 63) - 1, -(1 << 63), (0x7FFFFF << 40) - 1], dtype=torch.int64)
    u = uniform_from_bits(extremes)
    assert (u > 0).all() and (u < 1).all()
    assert torch.isfinite(-torch.log(u)).all() and (-torch.log(u) > 0).all()


def test_noise_depends_only_on_seed_and_position():
    a = exponential_noise(torch.tensor([5, 6, 5]), torch.tensor([0, 0, 1]), 50)
    b = exponential_noise(torch.tensor([6, 5]), torch.tensor([0, 1]), 50)
    assert torch.equal(a[1], b[0]) and torch.equal(a[2], b[1])
    assert not torch.equal(a[0], a[2])
    assert (a > 0).all() and abs(a.mean().item() - 1) < 0.3


def test_penalties_follow_transformers_and_openai_definitions():
    logits = torch.tensor([[2.0, -1.0, 0.5, 3.0]])
    counts = torch.tensor([[2.0, 0.0, 1.0, 0.0]])
    prompt = torch.tensor([[False, True, False, False]])
    t = _tensors(1, 4, repetition_penalty=torch.tensor([2.0]), presence_penalty=torch.tensor([0.5]),
                 frequency_penalty=torch.tensor([0.25]), output_counts=counts, prompt_mask=prompt)
    got = apply_penalties(logits, t)[0].tolist()
    expected = [2.0 / 2 - 0.25 * 2 - 0.5, -1.0 * 2, 0.5 / 2 - 0.25 - 0.5, 3.0]
    assert got == pytest.approx(expected)


def test_frequency_penalty_breaks_a_greedy_loop(llm):
    params = dict(max_tokens=24, temperature=0, ignore_eos=True)
    plain = llm.generate(["a a a a"], SamplingParams(**params))[0].outputs[0].token_ids
    penalised = llm.generate(["a a a a"], SamplingParams(**params, frequency_penalty=2.0))[0].outputs[0].token_ids
    assert len(set(plain)) < len(plain), "the random model is expected to repeat itself greedily"
    assert len(set(penalised)) > len(set(plain))


@pytest.mark.parametrize("field,value", [("max_tokens", 0), ("max_tokens", -1), ("top_p", 0.0), ("top_p", 1.5),
                                         ("temperature", -1), ("n", 0), ("logprobs", 50), ("top_k", -2),
                                         ("stop", [""]), ("max_tokens", 2.5)])
def test_invalid_sampling_params_are_refused(field, value):
    with pytest.raises(ValueError, match=field):
        SamplingParams(**{field: value})
