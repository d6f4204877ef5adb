"""How often the engine tries to draft when drafts keep coming back empty.

A try proposes for every decoding sequence and makes the step wait for the one before it (plain
decode steps run one ahead of their results), so on traffic with nothing to copy it is host time
lost. After a fruitless try the engine waits twice as many steps before the next, up to 32 per 16
sequences; and while it backs off, a try with many sequences asks a rotating sample of PROBE of
them first and drafts for all only when the sample finds something, so that a large batch with
nothing to copy never indexes the tokens of every sequence.
"""

from __future__ import annotations

from typing import TypeVar

T = TypeVar("T")

PROBE = 16


class DraftPacing:
    def __init__(self) -> None:
        self.backoff = 0  # steps skipped after the last fruitless try (0: the last try drafted)
        self._wait = 0  # steps still to skip
        self._next_probe = 0  # where the next sample starts

    def due(self) -> bool:
        """Whether this step may try; counts a skipped step."""
        if self._wait > 0:
            self._wait -= 1
            return False
        return True

    def sample(self, seqs: list[T]) -> list[T]:
        """The sequences to ask first: all of them, or while backing off a rotating PROBE."""
        if not self.backoff or len(seqs) <= PROBE:
            return seqs
        start = self._next_probe % len(seqs)
        self._next_probe = start + PROBE
        return (seqs[start:] + seqs[:start])[:PROBE]

    def tried(self, num_seqs: int, drafted: bool) -> None:
        """A try over num_seqs sequences drafted something, or not."""
        longest = 32 * max(1, num_seqs // 16)
        self.backoff = 0 if drafted else min(longest, 2 * self.backoff or 1)
        self._wait = self.backoff
