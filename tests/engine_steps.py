"""Driving the engine step by step with chosen (teacher-forced) tokens, to read its logits."""

from __future__ import annotations

import torch

from inference.engine import LLMEngine
from inference.sampling_params import SamplingParams


def logits_per_step(engine: LLMEngine, prompts: list[list[int]], steps: int,
                    forced: list[list[int]]) -> list[list[torch.Tensor]]:
    """Prefill all prompts together, then decode `steps` tokens feeding `forced` tokens; the
    raw logits each sequence gets at every step (float32, on the CPU)."""
    params = SamplingParams(max_tokens=steps + 1, temperature=0)
    requests = [engine.make_request(f"forced{i}", p, params) for i, p in enumerate(prompts)]
    for r in requests:
        engine.add(r)
    seqs = [engine.requests[r.request_id].seqs[0] for r in requests]
    got = [[] for _ in prompts]
    for step in range(steps + 1):
        batch = engine.scheduler.schedule()
        logits, inputs = engine.runner.forward(batch)
        rows = inputs.sample_seqs
        sampled: list[list[int] | None] = [None] * len(batch)
        for row, i in enumerate(rows):
            k = seqs.index(batch.seqs[i])
            got[k].append(logits[row].float().cpu())
            sampled[i] = [forced[k][len(got[k]) - 1]]
        engine.scheduler.postprocess(batch, sampled)
    for r in requests:
        engine.abort(r.request_id)
    return got
