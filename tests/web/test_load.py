"""Under load: many concurrent streams stay independent and exact; a client that goes away has its
request aborted and its KV blocks freed. Each test runs with the engine on a thread of the server
(as the tests' other servers have it) and in a process of its own (as `codellama serve` has it)."""

from __future__ import annotations

import asyncio
import os
import signal

import httpx
import openai
import pytest

from inference import EngineProcess, LLMEngine
from web.settings import ServerSettings

from .conftest import LiveServer, pool_full, wait_for


@pytest.fixture(scope="module", params=["thread", "process"])
def server(request, random_model):
    make = LLMEngine if request.param == "thread" else EngineProcess
    engine = make(random_model, num_kv_blocks=256, max_model_len=1024, max_num_seqs=16)
    server = LiveServer(engine, ServerSettings(max_queue=64, max_body_bytes=1 << 20)).start()
    yield server
    server.stop()


async def _streamed_text(client: openai.AsyncOpenAI, model: str, prompt: str, seed: int) -> tuple[str, str]:
    stream = await client.completions.create(model=model, prompt=prompt, max_tokens=16, temperature=0.9, seed=seed,
                                             stream=True, extra_body={"ignore_eos": True})
    text, reason = "", None
    async for chunk in stream:
        text += chunk.choices[0].text
        reason = chunk.choices[0].finish_reason or reason
    return text, reason


async def test_64_concurrent_streams_each_equal_their_solo_run(server):
    model = server.serving.model_id
    prompts = [f"def f{i}(x):\n    return x * {i}" for i in range(64)]
    async with openai.AsyncOpenAI(base_url=server.url + "/v1", api_key="-", max_retries=0) as client:
        together = await asyncio.gather(*(_streamed_text(client, model, p, seed) for seed, p in enumerate(prompts)))
        alone = [await _streamed_text(client, model, p, seed) for seed, p in enumerate(prompts)]
    assert together == alone
    assert all(reason == "length" and text for text, reason in together)
    assert len(set(together)) > 32  # different prompts and seeds give different texts
    assert wait_for(lambda: pool_full(server.engine))


def _long_stream_body(model: str) -> dict:
    return {"model": model, "prompt": "import os", "max_tokens": 1000, "ignore_eos": True, "stream": True}


def test_a_client_leaving_mid_stream_aborts_its_request_and_frees_its_blocks(server):
    engine, serving = server.engine, server.serving
    before = engine.gauges().stats.generation_tokens
    finished_before = serving.accounting.finished_requests
    with httpx.Client(base_url=server.url, timeout=10) as http:
        with http.stream("POST", "/v1/completions", json=_long_stream_body(serving.model_id)) as r:
            assert r.status_code == 200
            events = 0
            for line in r.iter_lines():
                events += line.startswith("data: ")
                if events == 3:
                    break
            assert engine.gauges().unfinished_requests  # still generating when the client leaves
        steps_at_close = engine.gauges().stats.steps
    assert wait_for(lambda: pool_full(engine))
    # aborted before the next step or so (a loaded machine may take a few to notice the closed socket)
    assert engine.gauges().stats.steps - steps_at_close <= 5
    assert engine.gauges().stats.generation_tokens - before < 100
    assert serving.accounting.finished_requests == finished_before
    assert serving.admission.in_flight == 0 and not serving.generations


def test_a_client_leaving_a_non_streamed_request_aborts_it_too(server):
    engine, serving = server.engine, server.serving
    finished_before = serving.accounting.finished_requests
    body = {**_long_stream_body(serving.model_id), "stream": False}
    with httpx.Client(base_url=server.url, timeout=httpx.Timeout(10, read=0.3)) as http:
        try:
            http.post("/v1/completions", json=body)
            raise AssertionError("1000 tokens should take longer than the read timeout")
        except httpx.ReadTimeout:
            pass
    # (the engine's gauges may still be those from before the request: wait for the release too)
    assert wait_for(lambda: pool_full(engine) and serving.admission.in_flight == 0)
    assert serving.accounting.finished_requests == finished_before


def test_an_engine_process_that_dies_ends_its_streams_and_the_server_says_so(random_model):
    # kept serving, as with --keep-serving-on-engine-failure: by default the server would exit
    # (tests/web/test_engine_death.py), racing the requests below
    server = LiveServer(EngineProcess(random_model, num_kv_blocks=64, max_model_len=1024),
                        ServerSettings(keep_serving_on_engine_failure=True)).start()
    try:
        with httpx.Client(base_url=server.url, timeout=10) as http:
            with http.stream("POST", "/v1/completions", json=_long_stream_body(server.serving.model_id)) as r:
                lines = r.iter_lines()
                assert next(line for line in lines if line.startswith("data: {"))
                os.kill(server.engine.pid, signal.SIGKILL)
                rest = [line for line in lines if line.startswith("data: ")]
            assert '"error"' in rest[-2] and "engine process exited" in rest[-2] and rest[-1] == "data: [DONE]"
            health = http.get("/health")
            assert health.status_code == 503 and "exited" in health.json()["reason"]
            refused = http.post("/v1/completions", json={"prompt": "x", "max_tokens": 2})
            assert refused.status_code == 503 and refused.json()["error"]["code"] == "engine_unavailable"
            assert server.serving.admission.in_flight == 0
    finally:
        server.stop()
