"""Load driver for a running server (`codellama bench serve`): N concurrent streaming clients, or
Poisson arrivals at a request rate (still at most N in flight), each sending a random prompt of
exactly `prompt_len` token ids to /v1/completions and reading `max_tokens` tokens back (greedy,
ignore_eos). Reports time to first token (TTFT) and time per output token (TPOT, after the
first) at p50 / p99, and output tokens per second over the whole run; and, where /metrics answers,
how the server's engine spent the run (steps, and host time launching / waiting on the GPU /
making outputs): an engine that waits on the GPU most of the time is not held back by the server."""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
from dataclasses import dataclass

import httpx
import numpy as np
from prometheus_client.parser import text_string_to_metric_families


_TAIL = 16384  # bytes kept from the end of a stream: enough for the usage chunk
_STREAMS_PER_CLIENT = 8  # httpx's pool scans all its connections per request: keep each pool small


@dataclass(slots=True)
class _Result:
    ttft: float
    tpot: float | None
    output_tokens: int


async def stream_one(client: httpx.AsyncClient, prompt: str | list[int], max_tokens: int,
                     model: str | None = None) -> _Result:
    """One streamed request (a gateway in front wants the model named). With hundreds of streams the
    driver must stay cheaper than the server, so reads are only scanned for token chunks (timed)
    and the tail is parsed once at the end."""
    body = {"prompt": prompt, "max_tokens": max_tokens, "temperature": 0.0, "ignore_eos": True, "stream": True,
            "stream_options": {"include_usage": True}, **({"model": model} if model else {})}
    start = time.perf_counter()
    first = last = None
    tail = b""
    async with client.stream("POST", "/v1/completions", json=body) as r:
        if r.status_code != 200:
            raise RuntimeError(f"HTTP {r.status_code}: {(await r.aread())[:200]!r}")
        async for raw in r.aiter_raw():
            if b'"choices":[{' in raw:  # token chunks; the usage chunk has "choices":[]
                last = time.perf_counter()
                first = first or last
            tail = (tail + raw)[-_TAIL:]
    events = [line[6:] for line in tail.decode(errors="replace").splitlines() if line.startswith("data: {")]
    final = json.loads(events[-1]) if events else {}
    if "error" in final:
        raise RuntimeError(final["error"]["message"])
    if first is None or "usage" not in final or final["choices"]:
        raise RuntimeError("the stream ended without tokens or usage")
    tokens = final["usage"]["completion_tokens"]
    return _Result(first - start, (last - first) / (tokens - 1) if tokens > 1 else None, tokens)


_ENGINE_COUNTERS = ("steps", "launch_seconds", "wait_seconds", "output_seconds")


async def _engine_counters(client: httpx.AsyncClient) -> dict[str, float] | None:
    """The server engine's counters from /metrics (None where it is not open to this key)."""
    r = await client.get("/metrics")
    if r.status_code != 200:
        return None
    wanted = {f"codellama:engine_{name}_total": name for name in _ENGINE_COUNTERS}
    return {wanted[s.name]: s.value for family in text_string_to_metric_families(r.text)
            for s in family.samples if s.name in wanted}


def percentile_ms(values: list[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)) * 1000, 3) if values else None


async def run_serve_benchmark(url: str, *, concurrency: int, num_requests: int, prompt_len: int, max_tokens: int,
                              request_rate: float | None = None, api_key: str | None = None,
                              seed: int = 0, text_prompts: list[str] | None = None) -> dict:
    """`text_prompts` (each `prompt_len` tokens long) replace the random token ids: a gateway in
    front of replicas routes on text and refuses token ids (its /v1/models gives no vocabulary)."""
    if concurrency < 1 or num_requests < 1 or prompt_len < 1 or max_tokens < 1:
        raise ValueError("concurrency, num_requests, prompt_len and max_tokens must be >= 1")
    base = url.rstrip("/").removesuffix("/v1")
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    limits = httpx.Limits(max_connections=_STREAMS_PER_CLIENT, max_keepalive_connections=_STREAMS_PER_CLIENT)
    rng = random.Random(seed)
    results: list[_Result] = []
    errors: list[str] = []
    async with contextlib.AsyncExitStack() as stack:
        clients = [await stack.enter_async_context(
            httpx.AsyncClient(base_url=base, headers=headers, timeout=httpx.Timeout(30.0, read=None), limits=limits))
            for _ in range(-(-concurrency // _STREAMS_PER_CLIENT))]
        client = clients[0]
        models = await client.get("/v1/models")
        models.raise_for_status()
        card = models.json()["data"][0]
        if text_prompts is not None:
            if len(text_prompts) != num_requests:
                raise ValueError(f"{len(text_prompts)} text prompts for {num_requests} requests")
            prompts = text_prompts
        elif "vocab_size" in card:
            # distinct random prompts (ids past the control pieces), so the prefix cache gives nothing away
            prompts = [[rng.randrange(3, card["vocab_size"]) for _ in range(prompt_len)] for _ in range(num_requests)]
        else:
            raise ValueError(f"{url} gives no vocabulary (a gateway?): pass text prompts")
        arrivals: asyncio.Queue = asyncio.Queue()
        counters_before = await _engine_counters(client)

        async def worker(client: httpx.AsyncClient) -> None:
            """One of `concurrency` clients: takes the next arrived prompt until none is left."""
            while (prompt := await arrivals.get()) is not None:
                try:
                    results.append(await stream_one(client, prompt, max_tokens, card["id"]))
                except (httpx.HTTPError, RuntimeError, ValueError, KeyError) as e:
                    errors.append(f"{type(e).__name__}: {e}")

        start = time.perf_counter()
        workers = [asyncio.create_task(worker(clients[w // _STREAMS_PER_CLIENT])) for w in range(concurrency)]
        for i, prompt in enumerate(prompts):
            if request_rate and i:
                await asyncio.sleep(rng.expovariate(request_rate))
            arrivals.put_nowait(prompt)
        for _ in workers:
            arrivals.put_nowait(None)
        await asyncio.gather(*workers)
        duration = time.perf_counter() - start
        counters_after = await _engine_counters(client)
    ttfts = [r.ttft for r in results]
    tpots = [r.tpot for r in results if r.tpot is not None]
    output_tokens = sum(r.output_tokens for r in results)
    return {
        "requests": len(results), "errors": len(errors), "error_samples": errors[:5],
        "concurrency": concurrency, "request_rate": request_rate, "prompt_len": prompt_len, "max_tokens": max_tokens,
        "duration_s": round(duration, 3), "output_tokens": output_tokens,
        "output_tok_per_s": round(output_tokens / duration, 2), "requests_per_s": round(len(results) / duration, 3),
        "ttft_p50_ms": percentile_ms(ttfts, 50), "ttft_p99_ms": percentile_ms(ttfts, 99),
        "tpot_p50_ms": percentile_ms(tpots, 50), "tpot_p99_ms": percentile_ms(tpots, 99),
        "server_engine": counters_before and counters_after and
        {name: round(counters_after[name] - counters_before[name], 3) for name in _ENGINE_COUNTERS},
    }
