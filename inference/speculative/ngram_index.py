"""Where each short n-gram of a token stream ends: the index both drafters look matches up in.

    stream   ... a  b  c  d ... a  b  c  ?        query: the last tokens, longest n-gram first
                       ^end           ^now        ("a b c" ends at `end`; what followed it
                                                   there is the draft)

Each n-gram of min_n..max_n tokens maps to the positions where it ends, oldest first, at most
`per_key` of them: indexing a token costs max_n - min_n + 1 dictionary updates, a lookup at most
as many, whatever the stream's length. The caller decides which positions to index (a drafter
indexes a position once the token after it exists) and what a position means (an index into one
sequence, or into the suffix cache's ring of outputs).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence


class NgramIndex:
    def __init__(self, min_n: int, max_n: int, per_key: int):
        if not 1 <= min_n <= max_n:
            raise ValueError(f"n-gram sizes must satisfy 1 <= min_n <= max_n, got {min_n} and {max_n}")
        if per_key < 1:
            raise ValueError(f"per_key must be >= 1, got {per_key}")
        self.min_n, self.max_n, self.per_key = min_n, max_n, per_key
        self._ends: dict[tuple[int, ...], deque[int]] = {}

    def __len__(self) -> int:
        return len(self._ends)

    def add(self, window: Sequence[int], end: int) -> None:
        """Index the n-grams made of the last tokens of `window` (at most max_n long), which ends
        at position `end`. A window shorter than max_n indexes only the n-grams it holds."""
        for n in range(self.min_n, min(self.max_n, len(window)) + 1):
            key = tuple(window[-n:])
            ends = self._ends.get(key)
            if ends is None:
                ends = self._ends[key] = deque(maxlen=self.per_key)
            ends.append(end)

    def forget(self, window: Sequence[int], end: int) -> None:
        """Undo `add(window, end)` and every older entry of the same n-grams (positions only
        grow, so those are the oldest); n-grams left with no position are dropped."""
        for n in range(self.min_n, min(self.max_n, len(window)) + 1):
            key = tuple(window[-n:])
            ends = self._ends.get(key)
            if ends is None:
                continue
            while ends and ends[0] <= end:
                ends.popleft()
            if not ends:
                del self._ends[key]

    def longest(self, context: Sequence[int]) -> tuple[int, deque[int]] | None:
        """The longest n-gram ending `context` that was indexed: (n, its end positions, oldest
        first); None when not even the min_n last tokens were seen."""
        for n in range(min(self.max_n, len(context)), self.min_n - 1, -1):
            ends = self._ends.get(tuple(context[-n:]))
            if ends:
                return n, ends
        return None
