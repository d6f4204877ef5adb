"""Speculative decoding in the engine: with drafts verified in one step, every request gets the
tokens it gets without them (greedy and seeded sampling, stops mid-draft, n > 1, logprobs,
preemption, infills), and the KV pool and the prefix cache keep nothing of rejected drafts."""

import json
import random

import pytest

from inference import LLM, SamplingParams
from inference.cli import main
from tests.models import assert_pool_full, chain, scripted_llama, tiny_llama

ALL = ["completion", "infilling"]


@pytest.fixture(scope="module")
def mha_model(tmp_path_factory):
    return tiny_llama(tmp_path_factory.mktemp("mha"), kv_heads=4, seed=3)[0]


@pytest.fixture(scope="module")
def copying_model(tmp_path_factory):
    """Greedy output follows a chain of 60 tokens: a prompt holding the chain is copied, so
    prompt-lookup drafts are accepted (until the model leaves the chain)."""
    tokens = random.Random(5).sample(range(200, 4000), 60)
    return scripted_llama(tmp_path_factory.mktemp("copying"), chain(tokens)), tokens


def outputs(llm: LLM, prompts, params) -> list[list[tuple]]:
    """Each completion's tokens, text and finish reason, and its logprobs (a verifying step
    computes them in a batch of another shape: equal to rounding)."""
    return [[(c.token_ids, c.text, c.finish_reason,
              c.logprobs and [(lp.token_id, pytest.approx(lp.logprob, abs=1e-4),
                               [(t, pytest.approx(v, abs=1e-4)) for t, v in lp.top]) for lp in c.logprobs])
             for c in o.outputs] for o in llm.generate(prompts, params)]


def same_as_without_speculation(model_dir, prompts, params, rounds: int = 1, **settings) -> LLM:
    """Generate `rounds` times with speculation (`settings` may set it) and without; assert
    equal outputs."""
    plain = LLM(model_dir, **{**settings, "speculate": "off"})
    spec = LLM(model_dir, **{"speculate": "auto", **settings})
    for _ in range(rounds):
        assert outputs(spec, prompts, params) == outputs(plain, prompts, params)
    assert_pool_full(spec.engine)
    return spec


def prompts_for(rng: random.Random, chain_tokens=None) -> list[list[int]]:
    """Copy-heavy prompts: a random stretch repeated (the output may copy it), the chain."""
    snippet = [rng.randrange(3, 4000) for _ in range(12)]
    prompts = [[1] + snippet * 3, [1] + [rng.randrange(3, 4000) for _ in range(20)], [1, 5, 6, 5, 6, 5]]
    if chain_tokens:
        prompts.append([1] + chain_tokens[:40] + [7, 8, chain_tokens[0]])
    return prompts


@pytest.mark.parametrize("mode", ["auto", "ngram", "suffix"])
def test_greedy_outputs_are_unchanged_and_drafts_are_accepted(copying_model, mode):
    model_dir, tokens = copying_model
    params = SamplingParams(max_tokens=30, temperature=0, ignore_eos=True, logprobs=2)
    prompts = prompts_for(random.Random(0), tokens)
    llm = same_as_without_speculation(model_dir, prompts, params, rounds=2, num_kv_blocks=64, speculate=mode)
    stats = llm.engine.stats
    # the second round repeats the first: the suffix cache drafts the earlier answers
    assert stats.accepted_tokens > stats.draft_tokens / 2 > 0
    assert stats.steps < stats.generation_tokens / 2


@pytest.mark.parametrize("kv_heads", [2, 4])
def test_random_models_mha_and_gqa_greedy_and_sampled(tiny_model, mha_model, kv_heads):
    model_dir = tiny_model[0] if kv_heads == 2 else mha_model
    rng = random.Random(kv_heads)
    prompts = prompts_for(rng) * 2
    params = [SamplingParams(max_tokens=24, temperature=0, ignore_eos=True),
              SamplingParams(max_tokens=24, temperature=0.8, top_p=0.9, seed=11, ignore_eos=True),
              SamplingParams(max_tokens=24, temperature=1.0, top_k=20, min_p=0.05, seed=12, logprobs=1),
              SamplingParams(max_tokens=24, temperature=0, ignore_eos=True),
              SamplingParams(max_tokens=24, temperature=0.7, seed=13, frequency_penalty=0.5,
                             repetition_penalty=1.2, ignore_eos=True),
              SamplingParams(max_tokens=20, temperature=0, n=3, ignore_eos=True)]
    llm = same_as_without_speculation(model_dir, prompts, params, num_kv_blocks=64)
    assert llm.engine.stats.accepted_tokens > 0


