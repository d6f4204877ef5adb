"""Speculative decoding end to end on a real shape: a repeated-request workload (each prompt is
asked twice; the second time the suffix cache drafts the first answer, prompt lookup the
repetitions of random weights' greedy loops), timed on its second pass, with speculation off and
on, at several batch sizes. Random weights: acceptance here says nothing of a trained model's."""

from __future__ import annotations

import random
import time

import torch

from ..sampling_params import SamplingParams


def _pass(engine, prompts: list[list[int]], new_tokens: int, tag: str) -> float:
    """Generate every prompt at once; the seconds it took."""
    params = SamplingParams(max_tokens=new_tokens, temperature=0, ignore_eos=True)
    for i, prompt in enumerate(prompts):
        engine.add_request(f"{tag}{i}", prompt, params)
    start = time.perf_counter()
    while engine.has_unfinished:
        engine.step()
    return time.perf_counter() - start


def run(make_engine, step_times: str | None, batch_sizes=(1, 8, 64), prompt_len: int = 128,
        new_tokens: int = 256) -> list[dict]:
    """`make_engine(**settings)` builds an engine of the shape measured; `step_times`: the cost
    model's table (a `codellama bench verify` record)."""
    context = prompt_len + new_tokens + 16
    results, workloads = [], {}
    for mode in ("off", "auto"):
        engine = make_engine(max_num_seqs=max(batch_sizes), max_model_len=context,
                             num_kv_blocks=max(batch_sizes) * 2 * -(-context // 16), speculate=mode,
                             speculative_step_times=step_times)
        if not workloads:  # the same prompts in both modes, of ids the engine's tokenizer has
            rng, vocab = random.Random(0), engine.tokenizer.vocab_size
            workloads = {batch: [[1] + [rng.randrange(3, vocab) for _ in range(prompt_len - 1)] for _ in range(batch)]
                         for batch in batch_sizes}
        for batch, prompts in workloads.items():
            _pass(engine, prompts, new_tokens, f"first{batch}-")
            before = engine.stats.draft_tokens, engine.stats.accepted_tokens, engine.stats.steps
            seconds = _pass(engine, prompts, new_tokens, f"again{batch}-")
            drafted, accepted, steps = (now - then for now, then in zip(
                (engine.stats.draft_tokens, engine.stats.accepted_tokens, engine.stats.steps), before))
            results.append({"mode": mode, "batch": batch, "output_tok_s": batch * new_tokens / seconds,
                            "steps": steps, "drafted": drafted, "accepted": accepted,
                            "acceptance": accepted / drafted if drafted else None})
            print(results[-1], flush=True)
        del engine
        torch.cuda.empty_cache()
    return results
