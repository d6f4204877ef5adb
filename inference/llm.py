"""Offline batch generation: `LLM(model).generate(prompts, params)`, plus Code Llama's other
abilities: `infill(prefix, suffix, params)` and `chat(messages, params)`."""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path

import torch

from .engine import LLMEngine
from .outputs import CompletionOutput, RequestOutput
from .prompts import Prompt, chat_prompt, infill_prompt
from .sampling_params import SamplingParams


@dataclass(slots=True)
class InfillOutput(RequestOutput):
    """An infilling request's output: each completion's text is the middle that fills the hole."""

    prefix: str = ""
    suffix: str = ""

    @property
    def full_texts(self) -> list[str]:
        """The whole filled code, one per completion: prefix + middle + suffix."""
        return [self.prefix + o.text + self.suffix for o in self.outputs]

    @property
    def full_text(self) -> str:
        return self.full_texts[0]


class LLM:
    def __init__(self, model: str | Path | None = None, *, dtype: str | torch.dtype | None = None,
                 device: str | torch.device | None = None, block_size: int = 16,
                 num_kv_blocks: int | None = None, max_num_seqs: int = 256,
                 max_num_batched_tokens: int | None = None, enable_prefix_caching: bool = True,
                 max_model_len: int | None = None, enforce_eager: bool = False,
                 model_name: str | None = None, capabilities: list[str] | None = None,
                 tensor_parallel_size: int = 1):
        self.engine = LLMEngine(model, dtype=dtype, device=device, block_size=block_size,
                                num_kv_blocks=num_kv_blocks, max_num_seqs=max_num_seqs,
                                max_num_batched_tokens=max_num_batched_tokens,
                                enable_prefix_caching=enable_prefix_caching, max_model_len=max_model_len,
                                enforce_eager=enforce_eager, model_name=model_name, capabilities=capabilities,
                                tensor_parallel_size=tensor_parallel_size)
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

    def infill(self, prefix: str, suffix: str, params: SamplingParams | None = None,
               suffix_first: bool = False) -> InfillOutput:
        """Fill the code between `prefix` and `suffix` (a model with the infilling ability)."""
        self.engine.model_info.require("infilling")
        out = self._run_prompt(infill_prompt(self.tokenizer, prefix, suffix, suffix_first), params)
        return InfillOutput(*(getattr(out, f.name) for f in fields(RequestOutput)), prefix=prefix, suffix=suffix)

    def chat(self, messages: list[dict], params: SamplingParams | None = None) -> RequestOutput:
        """Answer the last user message of a dialog (an Instruct model); the answer is
        `outputs[0].text`."""
        self.engine.model_info.require("chat")
        return self._run_prompt(chat_prompt(self.tokenizer, messages), params)

    def _run_prompt(self, prompt: Prompt, params: SamplingParams | None) -> RequestOutput:
        params = prompt.sampling_params(params or SamplingParams())
        return self.run_requests([(prompt.token_ids, params)], prompt.continues_prompt)[0]

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
                results[delta.request_id].merge(delta)
        return [results[s.request_id] for s in states]
