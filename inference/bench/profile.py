"""Where a decode step's GPU time goes: kernel durations from the PyTorch profiler (eager mode,
so that each kernel is seen), summed by kernel name."""

from __future__ import annotations

import random
from collections import defaultdict

import torch
from torch.autograd import DeviceType

from ..sampling_params import SamplingParams
from .common import make_engine


def run(shape: str, batch: int = 1, context: int = 256, steps: int = 5, **settings) -> dict:
    engine = make_engine(shape, max_num_seqs=max(8, batch), max_model_len=4096, enforce_eager=True, **settings)
    rng = random.Random(0)
    for i in range(batch):
        prompt = [1] + [rng.randrange(3, 4000) for _ in range(context - 1)]
        engine.add_request(str(i), prompt, SamplingParams(max_tokens=1024, temperature=0, ignore_eos=True))
    while engine.scheduler.waiting or any(s.num_computed_tokens < s.num_prompt_tokens
                                          for s in engine.scheduler.running):
        engine.step()  # prefill everything first: profile decode steps only
    for _ in range(2):
        engine.step()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
        for _ in range(steps):
            engine.step()
    totals, counts = defaultdict(float), defaultdict(int)
    for e in prof.events():
        if e.device_type == DeviceType.CUDA:
            totals[e.name] += e.time_range.elapsed_us()
            counts[e.name] += 1
    rows = sorted(totals, key=totals.get, reverse=True)
    step_us = sum(totals.values()) / steps
    kernels = [{"kernel": name[:90], "calls_per_step": counts[name] / steps, "us_per_step": totals[name] / steps,
                "pct": 100 * totals[name] / steps / step_us} for name in rows]
    for k in kernels[:25]:
        print(f"{k['us_per_step']:9.1f} us {k['pct']:5.1f}%  x{k['calls_per_step']:5.0f}  {k['kernel']}")
    print(f"GPU time per step: {step_us:.1f} us")
    for i in range(batch):
        engine.abort(str(i))
    while engine.has_unfinished:
        engine.step()
    del engine
    torch.cuda.empty_cache()
    return {"shape": shape, "batch": batch, "context": context, "gpu_us_per_step": step_us, "kernels": kernels}
