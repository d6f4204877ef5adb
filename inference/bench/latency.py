"""Batch-1 decode speed against the bandwidth roofline, and time to first token."""

from __future__ import annotations

import random
import time

import torch

from ..sampling_params import SamplingParams
from .common import kv_bytes_per_token, make_engine, shape_config, weight_bytes_per_step


def _prompt(rng: random.Random, length: int) -> list[int]:
    return [1] + [rng.randrange(3, 4000) for _ in range(length - 1)]


def _timed_request(engine, request_id: str, prompt: list[int], max_tokens: int) -> list[float]:
    """For one request running alone, the time until its first token reaches the caller, then
    between each token and the next."""
    engine.add_request(request_id, prompt, SamplingParams(max_tokens=max_tokens, temperature=0, ignore_eos=True))
    times = []
    start = time.perf_counter()
    while engine.has_unfinished:
        for out in engine.step():
            for _ in out.outputs[0].token_ids:
                now = time.perf_counter()
                times.append(now - start)
                start = now
    return times


def run(shape: str, prompt_len: int = 128, new_tokens: int = 256, ttft_lens=(128, 2048), repeats: int = 5,
        copy_bw: float | None = None, enforce_eager: bool = False, **settings) -> dict:
    """`settings`: more of the engine's (quantization, kv_cache_dtype, kv_cache_gib)."""
    cfg = shape_config(shape)
    engine = make_engine(shape, max_num_seqs=8, max_model_len=4096, enforce_eager=enforce_eager, **settings)
    rng = random.Random(0)
    for length in sorted(set(ttft_lens) | {prompt_len}):  # warm up: compile every kernel variant
        _timed_request(engine, f"warm{length}", _prompt(rng, length), 4)
    ttft = {}
    for length in ttft_lens:
        firsts = sorted(_timed_request(engine, f"ttft{length}-{i}", _prompt(rng, length), 1)[0]
                        for i in range(repeats))
        ttft[str(length)] = {"median_ms": 1e3 * firsts[len(firsts) // 2], "min_ms": 1e3 * firsts[0]}
    step_times = _timed_request(engine, "decode", _prompt(rng, prompt_len), new_tokens)
    decode = step_times[1:]
    result = {
        "shape": shape, "prompt_len": prompt_len, "new_tokens": new_tokens, "cuda_graphs": not enforce_eager,
        "ttft": ttft,
        "decode_tok_s": len(decode) / sum(decode),
        "decode_ms_per_token": 1e3 * sum(decode) / len(decode),
        "decode_ms_per_token_median": 1e3 * sorted(decode)[len(decode) // 2],
    }
    if copy_bw:
        # bytes each decode step must read: all weights (as stored: quantized ones count their
        # integers, scales and zeros), and the KV of the context so far
        weights, kv = weight_bytes_per_step(engine.runner.model), kv_bytes_per_token(cfg, engine.config.kv_int8)
        ideal = sum((weights + kv * (prompt_len + i + 1)) / copy_bw for i in range(len(decode)))
        result["roofline_pct"] = 100 * ideal / sum(decode)
    del engine
    torch.cuda.empty_cache()
    return result
