"""Continuous batching (plain Python: no torch, no asyncio).

Every step mixes decodes and prefill chunks under `max_num_batched_tokens` tokens and
`max_num_seqs` sequences: running sequences first (decodes before unfinished prefills), then
waiting ones in arrival order, a long prompt taking as large a chunk as the budget allows. When
the pool runs out of blocks the newest running sequence is preempted: its blocks are freed and it
waits to be recomputed from its tokens (prompt and output so far), so no output changes.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from .block_manager import BlockManager
from .config import EngineConfig
from .sequence import Sequence, Status


@dataclass(slots=True)
class Batch:
    """The sequences of one step and how many of each one's uncomputed tokens it computes."""

    seqs: list[Sequence] = field(default_factory=list)
    num_new_tokens: list[int] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.seqs)

    @property
    def num_tokens(self) -> int:
        return sum(self.num_new_tokens)

    def samples(self, i: int) -> bool:
        """Whether sequence i reaches its last token this step, so a token is sampled for it."""
        seq = self.seqs[i]
        return seq.num_computed_tokens + self.num_new_tokens[i] == seq.num_tokens


@dataclass(slots=True)
class Finished:
    seq: Sequence
    reason: str


class Scheduler:
    def __init__(self, config: EngineConfig, block_manager: BlockManager, eos_token_id: int | None):
        self.config = config
        self.blocks = block_manager
        self.eos_token_id = eos_token_id
        self.waiting: deque[Sequence] = deque()
        self.running: list[Sequence] = []
        self.num_preemptions = 0

    @property
    def has_work(self) -> bool:
        return bool(self.waiting or self.running)

    def add(self, seq: Sequence) -> None:
        self.waiting.append(seq)

    # --- scheduling -------------------------------------------------------------------------------

    def schedule(self) -> Batch:
        batch = Batch()
        budget = self.config.max_num_batched_tokens
        preempted = False
        # decodes first, then running prefills; a stable sort keeps arrival order within each
        for seq in sorted(self.running, key=lambda s: s.num_uncomputed_tokens > 1):
            if budget == 0:
                break
            if seq.status is not Status.RUNNING:  # preempted below while making room
                continue
            n = min(seq.num_uncomputed_tokens, budget)
            while not self.blocks.can_append(seq, n):
                victim = self.running[-1]
                budget += self._unschedule(batch, victim)
                self._preempt(victim)
                preempted = True
                if victim is seq:
                    break
            else:
                self.blocks.append_slots(seq, n)
                batch.seqs.append(seq)
                batch.num_new_tokens.append(n)
                budget -= n
        if not preempted:
            self._admit_waiting(batch, budget)
        return batch

    def _admit_waiting(self, batch: Batch, budget: int) -> None:
        skipped: list[Sequence] = []
        while self.waiting and budget > 0 and len(self.running) < self.config.max_num_seqs:
            seq = self.waiting.popleft()
            if seq.parent is not None and not (seq.parent.prefilled or seq.parent.finished):
                skipped.append(seq)  # shares the parent's prompt blocks once they are computed
                continue
            cached = self.blocks.find_cached_prefix(seq)
            n = min(seq.num_tokens - len(cached) * self.blocks.block_size, budget)
            if not self.blocks.admit(seq, cached, n):
                self.waiting.appendleft(seq)
                break
            seq.status = Status.RUNNING
            self.running.append(seq)
            batch.seqs.append(seq)
            batch.num_new_tokens.append(n)
            budget -= n
        self.waiting.extendleft(reversed(skipped))

    @staticmethod
    def _unschedule(batch: Batch, seq: Sequence) -> int:
        for i, s in enumerate(batch.seqs):
            if s is seq:
                del batch.seqs[i]
                return batch.num_new_tokens.pop(i)
        return 0

    def _preempt(self, seq: Sequence) -> None:
        self.running.remove(seq)
        self.blocks.free(seq)
        seq.status = Status.WAITING
        self.waiting.appendleft(seq)
        self.num_preemptions += 1

    # --- after the step ---------------------------------------------------------------------------

    def postprocess(self, batch: Batch, sampled: list[int | None]) -> list[Finished]:
        """Advance each sequence by the tokens it computed, append the sampled tokens, and finish
        the sequences that hit a token-level stop (EOS, a stop token, max_tokens, the context
        window). Stop strings are the output processor's, which calls `finish`."""
        finished = []
        for seq, n, token in zip(batch.seqs, batch.num_new_tokens, sampled):
            seq.num_computed_tokens += n
            self.blocks.cache_computed_blocks(seq)
            if token is None:
                continue
            seq.token_ids.append(token)
            reason = self._stop_reason(seq, token)
            if reason:
                self.finish(seq, reason)
                finished.append(Finished(seq, reason))
        return finished

    def _stop_reason(self, seq: Sequence, token: int) -> str | None:
        p = seq.params
        if (token == self.eos_token_id and not p.ignore_eos) or token in p.stop_token_ids:
            return "stop"
        if p.max_tokens is not None and seq.num_output_tokens >= p.max_tokens:
            return "length"
        if seq.num_tokens >= self.config.max_model_len:
            return "length"
        return None

    def finish(self, seq: Sequence, reason: str) -> None:
        if seq.finished:
            return
        if seq.status is Status.RUNNING:
            self.running.remove(seq)
        else:
            self.waiting.remove(seq)
        self.blocks.free(seq)
        seq.status = Status.FINISHED
        seq.finish_reason = reason

    def abort(self, request_id: str) -> list[Sequence]:
        seqs = [s for s in (*self.running, *self.waiting) if s.request_id == request_id]
        for seq in seqs:
            self.finish(seq, "abort")
        return seqs
