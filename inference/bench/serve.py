"""Serving speed: a real `codellama serve` process (with `dp` > 1: replicas behind the gateway)
driven over HTTP by concurrent streaming clients, against the offline engine's throughput at the
same concurrency and lengths."""

from __future__ import annotations

import asyncio
import gc
import os
import random
import re
import subprocess
import sys
import threading
from collections import deque

import torch

from ..model_source import ASSETS
from ..tokenizer import Tokenizer
from .common import make_engine, random_model_dir
from .throughput import fixed_set, run_set


def offline_reference(shape: str, concurrency: int, num_prompts: int, input_len: int, output_len: int,
                      **settings) -> dict:
    engine = make_engine(shape, max_num_seqs=concurrency, max_model_len=4096, **settings)
    run_set(engine, fixed_set(concurrency, 64, 8), seed=99, temperature=0)  # warm up
    result = run_set(engine, fixed_set(num_prompts, input_len, output_len), seed=1, temperature=0)
    del engine
    gc.collect()
    torch.cuda.empty_cache()  # the server process needs the memory
    return result


def start_server(shape: str, concurrency: int, quantization: str | None = None, kv_cache_dtype: str = "auto",
                 kv_cache_gib: float | None = None, dp: int = 1, tp: int = 1, speculate: str = "off",
                 speculative_step_times: str | None = None) -> tuple[subprocess.Popen, str, deque]:
    """A `codellama serve` process on a free port; its URL (the gateway's with `dp` > 1: the line
    that starts with `codellama serve`, not a replica's); the last lines it printed. Its output is
    read to the end on a thread, so that its log never fills the pipe and blocks it."""
    cmd = [sys.executable, "-m", "inference.cli", "serve", str(random_model_dir(shape)), "--load-format", "random",
           "--instance-num", str(concurrency), "--max-queue", "100000", "--max-model-len", "4096", "--port", "0",
           "--kv-cache-dtype", kv_cache_dtype, "--dp", str(dp), "--tp", str(tp)]
    cmd += ["--quant", quantization] if quantization else []
    cmd += ["--kv-cache-gib", str(kv_cache_gib)] if kv_cache_gib else []
    cmd += ["--speculate", speculate] + (["--speculative-step-times", speculative_step_times]
                                         if speculative_step_times else [])
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    tail: deque = deque(maxlen=40)
    for line in proc.stdout:
        tail.append(line)
        found = re.match(r"codellama serve(?: --dp \d+)?: .* at (http://\S+)", line)
        if found:
            threading.Thread(target=lambda: tail.extend(proc.stdout), daemon=True).start()
            return proc, found.group(1), tail
    raise RuntimeError(f"the server exited before listening (code {proc.wait()}):\n{''.join(tail)}")


def text_prompts(count: int, length: int, seed: int = 0) -> list[str]:
    """Random prompts as text, each exactly `length` tokens in the embedded tokenizer (the one the
    benchmark models have): words that are one piece each, joined by spaces, so no two share a
    prefix worth caching."""
    tok = Tokenizer(ASSETS / "tokenizer.model")
    words = [piece[1:] for piece in (tok.sp.id_to_piece(i) for i in range(tok.vocab_size))
             if piece.startswith("\u2581") and piece[1:].isalpha()]
    words = [w for w in words if len(tok.encode(w, bos=False)) == 1]
    rng = random.Random(seed)
    prompts = [" ".join(rng.choice(words) for _ in range(length)) for _ in range(count)]
    assert all(len(tok.encode(p, bos=False)) == length for p in prompts[:8])
    return prompts


def _gives_vocabulary(url: str) -> bool:
    """A gateway's /v1/models gives the model's name only, and it takes prompts as text only."""
    import httpx

    return "vocab_size" in httpx.get(f"{url.rstrip('/').removesuffix('/v1')}/v1/models").json()["data"][0]


def engine_counters(url: str) -> dict[str, float]:
    """The server's engine counters from /metrics (both runs together: the warm-up's and the
    measured one's): steps, drafted and accepted tokens, host seconds."""
    import httpx
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(f"{url.rstrip('/').removesuffix('/v1')}/metrics").text
    return {s.name.removeprefix("codellama:"): s.value for family in text_string_to_metric_families(text)
            for s in family.samples if s.name.startswith("codellama:") and s.name.endswith("_total")}


def run(shape: str, concurrency: int = 256, num_prompts: int = 1000, input_len: int = 128,
        output_len: int = 128, url: str | None = None, dp: int = 1, tp: int = 1, **settings) -> dict:
    """`settings`: more of the engine's (quantization, kv_cache_dtype, kv_cache_gib, speculate,
    speculative_step_times), for both runs; `dp` > 1: the server is that many replicas behind the
    gateway."""
    from web.serve_benchmark import run_serve_benchmark

    def drive(target: str, seed: int = 0) -> dict:
        texts = None if _gives_vocabulary(target) else text_prompts(num_prompts, input_len, seed)
        return asyncio.run(run_serve_benchmark(target, concurrency=concurrency, num_requests=num_prompts,
                                               prompt_len=input_len, max_tokens=output_len, seed=seed,
                                               text_prompts=texts))

    if url:
        return {"url": url, "serving": drive(url)}
    offline = offline_reference(shape, concurrency, num_prompts, input_len, output_len, **settings)
    proc, url, log = start_server(shape, concurrency, dp=dp, tp=tp, **settings)
    try:
        drive(url, seed=1)  # warm up the server (kernel variants, connection pool) on the same load
        serving = drive(url)
        if dp == 1:
            serving["engine_counters"] = engine_counters(url)
    except BaseException:
        print("".join(log), file=sys.stderr)
        raise
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    return {"shape": shape, "dp": dp, "tp": tp, "offline": offline, "serving": serving,
            "serving_over_offline": serving["output_tok_per_s"] / offline["output_tok_s"]}
