"""Continuous batching (plain Python: no torch, no asyncio).

Every step mixes decodes and prefill chunks under `max_num_batched_tokens` tokens and
`max_num_seqs` sequences: running sequences first (decodes before unfinished prefills), then
waiting ones in arrival order, a long prompt taking as large a chunk as the budget allows. When
the pool runs out of blocks the newest running sequence is preempted: its blocks are freed and it
waits to be recomputed from its tokens (prompt and output so far), so no output changes.

Scheduling runs one step ahead of the results: `schedule()` advances each sequence as if the
step had already run, and appends a PENDING token for each token the step samples, so that the
next step can be scheduled (and computed on the GPU) before this one's tokens are read back.
`postprocess()` later fills the pending tokens in and applies the token-level stops.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from .block_manager import BlockManager
from .config import EngineConfig
from .sequence import PENDING, Sequence, Status


@dataclass(slots=True)
class Batch:
    """The sequences of one step: sequence i computes tokens starts[i] : starts[i] + num_new_tokens[i]
    and, when `sampled[i]`, samples the token after them (a PENDING token until read back)."""

    seqs: list[Sequence] = field(default_factory=list)
    num_new_tokens: list[int] = field(default_factory=list)
    starts: list[int] = field(default_factory=list)
    sampled: list[bool] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.seqs)

    def add(self, seq: Sequence, n: int) -> None:
        self.seqs.append(seq)
        self.num_new_tokens.append(n)
        self.starts.append(seq.num_computed_tokens)

    def remove(self, seq: Sequence) -> int:
        """Take a sequence out again (it was preempted); its token count."""
        i = next(i for i, s in enumerate(self.seqs) if s is seq)
        del self.seqs[i], self.starts[i]
        return self.num_new_tokens.pop(i)


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
            if seq.status is not Status.RUNNING or self._done_sampling(seq):
                continue  # preempted below while making room, or finishing once its token is read
            n = min(seq.num_uncomputed_tokens, budget)
            while not self.blocks.can_append(seq, n):
                victim = self.running[-1]
                if victim in batch.seqs:
                    budget += batch.remove(victim)
                self._preempt(victim)
                preempted = True
                if victim is seq:
                    break
            else:
                self.blocks.append_slots(seq, n)
                batch.add(seq, n)
                budget -= n
        if not preempted:
            self._admit_waiting(batch, budget)
        for seq, n in zip(batch.seqs, batch.num_new_tokens):
            seq.num_computed_tokens += n
            samples = seq.num_computed_tokens == seq.num_tokens
            batch.sampled.append(samples)
            if samples:
                seq.token_ids.append(PENDING)
        return batch

    def _done_sampling(self, seq: Sequence) -> bool:
        return seq.output_limit_reached or seq.num_tokens >= self.config.max_model_len

    def _admit_waiting(self, batch: Batch, budget: int) -> None:
        skipped: list[Sequence] = []
        bs = self.blocks.block_size
        while self.waiting and budget > 0 and len(self.running) < self.config.max_num_seqs:
            seq = self.waiting.popleft()
            parent = seq.parent
            if parent is not None and not parent.finished \
                    and len(parent.block_hashes) < (parent.num_prompt_tokens - 1) // bs:
                skipped.append(seq)  # shares the parent's prompt blocks once they are cached
                continue
            # a prompt to be scored is computed in full: cached blocks would skip its logits
            cached = [] if seq.wants_prompt_logprobs else self.blocks.find_cached_prefix(seq)
            n = min(seq.num_tokens - len(cached) * bs, budget)
            if not self.blocks.admit(seq, cached, n):
                self.waiting.appendleft(seq)
                break
            seq.status = Status.RUNNING
            self.running.append(seq)
            batch.add(seq, n)
            budget -= n
        self.waiting.extendleft(reversed(skipped))

    def _preempt(self, seq: Sequence) -> None:
        self.running.remove(seq)
        self.blocks.free(seq)
        seq.status = Status.WAITING
        self.waiting.appendleft(seq)
        self.num_preemptions += 1

    # --- after the step ---------------------------------------------------------------------------

    def postprocess(self, batch: Batch, sampled: list[int | None]) -> tuple[list[int | None], list[Finished]]:
        """Once the step's tokens are read back: cache the blocks it completed, fill in its
        sampled tokens, and finish the sequences that hit a token-level stop (EOS, a stop token,
        max_tokens, the context window). Stop strings are the output processor's, which calls
        `finish`. Returns the tokens taken (None for a sequence that finished while the step
        ran: aborted, or stopped by a string) and the sequences finished here."""
        finished, taken = [], []
        for seq, start, n, token in zip(batch.seqs, batch.starts, batch.num_new_tokens, sampled):
            taken.append(None if seq.finished else token)
            if seq.finished:
                continue
            if seq.status is Status.RUNNING:
                self.blocks.cache_computed_blocks(seq, start + n)
            if token is None:
                continue
            position = start + n
            seq.token_ids[position] = token
            reason = self._stop_reason(seq, position)
            if reason:
                del seq.token_ids[position + 1:]  # a token the next step is already computing
                self.finish(seq, reason)
                finished.append(Finished(seq, reason))
        return taken, finished

    def _stop_reason(self, seq: Sequence, position: int) -> str | None:
        p, token = seq.params, seq.token_ids[position]
        if (token == self.eos_token_id and not p.ignore_eos) or token in p.stop_token_ids:
            return "stop"
        num_output = position + 1 - seq.num_prompt_tokens
        if p.max_tokens is not None and num_output >= p.max_tokens:
            return "length"
        if position + 1 >= self.config.max_model_len:
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
