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

from .draft import SUFFIX, Draft, continuation_confidence
from .ngram_index import NgramIndex

_SEP = -1  # between stored outputs: no n-gram spans it, no draft crosses it


class SuffixCache:
    def __init__(self, max_tokens: int = 1 << 17, *, sizes: Sequence[int] = (2, 3, 4, 6, 8), per_key: int = 32,
                 index_backlog: int = 1 << 13):
        if max_tokens < 1:
            raise ValueError(f"max_tokens must be >= 1, got {max_tokens}")
        self.max_tokens, self.index_backlog = max_tokens, index_backlog
        self._index = NgramIndex(sizes, per_key)
        self._ring: list[int] = [_SEP]
        self._first = 0  # position of _ring[0]; positions only grow
        # [start, first end to index, stop, indexed] per output, and the newest ones not indexed yet
        self._outputs: deque[list] = deque()
        self._unindexed: deque[list] = deque()
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
        # the ends whose continuation is an output token, indexed by the next proposal
        output = [start, max(start, stop - len(output) - 1), stop, False]
        self._outputs.append(output)
        self._unindexed.append(output)
        self.num_tokens += len(tokens)
        self._evict()

    def _index_outputs(self) -> None:
        """Index the newest outputs stored since the last proposal that fit in index_backlog
        tokens, in order (the index takes positions in increasing order); older ones of the
        backlog stay unindexed until evicted."""
        newest, budget = [], self.index_backlog
        for output in reversed(self._unindexed):
            if budget <= 0:
                break
            newest.append(output)
            budget -= output[2] - output[0]
        for output in reversed(newest):
            start, first_end, stop, _ = output
            for end in range(first_end, stop - 1):
                self._index.add(self._window(max(start, end - self._index.max_n + 1), end), end)
            output[3] = True
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

    def _window(self, lo: int, end: int) -> list[int]:
        return self._ring[lo - self._first:end + 1 - self._first]

    def _evict(self) -> None:
        """Drop the oldest outputs until the rest fit; compact the ring when half of it is dead."""
        while self.num_tokens > self.max_tokens:
            output = self._outputs.popleft()
            start, first_end, stop, indexed = output
            self.num_tokens -= stop - start
            if not indexed:  # nothing to forget
                if self._unindexed and self._unindexed[0] is output:
                    self._unindexed.popleft()
                continue
            for end in range(first_end, stop - 1):
                self._index.forget(self._window(max(start, end - self._index.max_n + 1), end), end)
        live = (self._outputs[0][0] - 1) if self._outputs else self._position(len(self._ring) - 1)
        self._index.drop_before(live)
        if live - self._first > len(self._ring) // 2:
            del self._ring[:live - self._first]
            self._first = live
