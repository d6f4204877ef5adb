"""Under load: many concurrent streams stay independent and exact; a client that goes away has its
request aborted and its KV blocks freed."""

from __future__ import annotations

import asyncio

import httpx
import openai

from .conftest import pool_full, wait_for


async def _streamed_text(client: openai.AsyncOpenAI, model: str, prompt: str, seed: int) -> tuple[str, str]:
    stream = await client.completions.create(model=model, prompt=prompt, max_tokens=16, temperature=0.9, seed=seed,
                                             stream=True, extra_body={"ignore_eos": True})
    text, reason = "", None
    async for chunk in stream:
        text += chunk.choices[0].text
        reason = chunk.choices[0].finish_reason or reason
    return text, reason


async def test_64_concurrent_streams_each_equal_their_solo_run(random_server):
    model = random_server.serving.model_id
    prompts = [f"def f{i}(x):\n    return x * {i}" for i in range(64)]
    async with openai.AsyncOpenAI(base_url=random_server.url + "/v1", api_key="-", max_retries=0) as client:
        together = await asyncio.gather(*(_streamed_text(client, model, p, seed) for seed, p in enumerate(prompts)))
        alone = [await _streamed_text(client, model, p, seed) for seed, p in enumerate(prompts)]
    assert together == alone
    assert all(reason == "length" and text for text, reason in together)
    assert len(set(together)) > 32  # different prompts and seeds give different texts
    assert wait_for(lambda: pool_full(random_server.engine))


def _long_stream_body(model: str) -> dict:
    return {"model": model, "prompt": "import os", "max_tokens": 1000, "ignore_eos": True, "stream": True}


def test_a_client_leaving_mid_stream_aborts_its_request_and_frees_its_blocks(random_server):
    engine, serving = random_server.engine, random_server.serving
    before = engine.stats.generation_tokens
    finished_before = serving.accounting.finished_requests
    with httpx.Client(base_url=random_server.url, timeout=10) as http:
        with http.stream("POST", "/v1/completions", json=_long_stream_body(serving.model_id)) as r:
            assert r.status_code == 200
            events = 0
            for line in r.iter_lines():
                events += line.startswith("data: ")
                if events == 3:
                    break
            assert engine.requests  # still generating when the client leaves
        steps_at_close = engine.stats.steps
    assert wait_for(lambda: pool_full(engine))
    # aborted before the next step or so (a loaded machine may take a few to notice the closed socket)
    assert engine.stats.steps - steps_at_close <= 5
    assert engine.stats.generation_tokens - before < 100
    assert serving.accounting.finished_requests == finished_before
    assert serving.admission.in_flight == 0 and not serving.generations


def test_a_client_leaving_a_non_streamed_request_aborts_it_too(random_server):
    engine, serving = random_server.engine, random_server.serving
    finished_before = serving.accounting.finished_requests
    body = {**_long_stream_body(serving.model_id), "stream": False}
    with httpx.Client(base_url=random_server.url, timeout=httpx.Timeout(10, read=0.3)) as http:
        try:
            http.post("/v1/completions", json=body)
            raise AssertionError("1000 tokens should take longer than the read timeout")
        except httpx.ReadTimeout:
            pass
    assert wait_for(lambda: pool_full(engine))
    assert serving.accounting.finished_requests == finished_before
    assert serving.admission.in_flight == 0
