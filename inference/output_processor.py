"""Turns one sequence's sampled tokens into streamed text: detokenizes, finds stop strings
across token boundaries, and holds back only text that could still become a stop string."""

from __future__ import annotations

from .detokenizer import IncrementalDetokenizer
from .outputs import CompletionOutput, TokenLogprob


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
    longest = 0
    for s in stops:
        for k in range(min(len(s) - 1, len(text)), longest, -1):
            if text.endswith(s[:k]):
                longest = k
                break
    return longest


class SequenceOutput:
    """The text side of a sequence: what was generated and what has been handed out."""

    __slots__ = ("index", "detokenizer", "stops", "text", "sent_chars", "new_token_ids", "new_logprobs",
                 "matched_stop")

    def __init__(self, index: int, detokenizer: IncrementalDetokenizer, stops: list[str]):
        self.index = index
        self.detokenizer = detokenizer
        self.stops = stops
        self.text = ""
        self.sent_chars = 0
        self.new_token_ids: list[int] = []
        self.new_logprobs: list[TokenLogprob] | None = None
        self.matched_stop = False

    def add_token(self, token_id: int, logprob: TokenLogprob | None, is_stop_token: bool) -> bool:
        """Append a sampled token; True when a stop string ends in the text it completes (the
        text is then cut where the stop string begins)."""
        self.new_token_ids.append(token_id)
        if logprob is not None:
            self.new_logprobs = (self.new_logprobs or []) + [logprob]
        if is_stop_token:  # EOS or a stop_token_id: its text is not part of the output
            return False
        piece = self.detokenizer.push(token_id)
        if not piece:
            return False
        new_from = len(self.text)
        self.text += piece
        if self.stops:
            at = find_stop(self.text, new_from, self.stops)
            if at >= 0:
                self.text = self.text[:at]
                self.matched_stop = True
                return True
        return False

    def take_delta(self, finish_reason: str | None) -> CompletionOutput:
        """What is new since the last delta. Until the end, text that might be the start of a
        stop string is held back; at the end the detokenizer's pending bytes are flushed, except
        after a stop string."""
        if finish_reason is None:
            end = len(self.text) - partial_stop_length(self.text, self.stops)
        else:
            if not self.matched_stop:
                self.text += self.detokenizer.flush()
            end = len(self.text)
        end = max(end, self.sent_chars)
        delta = CompletionOutput(self.index, self.text[self.sent_chars:end], self.new_token_ids,
                                 finish_reason, self.new_logprobs)
        self.sent_chars = end
        self.new_token_ids, self.new_logprobs = [], None
        return delta
