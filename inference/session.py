"""One console conversation with a model through one of its abilities: builds each input's
prompt, streams the answer from the engine's step loop, and keeps the chat history."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass

from .engine import LLMEngine
from .prompts import DEFAULT_SYSTEM, Prompt, chat_prompt, infill_prompt, python_prompt, replayed_chat, split_fill
from .sampling_params import SamplingParams


@dataclass(slots=True)
class Answer:
    prompt_token_ids: list[int]
    text: str = ""
    finish_reason: str | None = None  # "stop", "length", or "abort" when interrupted
    full_text: str | None = None  # infilling: the whole filled code


class Session:
    def __init__(self, engine: LLMEngine, ability: str, params: SamplingParams, *,
                 system: str | None = DEFAULT_SYSTEM, suffix_first: bool = False, stop_at_top_level: bool = False):
        engine.model_info.require(ability)
        if ability == "infilling":
            engine.tokenizer.infill_id("middle")  # a clear error now if the tokenizer cannot infill
        self.engine, self.ability, self.params = engine, ability, params
        self.system = system or None
        self.suffix_first, self.stop_at_top_level = suffix_first, stop_at_top_level
        self.history: list[dict] = []  # chat: past user and assistant messages
        self._ids = itertools.count()

    def reset(self) -> None:
        self.history.clear()

    def ask(self, text: str, on_text: Callable[[str], None], interrupted: Callable[[], bool]) -> Answer:
        """Generate the answer to one input, passing its text to `on_text` as it streams. When
        `interrupted()` turns true the request is aborted (its KV blocks freed) before the next
        step. Raises ValueError for an input the ability cannot take."""
        prompt = self._prompt(text)
        request_id = f"console-{next(self._ids)}"
        self.engine.add(self.engine.make_request(request_id, prompt.token_ids, prompt.sampling_params(self.params),
                                                 prompt.continues_prompt))
        answer = Answer(prompt.token_ids)
        try:
            while request_id in self.engine.requests and not interrupted():
                for out in self.engine.step():
                    delta = out.outputs[0]
                    answer.text += delta.text
                    answer.finish_reason = delta.finish_reason or answer.finish_reason
                    on_text(delta.text)
        finally:
            if request_id in self.engine.requests:
                self.engine.abort(request_id)
                answer.finish_reason = "abort"
        if self.ability == "infilling":
            prefix, suffix = split_fill(text)
            answer.full_text = prefix + answer.text + suffix
        if self.ability == "chat" and answer.finish_reason != "abort":  # an interrupted turn is forgotten
            self.history += [{"role": "user", "content": text}, {"role": "assistant", "content": answer.text}]
        return answer

    def _prompt(self, text: str) -> Prompt:
        tok = self.engine.tokenizer
        if self.ability == "infilling":
            return infill_prompt(tok, *split_fill(text), suffix_first=self.suffix_first)
        if self.ability == "chat":
            system = [{"role": "system", "content": self.system}] if self.system else []
            return chat_prompt(tok, replayed_chat(tok, system + self.history + [{"role": "user", "content": text}]))
        return python_prompt(tok, text, self.stop_at_top_level)  # completion or python: plain code completion
