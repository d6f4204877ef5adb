"""Clients that leave at random moments on every streaming route, and more clients than the
server holds: afterwards every KV block is free, every gauge is 0, nothing answered 5xx, and the
server serves as before."""

from __future__ import annotations

import asyncio
import random
import re

import httpx
import pytest

from tests.web.conftest import LiveServer, pool_full, wait_for
from web.settings import ServerSettings

from .conftest import scripted_engine

CHAT = [{"role": "user", "content": "hi"}]
LONG = {"max_tokens": 200, "ignore_eos": True}
STREAMS = [
    ("/v1/completions", {"prompt": "import os", "stream": True, **LONG}),
    ("/v1/completions", {"prompt": ["a", "b"], "n": 2, "stream": True, **LONG}),
    ("/v1/chat/completions", {"messages": CHAT, "stream": True, **LONG}),
    ("/infill", {"input_prefix": "def f(x):\n", "input_suffix": "\n", "n_predict": 200, "ignore_eos": True,
                 "stream": True}),
    ("/v1/completions", {"prompt": "import re", **LONG}),  # whole answers: the client times out
]


@pytest.fixture(scope="module")
def server(script_model):
    engine = scripted_engine(script_model[1], num_kv_blocks=256, max_num_seqs=16)
    server = LiveServer(engine, ServerSettings(max_queue=256)).start()
    yield server
    server.stop()


async def _read_a_little(r: httpx.Response, rng: random.Random) -> None:
    events = rng.randint(0, 4)
    async for _ in r.aiter_lines():
        events -= 1
        if events < 0:
            break


async def _leave_early(client: httpx.AsyncClient, rng: random.Random, statuses: list[int]) -> None:
    if rng.random() < 0.2:  # the playground: start an answer, then leave its stream once it has begun
        r = await client.post("/playground/complete", data={"prompt": "import os", "max_tokens": "200"})
        statuses.append(r.status_code)
        async with client.stream("GET", re.search(r"/playground/stream/\w+", r.text).group(0)) as r:
            statuses.append(r.status_code)
            await _read_a_little(r, rng)
        return
    path, body = rng.choice(STREAMS)
    try:  # the client may leave before the answer's first byte, or while it streams
        async with asyncio.timeout(rng.uniform(0.01, 0.4)):
            async with client.stream("POST", path, json=body) as r:
                statuses.append(r.status_code)
                await _read_a_little(r, rng)
    except TimeoutError:
        pass


async def test_a_disconnect_storm_leaves_nothing_behind(server):
    rng, statuses = random.Random(7), []
    limits = httpx.Limits(max_connections=24)
    async with httpx.AsyncClient(base_url=server.url, limits=limits, timeout=30) as client:
        for _ in range(10):
            await asyncio.gather(*(_leave_early(client, rng, statuses) for _ in range(30)))
    assert len(statuses) >= 100 and not [s for s in statuses if s >= 500]  # of 300 (the rest left sooner)
    assert wait_for(lambda: pool_full(server.engine), timeout=30)
    gauges, serving = server.engine.gauges(), server.serving
    assert (gauges.running, gauges.waiting, gauges.kv_usage, serving.admission.in_flight) == (0, 0, 0, 0)
    assert not serving.generations
    with httpx.Client(base_url=server.url, timeout=30) as http:
        assert http.post("/v1/completions", json={"prompt": "x", "max_tokens": 3}).status_code == 200
        metrics = http.get("/metrics").text
    assert re.search(r"^codellama:num_requests_running 0\.0$", metrics, re.M)
    assert re.search(r"^codellama:num_sequences_admitted 0\.0$", metrics, re.M)


async def test_overload_is_answered_with_429_and_retry_after_never_5xx(script_model):
    engine = scripted_engine(script_model[1], max_num_seqs=2)
    server = LiveServer(engine, ServerSettings(max_queue=2, retry_after=3)).start()
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=60) as client:
            answers = await asyncio.gather(*(client.post("/v1/completions", json={"prompt": f"x{i}", **LONG})
                                             for i in range(40)))
        statuses = [r.status_code for r in answers]
        assert set(statuses) == {200, 429} and statuses.count(200) >= 4
        assert all(r.headers["retry-after"] == "3" and r.json()["error"]["code"] == "queue_full"
                   for r in answers if r.status_code == 429)
        assert wait_for(lambda: pool_full(engine)) and server.serving.admission.in_flight == 0
    finally:
        server.stop()