def test_stops_and_max_tokens_landing_inside_a_draft(copying_model):
    model_dir, tokens = copying_model
    prompt = [1] + tokens[:40] + [7, 8, tokens[0]]
    llm = LLM(model_dir, num_kv_blocks=64, speculate="off")
    text = llm.tokenizer.decode(tokens[1:30])
    stop_text = text[len(text) // 2:len(text) // 2 + 3]
    params = [SamplingParams(max_tokens=13, temperature=0, ignore_eos=True),
              SamplingParams(max_tokens=40, temperature=0, stop_token_ids=[tokens[9]]),
              SamplingParams(max_tokens=40, temperature=0, stop=[stop_text]),
              SamplingParams(max_tokens=40, temperature=0, stop=[stop_text], n=2)]
    spec = same_as_without_speculation(model_dir, [prompt] * 4, params, num_kv_blocks=64)
    finished = [o[0][2] for o in outputs(spec, [prompt] * 4, params)]
    assert finished == ["length", "stop", "stop", "stop"]
    assert spec.engine.stats.accepted_tokens > 0


def test_a_cost_model_table_plans_drafts_up_to_each_sequences_last_token(copying_model, tmp_path):
    """With a measured table the planner sees the batch of sequences that have room for a draft,
    which is empty when every decoding sequence is at its last token."""
    model_dir, tokens = copying_model
    table = tmp_path / "verify.json"
    table.write_text(json.dumps({"verify": {"batch_sizes": [1, 8], "extra_tokens": [0, 1, 2, 3],
                                            "ms": [[5.0, 5.1, 5.2, 5.3], [5.5, 5.7, 5.9, 6.1]],
                                            "eager_ms": [[6.0, 6.1, 6.2, 6.3], [6.5, 6.7, 6.9, 7.1]]}}))
    prompt = [1] + tokens[:40] + [7, 8, tokens[0]]
    params = [SamplingParams(max_tokens=n, temperature=0, ignore_eos=True) for n in (1, 2, 9, 17)]
    spec = same_as_without_speculation(model_dir, [prompt] * 4, params, num_kv_blocks=64,
                                       speculative_step_times=str(table))
    assert spec.engine.stats.accepted_tokens > 0


def test_verifying_steps_padded_to_the_captured_shapes_change_nothing(copying_model, tiny_model):
    """The GPU replays small verifying steps from CUDA graphs of one shape per (batch bucket,
    query length): each sequence's rows padded to the step's longest, the batch to its bucket.
    Here the same padding runs eagerly on the CPU: outputs stay those without speculation."""
    from inference.verify_graphs import VerifyGraphs

    model_dir, tokens = copying_model
    rng = random.Random(4)
    prompts = [[1] + tokens[:40] + [7, 8, tokens[0]], [1] + tokens[5:30] + [tokens[5]]] + prompts_for(rng)
    params = SamplingParams(max_tokens=30, temperature=0, ignore_eos=True, logprobs=2)
    for model, count in ((model_dir, 5), (tiny_model[0], 3)):  # 5: a padded bucket of 8 sequences
        plain = LLM(model, num_kv_blocks=64, speculate="off")
        spec = LLM(model, num_kv_blocks=64, speculate="auto")
        runner, config = spec.engine.runner, spec.engine.config
        runner.verify_graphs = VerifyGraphs(runner.model, runner.kv_cache, runner.kv_scales, config.max_num_seqs,
                                            config.max_blocks_per_seq, config.num_speculative_tokens + 1,
                                            config.block_size, capture=False)
        assert outputs(spec, prompts[:count], params) == outputs(plain, prompts[:count], params)
        assert spec.engine.stats.accepted_tokens > 0 and (runner.verify_graphs.slot_mapping >= 0).any()
        assert_pool_full(spec.engine)


def test_preemption_by_a_small_pool_changes_nothing(tiny_model, copying_model):
    model_dir, tokens = copying_model
    rng = random.Random(9)
    prompts = [[1] + tokens[:30] + [rng.randrange(3, 4000) for _ in range(rng.randrange(1, 20))] + [tokens[0]]
               for _ in range(8)]
    params = SamplingParams(max_tokens=32, temperature=0, ignore_eos=True)
    llm = same_as_without_speculation(model_dir, prompts, params, num_kv_blocks=13, enable_prefix_caching=False)
    assert llm.engine.scheduler.num_preemptions > 0 and llm.engine.stats.accepted_tokens > 0
    sampled = SamplingParams(max_tokens=24, temperature=0.9, seed=2, ignore_eos=True)
    llm = same_as_without_speculation(tiny_model[0], prompts_for(rng) * 2, sampled, num_kv_blocks=8)
    assert llm.engine.scheduler.num_preemptions > 0


def test_infills_are_unchanged(copying_model):
    model_dir, tokens = copying_model
    plain = LLM(model_dir, num_kv_blocks=64, capabilities=ALL)
    spec = LLM(model_dir, num_kv_blocks=64, capabilities=ALL, speculate="ngram")
    prefix, suffix = plain.tokenizer.decode(tokens[:20]), plain.tokenizer.decode(tokens[20:45])
    params = SamplingParams(max_tokens=30, temperature=0)
    for suffix_first in (False, True):
        got = spec.infill(prefix, suffix, params, suffix_first)
        assert got.outputs[0].token_ids == plain.infill(prefix, suffix, params, suffix_first).outputs[0].token_ids
    assert spec.engine.stats.draft_tokens > 0
    assert_pool_full(spec.engine)


def test_the_pool_refills_and_the_prefix_cache_holds_no_rejected_token(tiny_model):
    """Rounds of requests with rejected drafts, one aborted while a step verifies its draft:
    every block comes back, and each cached block holds a block-aligned stretch of some finished
    sequence's tokens (a rejected drafted token would make it hold something else)."""
    llm = LLM(tiny_model[0], num_kv_blocks=48, speculate="auto", block_size=4)
    engine, rng, finals, aborted = llm.engine, random.Random(3), [], 0
    for round_ in range(3):
        prompts = {}
        for i in range(6):
            prompts[f"{round_}-{i}"] = prompt = prompts_for(rng)[i % 3]
            params = SamplingParams(max_tokens=20, temperature=0.6 if i % 2 else 0, seed=i, ignore_eos=True)
            engine.add(engine.make_request(f"{round_}-{i}", prompt, params))
        got = {r: [] for r in prompts}
        while engine.has_unfinished:
            for out in engine.step():
                got[out.request_id] += out.outputs[0].token_ids
            step = engine._in_flight
            if step is not None and step.batch.speculative and len(got) == len(prompts):
                victim = next(s for s, d in zip(step.batch.seqs, step.batch.drafts) if d).request_id
                engine.abort(victim)  # while its draft is being verified
                del got[victim]
                aborted += 1
        finals += [prompts[r] + tokens for r, tokens in got.items()]
    assert aborted == 3
    assert_pool_full(engine)
    assert 0 < engine.stats.accepted_tokens < engine.stats.draft_tokens
    bs = 4
    stretches = {tuple(f[i:i + bs]) for f in finals for i in range(0, len(f) - bs + 1, bs)}
    cached = [b.token_ids for b in engine.scheduler.block_manager.pool if b.hash is not None]
    assert len(cached) > 20 and all(tokens in stretches for tokens in cached)


def test_tensor_parallel_ranks_verify_drafts_too(copying_model):
    model_dir, tokens = copying_model
    prompts = prompts_for(random.Random(4), tokens)
    params = SamplingParams(max_tokens=24, temperature=0, ignore_eos=True)
    single = outputs(LLM(model_dir, num_kv_blocks=64), prompts, params)
    llm = LLM(model_dir, num_kv_blocks=64, tensor_parallel_size=2, speculate="auto")
    try:
        assert outputs(llm, prompts, params) == single
        assert llm.engine.stats.accepted_tokens > 0
        assert_pool_full(llm.engine)
    finally:
        llm.engine.shutdown()


def test_the_command_line_turns_speculation_on(copying_model, capsys):
    model_dir, tokens = copying_model
    prompt = LLM(model_dir, num_kv_blocks=16).tokenizer.decode(tokens[:30] + [7, 8] + tokens[:3])
    texts = {}
    for mode in ("off", "ngram"):
        argv = ["generate", str(model_dir), prompt, "--temperature", "0", "--max-tokens", "20", "--num-kv-blocks",
                "32", "--speculate", mode, "--num-speculative-tokens", "3"]
        assert main(argv) == 0
        texts[mode] = capsys.readouterr().out
    assert texts["ngram"] == texts["off"] and len(texts["off"]) > len(prompt) + 20
    assert main(["generate", str(model_dir), prompt, "--speculate", "ngram", "--num-speculative-tokens", "0"]) == 2
    assert "num_speculative_tokens must be in [1, 16], got 0" in capsys.readouterr().err


def drafting_tries(llm: LLM, prompts, params, proposals: list[int] | None = None) -> list[int]:
    """Generate; the engine steps at which drafting was tried (and into `proposals`, how many
    sequences each try proposed for)."""
    engine, tries, proposals = llm.engine, [], [] if proposals is None else proposals
    draft, propose = engine._draft, engine.speculator.propose

    def counted(*args, **kwargs):
        proposals[-1] += 1
        return propose(*args, **kwargs)

    engine.speculator.propose = counted
    engine._draft = lambda: tries.append(engine.stats.steps) or proposals.append(0) or draft()
    llm.generate(prompts, params)
    assert engine.stats.draft_tokens == 0
    return tries


def test_fruitless_drafting_backs_off_so_steps_keep_running_ahead(tiny_model):
    """With nothing to draft (the suffix cache is empty until a request finishes), drafting is
    tried less and less often: a try makes the step wait for the one before it."""
    params = SamplingParams(max_tokens=80, temperature=0, ignore_eos=True)
    tries = drafting_tries(LLM(tiny_model[0], num_kv_blocks=64, speculate="suffix"), [[1, 20, 30, 40]], params)
    assert tries[:5] == [tries[0], tries[0] + 2, tries[0] + 5, tries[0] + 10, tries[0] + 19]  # waits of 1, 2, 4, 8
    assert len(tries) <= 8
    # with 64 sequences it waits up to 128 steps, not 32; and after a fruitless try it asks 16 of
    # them (a different 16 each time), not every one
    params = SamplingParams(max_tokens=200, temperature=0, ignore_eos=True)
    proposals = []
    tries = drafting_tries(LLM(tiny_model[0], num_kv_blocks=64 * 14, speculate="suffix"),
                           [[1, 20 + i, 30, 40] for i in range(64)], params, proposals)
    assert [b - a for a, b in zip(tries, tries[1:])][:7] == [2, 3, 5, 9, 17, 33, 65]
    assert proposals[0] == 64 and set(proposals[1:7]) == {16}


@pytest.mark.gpu
def test_on_the_gpu_verifying_steps_mix_with_cuda_graph_decode_steps(copying_model, tiny_model):
    """Decode steps replay CUDA graphs, and so do small verifying steps (padded, through the
    prefill kernel): float32, so that the two kernels agree to rounding and greedy outputs stay equal."""
    model_dir, tokens = copying_model
    params = SamplingParams(max_tokens=40, temperature=0, ignore_eos=True, logprobs=1)
    for model, prompts in ((model_dir, prompts_for(random.Random(6), tokens)), (tiny_model[0], prompts_for(
            random.Random(7)))):
        llm = same_as_without_speculation(model, prompts, params, rounds=2, num_kv_blocks=64, device="cuda",
                                          dtype="float32")
        runner = llm.engine.runner
        assert runner.graphs is not None and runner.verify_graphs is not None and llm.engine.stats.accepted_tokens > 0
        assert (runner.verify_graphs.slot_mapping >= 0).any()  # a verifying step replayed a graph


@pytest.mark.gpu
def test_on_a_card_and_shape_with_a_shipped_table_speculation_is_on_by_default():
    """(No weights are loaded: the config alone decides.)"""
    import torch

    from inference.bench.common import random_model_dir
    from inference.config import EngineConfig
    from inference.speculative.step_tables import shipped_step_times

    model = random_model_dir("7b")
    shipped = shipped_step_times(torch.cuda.get_device_name(), "7b")
    config = EngineConfig(model, load_format="random")
    assert config.speculative_step_times == shipped and config.speculate == ("auto" if shipped else "off")
    for other in (dict(kv_cache_dtype="int8"), dict(quantization="awq"), dict(speculate="off")):
        config = EngineConfig(model, load_format="random", **other)
        assert config.speculative_step_times is None and config.speculate == "off"
