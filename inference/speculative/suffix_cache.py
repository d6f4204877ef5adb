"""The suffix cache: recent outputs of the server, drafting the most frequent continuation of a
sequence's last tokens (SuffixDecoding's idea: agents and editors ask again for what they were
just given, and the answer repeats the last one).

    ring   SEP ctx₁ output₁ SEP ctx₂ output₂ SEP ... (oldest outputs evicted past `max_tokens`)

Each output is stored after the last tokens of its prompt (`ctx`, so that the first tokens of a
repeated answer can be matched too) and indexed by its n-grams. A proposal finds the longest
n-gram ending the sequence that occurred here, and walks forward from all its recent occurrences
at once, like descending a suffix tree: at each step the token most of the still-agreeing
occurrences continue with is drafted, with confidence (its count / the agreeing occurrences,
those that end there included) × the rule of succession on the match so far; occurrences that
continue otherwise drop out. Bounded: `max_tokens` tokens, at most `per_key` occurrences per
n-gram. Outputs are indexed at the next proposal, the newest `index_backlog` tokens of them: a
server that drafts rarely (a large batch) does not index everything it wrote since, and the
older outputs of such a backlog are never matched. Not thread-safe: the engine's one loop owns it.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Sequence
from dataclasses import dataclass

from .draft import SUFFIX, Draft, continuation_confidence
from .ngram_index import NgramIndex

_SEP = -1  # between stored outputs: no n-gram spans it, no draft crosses it


@dataclass(slots=True)
class _Stored:
    """One output in the ring: its tokens (context first) at positions start .. stop - 1; the
    ends from first_end on have an output token after them, so they are what gets indexed."""

    start: int
    first_end: int
    stop: int
    indexed: bool = False


class SuffixCache:
    def __init__(self, max_tokens: int = 1 << 17, *, sizes: Sequence[int] = (2, 3, 4, 6, 8), per_key: int = 32,
                 index_backlog: int = 1 << 13):
        if max_tokens < 1:
            raise ValueError(f"max_tokens must be >= 1, got {max_tokens}")
        self.max_tokens, self.index_backlog = max_tokens, index_backlog
        self._index = NgramIndex(sizes, per_key)
        self._ring: list[int] = [_SEP]
        self._first = 0  # position of _ring[0]; positions only grow
        self._outputs: deque[_Stored] = deque()
        self._unindexed: deque[_Stored] = deque()  # the newest outputs, not indexed yet
        self.num_tokens = 0  # held, contexts and outputs

    @property
    def num_outputs(self) -> int:
        return len(self._outputs)

    @property
    def context_size(self) -> int:
        """How many of a sequence's last tokens a proposal looks at."""
        return self._index.max_n

    def add(self, output: Sequence[int], context: Sequence[int] = ()) -> None:
        """Store a finished output, after the prompt tokens that led to it (only the last max_n
        of `context` are kept). An output longer than the cache keeps its end."""
        if not output:
            return
        tokens = (list(context[-self._index.max_n:]) + list(output))[-self.max_tokens:]
        start = self._position(len(self._ring))
        self._ring.extend(tokens)
        self._ring.append(_SEP)
        stop = start + len(tokens)
        stored = _Stored(start, max(start, stop - len(output) - 1), stop)  # indexed by the next proposal
        self._outputs.append(stored)
        self._unindexed.append(stored)
        self.num_tokens += len(tokens)
        self._evict()

    def _index_outputs(self) -> None:
        """Index the newest outputs stored since the last proposal that fit in index_backlog
        tokens, in order (the index takes positions in increasing order); older ones of the
        backlog stay unindexed until evicted."""
        newest, budget = [], self.index_backlog
        for stored in reversed(self._unindexed):
            if budget <= 0:
                break
            newest.append(stored)
            budget -= stored.stop - stored.start
        for stored in reversed(newest):
            for end in range(stored.first_end, stored.stop - 1):
                self._index.add(self._ngram_window(stored, end), end)
            stored.indexed = True
        self._unindexed.clear()

    def propose(self, context: Sequence[int], max_tokens: int) -> Draft | None:
        """Up to `max_tokens` tokens continuing `context` (the sequence's last tokens)."""
        self._index_outputs()
        found = self._index.longest(context)
        if found is None or max_tokens < 1:
            return None
        n, ends = found
        tail = list(context[-n:])
        # the latest occurrence first, so that it wins ties; a hash collision is no match
        followers = [end + 1 for end in ends if self._window(end - n + 1, end) == tail]
        tokens, confidences = [], []
        while followers and len(tokens) < max_tokens:
            votes = Counter(self._ring[p - self._first] for p in followers)
            votes.pop(_SEP, None)
            if not votes:
                break
            token, count = votes.most_common(1)[0]
            tokens.append(token)
            confidences.append(count / len(followers) * continuation_confidence(n + len(tokens) - 1))
            followers = [p + 1 for p in followers if self._ring[p - self._first] == token]
        return Draft(tuple(tokens), tuple(confidences), SUFFIX) if tokens else None

    def _position(self, ring_index: int) -> int:
        return self._first + ring_index

    def _ngram_window(self, stored: _Stored, end: int) -> list[int]:
        """The tokens whose n-grams end at `end`, within `stored`."""
        return self._window(max(stored.start, end - self._index.max_n + 1), end)

    def _window(self, lo: int, end: int) -> list[int]:
        return self._ring[lo - self._first:end + 1 - self._first]

    def _evict(self) -> None:
        """Drop the oldest outputs until the rest fit; compact the ring when half of it is dead."""
        while self.num_tokens > self.max_tokens:
            stored = self._outputs.popleft()
            self.num_tokens -= stored.stop - stored.start
            if not stored.indexed:  # nothing to forget
                if self._unindexed and self._unindexed[0] is stored:
                    self._unindexed.popleft()
                continue
            for end in range(stored.first_end, stored.stop - 1):
                self._index.forget(self._ngram_window(stored, end), end)
        live = (self._outputs[0].start - 1) if self._outputs else self._position(len(self._ring) - 1)
        self._index.drop_before(live)
        if live - self._first > len(self._ring) // 2:
            del self._ring[:live - self._first]
            self._first = live
