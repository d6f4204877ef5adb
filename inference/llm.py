"""Offline batch generation: `LLM(model).generate(prompts, params)`."""

from __future__ import annotations

from pathlib import Path

import torch

from .engine import LLMEngine
from .outputs import CompletionOutput, RequestOutput
from .sampling_params import SamplingParams


class LLM:
    def __init__(self, model: str | Path | None = None, *, dtype: str | torch.dtype | None = None,
                 device: str | torch.device | None = None, block_size: int = 16,
                 num_kv_blocks: int | None = None, max_num_seqs: int = 256,
                 max_num_batched_tokens: int | None = None, enable_prefix_caching: bool = True,
                 max_model_len: int | None = None, enforce_eager: bool = False):
        self.engine = LLMEngine(model, dtype=dtype, device=device, block_size=block_size,
                                num_kv_blocks=num_kv_blocks, max_num_seqs=max_num_seqs,
                                max_num_batched_tokens=max_num_batched_tokens,
                                enable_prefix_caching=enable_prefix_caching, max_model_len=max_model_len,
                                enforce_eager=enforce_eager)
        self.tokenizer = self.engine.tokenizer
        self._next_id = 0

    def generate(self, prompts: str | list[str] | list[list[int]],
                 params: SamplingParams | list[SamplingParams] | None = None) -> list[RequestOutput]:
        """Run every prompt to completion, batched; outputs in the order of the prompts. All
        requests are validated before any runs."""
        if isinstance(prompts, str) or (prompts and isinstance(prompts[0], int)):
            prompts = [prompts]
        params = params or SamplingParams()
        if isinstance(params, SamplingParams):
            params = [params] * len(prompts)
        if len(params) != len(prompts):
            raise ValueError(f"{len(prompts)} prompts but {len(params)} sampling params")
        return self.run_requests(list(zip(prompts, params)))

    def run_requests(self, requests: list[tuple[str | list[int], SamplingParams]],
                     continues_prompt: bool = True) -> list[RequestOutput]:
        engine = self.engine
        states = []
        for prompt, p in requests:
            states.append(engine.make_request(str(self._next_id), prompt, p, continues_prompt))
            self._next_id += 1
        results: dict[str, RequestOutput] = {}
        for state in states:
            engine.add(state)
            results[state.request_id] = RequestOutput(
                state.request_id, state.prompt, state.prompt_token_ids,
                [CompletionOutput(i) for i in range(state.params.n)], False, state.metrics)
        while any(not r.finished for r in results.values()):
            for delta in engine.step():
                merged = results[delta.request_id]
                for d in delta.outputs:
                    merged.outputs[d.index].extend(d)
                merged.finished = delta.finished
                merged.num_cached_tokens = delta.num_cached_tokens
        return [results[s.request_id] for s in states]
