"""Where each short n-gram of a token stream ends: the index both drafters look matches up in.

    stream   ... a  b  c  d ... a  b  c  ?        query: the last tokens, longest n-gram first
                       ^end           ^now        ("a b c" ends at `end`; what followed it
                                                   there is the draft)

For each of a few sizes n (say 2, 4 and 8) the index keeps the latest position each n-gram ended at and,
per position, the previous position the same n-gram ended at: a chain, newest first, walked at
most `per_key` links. Indexing a token costs one dictionary update per size and a list append,
a lookup at most `per_key` steps per size, whatever the stream's length, and a position costs a
few machine words. N-grams are keyed by their hash: a collision only misleads a draft (drafts
are verified), and the drafters compare tokens before trusting a match anyway. Positions are
added in increasing order, not necessarily all of them; `drop_before` forgets the oldest.
"""

from __future__ import annotations

from collections.abc import Sequence


class NgramIndex:
    def __init__(self, sizes: Sequence[int], per_key: int):
        if not sizes or min(sizes) < 1:
            raise ValueError(f"n-gram sizes must be >= 1, got {sizes}")
        if per_key < 1:
            raise ValueError(f"per_key must be >= 1, got {per_key}")
        self.sizes, self.per_key = sorted(set(sizes), reverse=True), per_key  # the longest first
        self.max_n = self.sizes[0]
        self._latest: dict[int, int] = {}  # hash of an n-gram -> the last position it ended at
        self._previous = {n: [] for n in self.sizes}  # [position - offset] -> earlier end, or -1
        self._offset = 0  # the position of the lists' first entries
        self._live = 0  # positions before this one are forgotten

    def __len__(self) -> int:
        """N-grams held."""
        return len(self._latest)

    def add(self, window: Sequence[int], end: int) -> None:
        """Index the n-grams made of the last tokens of `window` (a window shorter than max_n
        holds only the shorter ones), which end at position `end` (past every position added)."""
        gap = end - self._offset - len(self._previous[self.max_n])
        for n, previous in self._previous.items():
            if gap:
                previous.extend([-1] * gap)
            if n > len(window):
                previous.append(-1)
                continue
            key = hash(tuple(window[-n:]))
            previous.append(self._latest.get(key, -1))
            self._latest[key] = end

    def forget(self, window: Sequence[int], end: int) -> None:
        """Drop the n-grams of `window` (as `add` took them) whose latest position is `end` or
        older, that is, every occurrence of them once positions up to `end` are evicted."""
        for n in self.sizes:
            if n > len(window):
                continue
            key = hash(tuple(window[-n:]))
            if self._latest.get(key, end + 1) <= end:
                del self._latest[key]

    def drop_before(self, position: int) -> None:
        """Forget the positions before `position`: chains stop there, and their links are freed
        once they make half of the lists."""
        self._live = max(self._live, position)
        dead = self._live - self._offset
        if dead > len(self._previous[self.max_n]) // 2:
            for previous in self._previous.values():
                del previous[:dead]
            self._offset = self._live

    def longest(self, context: Sequence[int]) -> tuple[int, list[int]] | None:
        """The longest n-gram ending `context` that was indexed: (n, up to per_key positions where
        it ended, newest first); None when not even the shortest was seen."""
        for n in self.sizes:
            if n > len(context):
                continue
            end = self._latest.get(hash(tuple(context[-n:])), -1)
            ends, previous = [], self._previous[n]
            while end >= self._live and len(ends) < self.per_key:
                ends.append(end)
                end = previous[end - self._offset]
            if ends:
                return n, ends
        return None
