"""Prompt lookup: draft what followed an earlier occurrence of the sequence's last tokens in its
own prompt and output. Code edits copy most of the file they were given, and an infill's middle
often echoes its suffix, so a long match there is usually copied on.

The index grows with the sequence (each proposal first indexes the tokens gained since the last),
so a step's lookup costs the same at the 10th token as at the 10,000th. For an infilling prompt the suffix
(which Meta's layouts keep inside the prompt, between ▁<SUF> and ▁<MID>) is the preferred
region: among equally long matches, one whose continuation lies in the suffix wins, and a draft
copied from there stops where the suffix does (never drafting ▁<MID>).
"""

from __future__ import annotations

from collections.abc import Sequence

from .draft import PROMPT, Draft, continuation_confidence
from .ngram_index import NgramIndex


def infill_suffix_span(token_ids: Sequence[int], suffix_id: int, middle_id: int) -> tuple[int, int] | None:
    """[start, end) of an infilling prompt's suffix tokens: after ▁<SUF>, before ▁<MID>, in the
    prefix-suffix-middle and the suffix-prefix-middle layouts alike; None for other prompts."""
    ids = list(token_ids)
    try:
        start = ids.index(suffix_id) + 1
        return start, ids.index(middle_id, start)
    except ValueError:
        return None


class PromptLookup:
    """One sequence's tokens and their n-gram index. `max_match` bounds how far back a match is
    measured (the ranking of candidates and the confidence stop growing there)."""

    def __init__(self, prompt: Sequence[int] = (), *, preferred: tuple[int, int] | None = None,
                 sizes: Sequence[int] = (2, 4, 8), per_key: int = 8, max_match: int = 32):
        self.tokens: list[int] = []
        self._indexed = 0  # positions before this one are indexed
        self.preferred = preferred
        self._index = NgramIndex(sizes, per_key)
        self.max_match = max(max_match, self._index.max_n)
        self.extend(prompt)

    def extend(self, tokens: Sequence[int]) -> None:
        """Append tokens that are final (a prompt chunk, accepted or sampled tokens)."""
        self.tokens.extend(tokens)

    def _index_tokens(self) -> None:
        """Index the positions whose next token, the continuation a match would draft, exists:
        at the next proposal, so that a sequence the cost model never lets draft (a large
        batch) costs nothing here."""
        max_n, tokens = self._index.max_n, self.tokens
        for end in range(self._indexed, len(tokens) - 1):
            self._index.add(tokens[max(0, end - max_n + 1):end + 1], end)
        self._indexed = max(self._indexed, len(tokens) - 1)

    def propose(self, max_tokens: int) -> Draft | None:
        """Up to `max_tokens` tokens copied after the best earlier match of the sequence's last
        tokens: the longest, then one continuing into the preferred region, then the latest."""
        self._index_tokens()
        found = self._index.longest(self.tokens[-self._index.max_n:])
        if found is None or max_tokens < 1:
            return None
        n, ends = found
        lengths = {end: self._match_length(end) for end in ends}
        best = max(ends, key=lambda end: (lengths[end], self._in_preferred(end + 1)))  # ties: the latest
        if lengths[best] < n:
            return None  # a hash collision, not a match
        stop = min(best + 1 + max_tokens, len(self.tokens))
        if self._in_preferred(best + 1):
            stop = min(stop, self.preferred[1])
        tokens, match = self.tokens[best + 1:stop], lengths[best]
        return Draft(tuple(tokens), tuple(continuation_confidence(match + j) for j in range(len(tokens))), PROMPT)

    def _match_length(self, end: int) -> int:
        """How many tokens ending at `end` equal the sequence's last ones."""
        tokens, now, length = self.tokens, len(self.tokens) - 1, 0
        while length < self.max_match and end - length >= 0 and tokens[end - length] == tokens[now - length]:
            length += 1
        return length

    def _in_preferred(self, position: int) -> bool:
        return self.preferred is not None and self.preferred[0] <= position < self.preferred[1]
