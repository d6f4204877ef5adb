"""Turns one sequence's sampled tokens into streamed text: detokenizes, decides when it stops
(stop tokens, stop strings across token boundaries, length), and holds back only text that could
still become a stop string.

Only the text not yet handed out is kept: a stop string can begin no earlier than that (what
could begin one is held back), so each token costs time in its own length and the stop
strings', never in the length of the text generated so far."""

from __future__ import annotations

from .detokenizer import IncrementalDetokenizer
from .outputs import CompletionOutput, TokenLogprob
from .sampling_params import SamplingParams


def find_stop(text: str, new_from: int, stops: list[str]) -> int:
    """Index of the earliest stop string ending in text[new_from:], or -1."""
    best = -1
    for s in stops:
        i = text.find(s, max(0, new_from - len(s) + 1))
        if i >= 0 and (best < 0 or i < best):
            best = i
    return best


def partial_stop_length(text: str, stops: list[str]) -> int:
    """Length of the longest tail of text that is a proper prefix of some stop string."""
    if not text:
        return 0
    last, longest = text[-1], 0
    for s in stops:
        # only a prefix ending in text's last character can match: try those, longest first
        k = s.rfind(last, 0, min(len(s) - 1, len(text))) + 1
        while k > longest:
            if text.endswith(s[:k]):
                longest = k
                break
            k = s.rfind(last, 0, k - 1) + 1
    return longest


class SequenceOutput:
    """The text side of a sequence, and the one place where it is decided that a sequence stops:
    at EOS or a stop token, at a stop string, at max_tokens or at the end of the context window."""

    __slots__ = ("index", "detokenizer", "stops", "stop_ids", "max_tokens", "max_model_len", "num_prompt_tokens",
                 "num_output_tokens", "unsent",
                 "new_token_ids", "new_logprobs", "matched_stop")

    def __init__(self, index: int, detokenizer: IncrementalDetokenizer, params: SamplingParams,
                 eos_id: int | None, num_prompt_tokens: int, max_model_len: int):
        self.index = index
        self.detokenizer = detokenizer
        self.stops = params.stop
        self.stop_ids = set(params.stop_token_ids) | ({eos_id} if eos_id is not None and not params.ignore_eos else set())
        self.max_tokens = params.max_tokens
        self.max_model_len = max_model_len
        self.num_prompt_tokens = num_prompt_tokens
        self.num_output_tokens = 0
        self.unsent = ""  # generated, not yet handed out
        self.new_token_ids: list[int] = []
        self.new_logprobs: list[TokenLogprob] | None = None
        self.matched_stop = False

    def add_token(self, token_id: int, logprob: TokenLogprob | None) -> str | None:
        """Append a sampled token; the reason the sequence ends with it ("stop" or "length"), or
        None. A stop string cuts the text where it begins."""
        self.new_token_ids.append(token_id)
        self.num_output_tokens += 1
        if logprob is not None:
            self.new_logprobs = (self.new_logprobs or []) + [logprob]
        if token_id in self.stop_ids:  # its text is not part of the output
            return "stop"
        new_from = len(self.unsent)
        self.unsent += self.detokenizer.push(token_id)
        if self.stops and len(self.unsent) > new_from:
            at = find_stop(self.unsent, new_from, self.stops)
            if at >= 0:
                self.unsent = self.unsent[:at]
                self.matched_stop = True
                return "stop"
        if self.max_tokens is not None and self.num_output_tokens >= self.max_tokens:
            return "length"
        if self.num_prompt_tokens + self.num_output_tokens >= self.max_model_len:
            return "length"
        return None

    def take_delta(self, finish_reason: str | None) -> CompletionOutput:
        """What is new since the last delta. Until the end, text that might be the start of a
        stop string is held back; at the end the detokenizer's pending bytes are flushed, except
        after a stop string."""
        if finish_reason is None:
            end = len(self.unsent) - partial_stop_length(self.unsent, self.stops)
        else:
            if not self.matched_stop:
                self.unsent += self.detokenizer.flush()
            end = len(self.unsent)
        delta = CompletionOutput(self.index, self.unsent[:end], self.new_token_ids, finish_reason, self.new_logprobs)
        self.unsent = self.unsent[end:]
        self.new_token_ids, self.new_logprobs = [], None
        return delta
