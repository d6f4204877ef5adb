"""Offline throughput: many requests submitted at once, run to completion."""

from __future__ import annotations

import random
import time

import torch

from ..sampling_params import SamplingParams
from .common import make_engine


def fixed_set(num: int, input_len: int, output_len: int) -> list[tuple[int, int]]:
    return [(input_len, output_len)] * num


def mixed_set(num: int, seed: int = 0) -> list[tuple[int, int]]:
    """Seeded lengths: input 32-2048, output 16-512 tokens."""
    rng = random.Random(seed)
    return [(rng.randint(32, 2048), rng.randint(16, 512)) for _ in range(num)]


def run_set(engine, lengths: list[tuple[int, int]], seed: int, temperature: float = 1.0) -> dict:
    """Submit every request at once and run the engine until all are done."""
    rng = random.Random(seed)
    for i, (n_in, n_out) in enumerate(lengths):
        prompt = [1] + [rng.randrange(3, 4000) for _ in range(n_in - 1)]
        params = SamplingParams(max_tokens=n_out, temperature=temperature, top_p=1.0, ignore_eos=True, seed=i)
        engine.add_request(f"{seed}-{i}", prompt, params)
    decode_times, prefill_times = [], []  # wall time of steps without and with prompt tokens
    stats = engine.stats
    host = (stats.launch_seconds, stats.wait_seconds, stats.output_seconds)
    start = time.perf_counter()
    while engine.has_unfinished:
        prompt_tokens, t0 = engine.stats.prompt_tokens, time.perf_counter()
        engine.step()
        (prefill_times if engine.stats.prompt_tokens > prompt_tokens else decode_times).append(
            time.perf_counter() - t0)
    elapsed = time.perf_counter() - start
    n_in, n_out = sum(a for a, _ in lengths), sum(b for _, b in lengths)
    return {"requests": len(lengths), "input_tokens": n_in, "output_tokens": n_out, "seconds": elapsed,
            "output_tok_s": n_out / elapsed, "total_tok_s": (n_in + n_out) / elapsed,
            "decode_steps": len(decode_times), "decode_seconds": sum(decode_times),
            "prefill_steps": len(prefill_times), "prefill_seconds": sum(prefill_times),
            "host_launch_seconds": stats.launch_seconds - host[0], "host_wait_seconds": stats.wait_seconds - host[1],
            "host_output_seconds": stats.output_seconds - host[2]}


def run(shape: str, num_prompts: int = 1000, input_len: int = 128, output_len: int = 128,
        mixed_prompts: int = 1000, max_num_seqs: int = 256, **settings) -> dict:
    """`settings`: more of the engine's (quantization, kv_cache_dtype, kv_cache_gib)."""
    engine = make_engine(shape, max_num_seqs=max_num_seqs, max_model_len=4096, **settings)
    run_set(engine, fixed_set(max_num_seqs, 64, 8), seed=99)  # warm up
    result = {"shape": shape, "max_num_seqs": max_num_seqs, "kv_blocks": engine.info.num_blocks,
              "fixed": {"input_len": input_len, "output_len": output_len,
                        **run_set(engine, fixed_set(num_prompts, input_len, output_len), seed=1)}}
    if mixed_prompts:
        result["mixed"] = run_set(engine, mixed_set(mixed_prompts, seed=2), seed=2)
    result["preemptions"] = engine.scheduler.num_preemptions
    del engine
    torch.cuda.empty_cache()
    return result
