"""Serving speed: a real `codellama serve` process driven over HTTP by concurrent streaming
clients, against the offline engine's throughput at the same concurrency and lengths."""

from __future__ import annotations

import asyncio
import gc
import os
import re
import subprocess
import sys
import threading
from collections import deque

import torch

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


def start_server(shape: str, concurrency: int, quantization: str | None = None,
                 kv_cache_dtype: str = "auto") -> tuple[subprocess.Popen, str, deque]:
    """A `codellama serve` process on a free port; its URL; the last lines it printed. Its output
    is read to the end on a thread, so that its log never fills the pipe and blocks it."""
    cmd = [sys.executable, "-m", "inference.cli", "serve", str(random_model_dir(shape)), "--load-format", "random",
           "--instance-num", str(concurrency), "--max-queue", "100000", "--max-model-len", "4096", "--port", "0",
           "--kv-cache-dtype", kv_cache_dtype] + (["--quant", quantization] if quantization else [])
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    tail: deque = deque(maxlen=40)
    for line in proc.stdout:
        tail.append(line)
        found = re.search(r" at (http://\S+)", line)
        if found:
            threading.Thread(target=lambda: tail.extend(proc.stdout), daemon=True).start()
            return proc, found.group(1), tail
    raise RuntimeError(f"the server exited before listening (code {proc.wait()}):\n{''.join(tail)}")


def run(shape: str, concurrency: int = 256, num_prompts: int = 1000, input_len: int = 128,
        output_len: int = 128, url: str | None = None, **settings) -> dict:
    """`settings`: more of the engine's (quantization, kv_cache_dtype), for both runs."""
    from web.serve_benchmark import run_serve_benchmark

    def drive(target: str) -> dict:
        return asyncio.run(run_serve_benchmark(target, concurrency=concurrency, num_requests=num_prompts,
                                               prompt_len=input_len, max_tokens=output_len))

    if url:
        return {"url": url, "serving": drive(url)}
    offline = offline_reference(shape, concurrency, num_prompts, input_len, output_len, **settings)
    proc, url, log = start_server(shape, concurrency, **settings)
    try:
        drive(url)  # warm up the server (kernel variants, connection pool) on the same load
        serving = drive(url)
    except BaseException:
        print("".join(log), file=sys.stderr)
        raise
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    return {"shape": shape, "offline": offline, "serving": serving,
            "serving_over_offline": serving["output_tok_per_s"] / offline["output_tok_s"]}
