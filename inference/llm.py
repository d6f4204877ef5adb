"""Offline batch generation: `LLM(model).generate(prompts, params)`, plus Code Llama's other
abilities: `infill(prefix, suffix, params)` and `chat(messages, params)`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .config import EngineConfig
from .engine import LLMEngine
from .outputs import EngineOutput, RequestOutput
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
    def __init__(self, model: str | Path | EngineConfig | None = None, **settings):
        """`LLM(model, **settings)` takes exactly what the engine does: EngineConfig's fields."""
        self.engine = LLMEngine(model, **settings)
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
        prompt = infill_prompt(self.tokenizer, prefix, suffix, suffix_first)
        out = self._run_prompt(prompt, params)
        return InfillOutput.of(out, None, out.prompt_token_ids, prefix=prefix, suffix=suffix)

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
        made = []
        for prompt, p in requests:
            made.append(engine.make_request(str(self._next_id), prompt, p, continues_prompt))
            self._next_id += 1
        results: dict[str, EngineOutput] = {}
        for request in made:
            engine.add(request)
        while engine.has_unfinished:
            for delta in engine.step():
                whole = results.get(delta.request_id)
                results[delta.request_id] = delta if whole is None else whole.merge(delta)
        return [RequestOutput.of(results[r.request_id], prompt, r.prompt_token_ids)
                for r, (prompt, _) in zip(made, requests)]
