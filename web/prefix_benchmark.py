"""The shared-prefix workload of `codellama bench gateway`: many requests over a few long files,
each ending in a short request of its own below its file, as an editor's completions send them.
Prompts go as text (the gateway routes on text and refuses token ids). Reports TTFT p50 / p99,
the replicas' prefix-cache hit rate over the run (from each replica's own /metrics), how the
requests spread over the replicas, and the gateway's added latency against a replica reached
directly."""

from __future__ import annotations

import asyncio
import contextlib
import random
import time

import httpx
from prometheus_client.parser import text_string_to_metric_families

from inference.tokenizer import Tokenizer

from .serve_benchmark import percentile_ms, stream_one

_COUNTERS = {"codellama:prefix_cache_hits_total": "hits", "codellama:prefix_cache_queries_total": "queries",
             "codellama:generation_tokens_total": "generated"}


def file_texts(tokenizer: Tokenizer, count: int, tokens: int, seed: int) -> list[str]:
    """`count` distinct Python-like files of at least `tokens` tokens each (counted line by line)."""
    rng = random.Random(seed)
    files = []
    for f in range(count):
        lines, total = [f"# module_{seed}_{f}.py"], 0
        while total < tokens:
            j = len(lines)
            line = (f"def f{f}_{j}(x, y={rng.randrange(1000)}):\n"
                    f"    return helper_{rng.randrange(100)}(x) * {rng.randrange(1000)} + y\n")
            lines.append(line)
            total += len(tokenizer.encode(line, bos=False))
        files.append("\n".join(lines))
    return files


def editor_prompts(files: list[str], count: int, seed: int) -> list[str]:
    """`count` prompts, each a random file of `files` with a request of its own below it."""
    rng = random.Random(seed)
    return [f"{rng.choice(files)}\n# request {i}: finish this\ndef task_{i}_{rng.randrange(10**6)}(items):\n    "
            for i in range(count)]


async def drive(url: str, prompts: list[str], *, concurrency: int, max_tokens: int, model: str,
                api_key: str | None = None) -> dict:
    """The prompts in order through `concurrency` streaming clients; TTFT p50 / p99."""
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    queue: asyncio.Queue = asyncio.Queue()
    for prompt in prompts:
        queue.put_nowait(prompt)
    ttfts: list[float] = []
    errors: list[str] = []
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=httpx.Timeout(60.0, read=None),
                                 limits=httpx.Limits(max_connections=concurrency)) as client:

        async def client_loop() -> None:
            while not queue.empty():
                prompt = queue.get_nowait()
                try:
                    ttfts.append((await stream_one(client, prompt, max_tokens, model)).ttft)
                except (httpx.HTTPError, RuntimeError, ValueError, KeyError) as e:
                    errors.append(f"{type(e).__name__}: {e}")

        start = time.perf_counter()
        await asyncio.gather(*(client_loop() for _ in range(concurrency)))
        duration = time.perf_counter() - start
    return {"requests": len(ttfts), "errors": len(errors), "error_samples": errors[:5],
            "duration_s": round(duration, 3), "requests_per_s": round(len(ttfts) / duration, 3),
            "ttft_p50_ms": percentile_ms(ttfts, 50), "ttft_p99_ms": percentile_ms(ttfts, 99)}


def replica_counters(replica_urls: list[str], api_key: str | None = None) -> list[dict[str, float]]:
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    counters = []
    for url in replica_urls:
        text = httpx.get(f"{url}/metrics", headers=headers).raise_for_status().text
        counters.append({_COUNTERS[s.name]: s.value for family in text_string_to_metric_families(text)
                         for s in family.samples if s.name in _COUNTERS})
    return counters


def prefix_cache_use(before: list[dict[str, float]], after: list[dict[str, float]]) -> dict:
    """The hit rate over a run (prompt tokens found in the prefix cache / looked up), in all and
    per replica, and each replica's share of the generated tokens (how the requests spread)."""
    delta = [{k: a[k] - b[k] for k in a} for a, b in zip(after, before)]
    hits, queries = sum(d["hits"] for d in delta), sum(d["queries"] for d in delta)
    generated = sum(d["generated"] for d in delta) or 1
    return {"hit_rate": round(hits / queries, 4) if queries else None,
            "per_replica": [{"hit_rate": round(d["hits"] / d["queries"], 4) if d["queries"] else None,
                             "share_of_tokens": round(d["generated"] / generated, 3)} for d in delta]}


async def added_latency(gateway_url: str, replica_url: str, *, model: str, pairs: int,
                        api_key: str | None = None) -> dict:
    """One short request at a time (one token out), to the replica directly and through the
    gateway by turns; the gateway's cost is the difference of the medians."""
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    body = {"model": model, "prompt": "def add(a, b):", "max_tokens": 1, "temperature": 0.0}
    times: dict[str, list[float]] = {"direct": [], "gateway": []}
    async with contextlib.AsyncExitStack() as stack:
        clients = {name: await stack.enter_async_context(httpx.AsyncClient(base_url=url, headers=headers, timeout=60))
                   for name, url in (("direct", replica_url), ("gateway", gateway_url))}
        for _ in range(pairs + 2):  # the first two pairs open the connections
            for name, client in clients.items():
                start = time.perf_counter()
                (await client.post("/v1/completions", json=body)).raise_for_status()
                times[name].append(time.perf_counter() - start)
    for name in times:
        del times[name][:2]
    result = {f"{name}_p{q}_ms": percentile_ms(values, q) for name, values in times.items() for q in (50, 99)}
    result["added_p50_ms"] = round(result["gateway_p50_ms"] - result["direct_p50_ms"], 3)
    return {"pairs": pairs, **result}
