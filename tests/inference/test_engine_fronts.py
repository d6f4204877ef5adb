"""The engine behind its asyncio front, on a thread (`AsyncEngine`) and in a process of its own
(`EngineProcess`): every test runs on both, through their public methods only. Concurrent
streams equal their solo runs, aborts free the pool, bad requests are refused before they leave
and disturb nobody; an engine process that dies fails its requests instead of hanging them."""

import asyncio
import os
import signal

import pytest
import pytest_asyncio

from inference import AsyncEngine, EngineProcess, LLMEngine, SamplingParams

ENGINE = dict(num_kv_blocks=48, max_model_len=256)
pytestmark = pytest.mark.asyncio(loop_scope="module")


def _make(kind: str, model_dir):
    return AsyncEngine(LLMEngine(model_dir, **ENGINE)) if kind == "thread" else EngineProcess(model_dir, **ENGINE)


@pytest_asyncio.fixture(scope="module", loop_scope="module", params=["thread", "process"])
async def front(request, tiny_model):
    front = _make(request.param, tiny_model[0])
    await front.start()
    yield front
    await front.stop()
    assert front.exitcode == 0 if request.param == "process" else True


@pytest.fixture(autouse=True)
async def _pool_full_after(request):
    """Every test leaves the pool as it found it: full, with no request left."""
    yield
    if "front" in request.fixturenames:
        assert await _wait_pool_full(request.getfixturevalue("front"))


def _pool_full(front) -> bool:
    gauges = front.gauges()
    return gauges.free_blocks == front.info.num_blocks and gauges.unfinished_requests == 0


async def _wait_pool_full(front) -> bool:
    for _ in range(200):
        if _pool_full(front):
            return True
        await asyncio.sleep(0.01)
    return False


async def _collect(front, request_id, prompt, params):
    text, ids, last = "", [], None
    async for out in front.generate(request_id, prompt, params):
        text += out.outputs[0].text
        ids += out.outputs[0].token_ids
        last = out
    return text, ids, last


async def test_concurrent_streams_equal_their_solo_runs(front):
    params = [SamplingParams(max_tokens=12 + i, temperature=0.8, seed=i, ignore_eos=True) for i in range(6)]
    prompts = [f"def f{i}(x):" for i in range(6)]
    together = await asyncio.gather(*(_collect(front, f"r{i}", p, s) for i, (p, s) in
                                      enumerate(zip(prompts, params))))
    for i, (p, s) in enumerate(zip(prompts, params)):
        alone = await _collect(front, f"solo{i}", p, s)
        assert together[i][:2] == alone[:2]
        last = together[i][2]
        assert last.finished and last.outputs[0].finish_reason == "length"
        assert last.metrics.first_token_time >= last.metrics.arrival_time


async def test_abort_mid_generation_frees_every_block(front):
    before = front.gauges().stats.generation_tokens
    stream = front.generate("long", "x = 1", SamplingParams(max_tokens=200, ignore_eos=True))
    received = 0
    async for _ in stream:
        received += 1
        if received == 3:
            break
    assert front.gauges().unfinished_requests == 1
    await stream.aclose()
    assert received == 3
    assert await _wait_pool_full(front)
    assert front.gauges().stats.generation_tokens - before < 200


@pytest.mark.parametrize("prompt,params,message", [
    ("", SamplingParams(), "prompt is empty"),
    ([], SamplingParams(), "non-empty"),
    ([1, 5, 99999], SamplingParams(), "outside the vocabulary"),
    ([1, -3], SamplingParams(), "outside the vocabulary"),
    ([10**6], SamplingParams(max_tokens=4), "outside the vocabulary"),
    ("x" * 2000, SamplingParams(max_tokens=1), "context window"),
    (list(range(3, 300)), SamplingParams(max_tokens=4), "context window"),
    ("def f():", SamplingParams(max_tokens=255), "exceeds the context window"),
])
async def test_bad_requests_raise_clear_errors_and_others_keep_running(front, prompt, params, message):
    good = asyncio.create_task(_collect(front, "good", "import sys", SamplingParams(max_tokens=20, ignore_eos=True)))
    await asyncio.sleep(0)
    with pytest.raises(ValueError, match=message):
        front.make_request("bad", prompt, params)
    with pytest.raises(ValueError, match=message):
        async for _ in front.generate("bad", prompt, params):
            pass
    text, ids, last = await good
    assert len(ids) == 20 and last.finished


async def test_a_slow_consumer_gets_merged_deltas_with_nothing_lost(front):
    params = SamplingParams(max_tokens=24, temperature=0.7, seed=5, ignore_eos=True)
    alone = await _collect(front, "fast", "def g(y):", params)
    stream = front.generate("slow", "def g(y):", params)
    first = await anext(stream)
    await asyncio.sleep(0.5)  # the engine runs ahead of this consumer
    second = await anext(stream)
    text = first.outputs[0].text + second.outputs[0].text
    ids = first.outputs[0].token_ids + second.outputs[0].token_ids
    assert len(second.outputs[0].token_ids) > 1  # several steps in one delta
    async for out in stream:
        text += out.outputs[0].text
        ids += out.outputs[0].token_ids
    assert (text, ids) == alone[:2]


async def test_outputs_carry_the_prompt_as_given(front):
    _, _, last = await _collect(front, "text", "def h(z):", SamplingParams(max_tokens=3))
    assert last.prompt == "def h(z):" and last.prompt_token_ids == front.tokenizer.encode("def h(z):")
    ids = [1, 822, 298]
    _, _, last = await _collect(front, "ids", ids, SamplingParams(max_tokens=3))
    assert last.prompt is None and last.prompt_token_ids == ids


async def test_both_fronts_stream_the_same_tokens(tiny_model):
    prompts = [f"def f{i}(x):" for i in range(4)]
    params = [SamplingParams(max_tokens=10 + i, temperature=0.8, seed=i, ignore_eos=True) for i in range(4)]
    streams = []
    for kind in ("thread", "process"):
        front = _make(kind, tiny_model[0])
        try:
            await front.start()
            streams.append(await asyncio.gather(*(_collect(front, f"r{i}", p, s)
                                                  for i, (p, s) in enumerate(zip(prompts, params)))))
        finally:
            await front.stop()
    assert [s[:2] for s in streams[0]] == [s[:2] for s in streams[1]]


async def test_an_engine_process_that_dies_fails_its_requests_and_refuses_new_ones(tiny_model):
    process = EngineProcess(tiny_model[0], **ENGINE)
    await process.start()
    stream = process.generate("doomed", "x = 1", SamplingParams(max_tokens=200, ignore_eos=True))
    await anext(stream)
    os.kill(process.pid, signal.SIGKILL)
    with pytest.raises(RuntimeError, match="engine process exited"):
        async for _ in stream:
            pass
    assert "exited" in process.failure
    with pytest.raises(RuntimeError, match="engine process exited"):
        await anext(process.generate("after", "y = 2", SamplingParams(max_tokens=4)))
    await process.stop()  # and stopping a dead engine is quiet


async def test_an_engine_process_that_cannot_start_raises_its_own_error(tmp_path):
    with pytest.raises(FileNotFoundError):
        EngineProcess(tmp_path / "missing")
