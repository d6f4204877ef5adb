"""The asyncio engine: concurrent streams, abort, and bad requests that disturb nobody."""

import asyncio

import pytest

from inference import AsyncEngine, LLMEngine, SamplingParams
from tests.models import assert_pool_full, tiny_llama


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return tiny_llama(tmp_path_factory.mktemp("async"), max_pos=256)[0]


@pytest.fixture
async def engine(model_dir):
    core = LLMEngine(model_dir, num_kv_blocks=48, max_model_len=256)
    aengine = AsyncEngine(core)
    yield aengine
    await aengine.stop()
    assert_pool_full(core)


async def _collect(engine, request_id, prompt, params):
    text, ids, last = "", [], None
    async for out in engine.generate(request_id, prompt, params):
        text += out.outputs[0].text
        ids += out.outputs[0].token_ids
        last = out
    return text, ids, last


async def test_concurrent_streams_equal_their_solo_runs(engine):
    params = [SamplingParams(max_tokens=12 + i, temperature=0.8, seed=i, ignore_eos=True) for i in range(6)]
    prompts = [f"def f{i}(x):" for i in range(6)]
    together = await asyncio.gather(*(_collect(engine, f"r{i}", p, s) for i, (p, s) in
                                      enumerate(zip(prompts, params))))
    for i, (p, s) in enumerate(zip(prompts, params)):
        alone = await _collect(engine, f"solo{i}", p, s)
        assert together[i][:2] == alone[:2]
        assert together[i][2].finished and together[i][2].outputs[0].finish_reason == "length"


async def test_abort_mid_generation_frees_every_block(engine):
    core = engine.engine
    stream = engine.generate("long", "x = 1", SamplingParams(max_tokens=200, ignore_eos=True))
    received = 0
    async for _ in stream:
        received += 1
        if received == 3:
            break
    await stream.aclose()
    for _ in range(100):
        if core.blocks.num_free_blocks == core.blocks.num_blocks:
            break
        await asyncio.sleep(0.01)
    assert received == 3
    assert core.blocks.num_free_blocks == core.blocks.num_blocks
    assert "long" not in core.requests


@pytest.mark.parametrize("prompt,params,message", [
    ("", SamplingParams(), "prompt is empty"),
    ([], SamplingParams(), "non-empty"),
    ([1, 5, 99999], SamplingParams(), "outside the vocabulary"),
    ([1, -3], SamplingParams(), "outside the vocabulary"),
    ("x" * 2000, SamplingParams(max_tokens=1), "context window"),
    ("def f():", SamplingParams(max_tokens=255), "exceeds the context window"),
])
async def test_bad_requests_raise_clear_errors_and_others_keep_running(engine, prompt, params, message):
    good = asyncio.create_task(_collect(engine, "good", "import sys", SamplingParams(max_tokens=20, ignore_eos=True)))
    await asyncio.sleep(0)
    with pytest.raises(ValueError, match=message):
        async for _ in engine.generate("bad", prompt, params):
            pass
    text, ids, last = await good
    assert len(ids) == 20 and last.finished


@pytest.mark.parametrize("field,value", [("max_tokens", 0), ("max_tokens", -1), ("top_p", 0.0), ("top_p", 1.5),
                                         ("temperature", -1), ("n", 0), ("logprobs", 50), ("top_k", -2),
                                         ("stop", [""]), ("max_tokens", 2.5)])
def test_invalid_sampling_params_are_refused(field, value):
    with pytest.raises(ValueError, match=field):
        SamplingParams(**{field: value})


async def test_a_slow_consumer_gets_merged_deltas_with_nothing_lost(engine):
    params = SamplingParams(max_tokens=24, temperature=0.7, seed=5, ignore_eos=True)
    alone = await _collect(engine, "fast", "def g(y):", params)
    stream = engine.generate("slow", "def g(y):", params)
    first = await stream.__anext__()
    await asyncio.sleep(0.5)  # the engine runs ahead of this consumer
    second = await stream.__anext__()
    text = first.outputs[0].text + second.outputs[0].text
    ids = first.outputs[0].token_ids + second.outputs[0].token_ids
    assert len(second.outputs[0].token_ids) > 1  # several steps in one delta
    async for out in stream:
        text += out.outputs[0].text
        ids += out.outputs[0].token_ids
    assert (text, ids) == alone[:2]
