"""The engine in a process of its own: the same streams as the engine on a thread, requests
checked before they leave, aborts that free the pool, and an engine that dies failing its
requests instead of hanging them."""

import asyncio

import pytest

from inference import AsyncEngine, EngineProcess, LLMEngine, SamplingParams
from tests.models import tiny_llama

ENGINE = dict(num_kv_blocks=48, max_model_len=256)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return tiny_llama(tmp_path_factory.mktemp("process"), max_pos=256)[0]


@pytest.fixture
async def process(model_dir):
    engine = EngineProcess(model_dir, **ENGINE)
    await engine.start()
    yield engine
    await engine.stop()
    assert engine._process.exitcode == 0


async def _collect(engine, request_id, prompt, params):
    deltas = [out async for out in engine.generate(request_id, prompt, params)]
    return "".join(d.outputs[0].text for d in deltas), sum((d.outputs[0].token_ids for d in deltas), []), deltas[-1]


def _pool_full(engine) -> bool:
    gauges = engine.gauges()
    return gauges.free_blocks == engine.info.num_blocks and gauges.unfinished_requests == 0


async def test_streams_equal_those_of_the_engine_on_a_thread(process, model_dir):
    prompts = [f"def f{i}(x):" for i in range(6)]
    params = [SamplingParams(max_tokens=10 + i, temperature=0.8, seed=i, ignore_eos=True) for i in range(6)]
    threaded = AsyncEngine(LLMEngine(model_dir, **ENGINE))
    try:
        expected = await asyncio.gather(*(_collect(threaded, f"r{i}", p, s)
                                          for i, (p, s) in enumerate(zip(prompts, params))))
    finally:
        await threaded.stop()
    got = await asyncio.gather(*(_collect(process, f"r{i}", p, s) for i, (p, s) in enumerate(zip(prompts, params))))
    assert [g[:2] for g in got] == [e[:2] for e in expected]
    for (_, _, last), (_, _, reference) in zip(got, expected):
        assert last.finished and last.outputs[0].finish_reason == "length"
        # the prompt travels back with the outputs as the engine on a thread gives it
        assert (last.prompt, last.prompt_token_ids) == (reference.prompt, reference.prompt_token_ids)
        assert last.metrics.first_token_time >= last.metrics.arrival_time
    gauges = process.gauges()
    assert gauges.stats.generation_tokens == sum(10 + i for i in range(6))
    assert _pool_full(process) and process.info.num_blocks == 48 and process.info.config.max_model_len == 256


async def test_a_bad_request_is_refused_before_it_leaves_and_disturbs_nobody(process):
    long = process.generate("long", "x = 1", SamplingParams(max_tokens=40, ignore_eos=True))
    first = await anext(long)
    with pytest.raises(ValueError, match="context window"):
        process.make_request("bad", list(range(3, 300)), SamplingParams(max_tokens=4))
    with pytest.raises(ValueError, match="outside the vocabulary"):
        await anext(process.generate("bad", [10**6], SamplingParams(max_tokens=4)))
    rest = [out async for out in long]
    assert len(first.outputs[0].token_ids) + sum(len(o.outputs[0].token_ids) for o in rest) == 40


async def test_abort_frees_the_pool_in_the_engine_process(process):
    stream = process.generate("long", "x = 1", SamplingParams(max_tokens=200, ignore_eos=True))
    for _ in range(3):
        await anext(stream)
    assert process.gauges().unfinished_requests == 1
    await stream.aclose()
    for _ in range(200):
        if _pool_full(process):
            break
        await asyncio.sleep(0.01)
    assert _pool_full(process)
    assert process.gauges().stats.generation_tokens < 200


async def test_an_engine_that_dies_fails_its_requests_and_refuses_new_ones(model_dir):
    process = EngineProcess(model_dir, **ENGINE)
    await process.start()
    stream = process.generate("doomed", "x = 1", SamplingParams(max_tokens=200, ignore_eos=True))
    await anext(stream)
    process._process.kill()
    with pytest.raises(RuntimeError, match="engine process exited"):
        async for _ in stream:
            pass
    assert "exited" in process.failure
    with pytest.raises(RuntimeError, match="engine process exited"):
        await anext(process.generate("after", "y = 2", SamplingParams(max_tokens=4)))
    await process.stop()  # and stopping a dead engine is quiet


def test_an_engine_that_cannot_start_raises_its_own_error(tmp_path):
    with pytest.raises(FileNotFoundError):
        EngineProcess(tmp_path / "missing")
