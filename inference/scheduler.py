"""Continuous batching (plain Python: no torch, no asyncio).

Every step mixes decodes and prefill chunks under `max_num_batched_tokens` tokens and
`max_num_seqs` sequences: running sequences first (decodes before unfinished prefills), then
waiting ones in arrival order, a long prompt taking as large a chunk as the budget allows. When
the pool runs out of blocks the newest running sequence is preempted: its blocks are freed and it
waits to be recomputed from its tokens (prompt and output so far), so no output changes.

Scheduling runs one step ahead of the results: `schedule()` advances each sequence as if the
step had already run, and appends a PENDING token for each token the step samples, so that the
next step can be scheduled (and computed on the GPU) before this one's tokens are read back.
`postprocess()` later fills the pending tokens in. Whether a token ends its sequence is the
output processor's decision (`SequenceOutput.add_token`); `finish()` applies it.

A decoding sequence may bring a draft (speculative decoding, inference/speculative): the step
computes its last token and the k drafted tokens after it, and samples k + 1 tokens. Until the
step is read back the sequence stands as after a plain decode step (one PENDING token); then the
accepted drafted tokens join it as computed, the token after them as its next to compute, and
the blocks taken for the rejected ones are given back (they were never cached). Such a step must
be read back before the sequence is scheduled again: it cannot run one step ahead.

The scheduler owns the block manager: every block a sequence holds is taken and given back here.
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
    and, when `samples[i]`, samples the token after them (a PENDING token until read back). A
    sequence with a draft (`drafts[i]`, k tokens) computes its last token and the draft instead
    (num_new_tokens[i] = k + 1) and samples k + 1 tokens. With prompt logprobs, the rows of
    positions `scored[i]` score the prompt token after each."""

    seqs: list[Sequence] = field(default_factory=list)
    num_new_tokens: list[int] = field(default_factory=list)
    starts: list[int] = field(default_factory=list)
    drafts: list[tuple[int, ...]] = field(default_factory=list)
    samples: list[bool] = field(default_factory=list)
    scored: list[range] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.seqs)

    @property
    def speculative(self) -> bool:
        return any(self.drafts)

    def add(self, seq: Sequence, n: int, draft: tuple[int, ...] = ()) -> None:
        self.seqs.append(seq)
        self.num_new_tokens.append(n)
        self.starts.append(seq.num_computed_tokens)
        self.drafts.append(draft)

    def remove(self, seq: Sequence) -> int:
        """Take a sequence out again (it was preempted); its token count."""
        i = next(i for i, s in enumerate(self.seqs) if s is seq)
        del self.seqs[i], self.starts[i], self.drafts[i]
        return self.num_new_tokens.pop(i)


class Scheduler:
    def __init__(self, config: EngineConfig, num_blocks: int):
        self.config = config
        self.block_manager = BlockManager(num_blocks, config.block_size, config.enable_prefix_caching)
        self.waiting: deque[Sequence] = deque()
        self.running: list[Sequence] = []
        self.num_preemptions = 0

    def add(self, seq: Sequence) -> None:
        self.waiting.append(seq)

    # --- scheduling -------------------------------------------------------------------------------

    def schedule(self, drafts: dict[int, tuple[int, ...]] | None = None) -> Batch:
        """The next step. `drafts`: tokens drafted to follow decoding sequences, by seq_id (at
        most `draft_room` each); a draft is cut to the step's token budget, and dropped rather
        than preempt anything for its blocks."""
        batch = Batch()
        budget = self.config.max_num_batched_tokens
        preempted = False
        drafts = drafts or {}
        # decodes first, then running prefills; a stable sort keeps arrival order within each
        for seq in sorted(self.running, key=lambda s: s.num_uncomputed_tokens > 1):
            if budget == 0:
                break
            if seq.status is not Status.RUNNING or self._done_sampling(seq):
                continue  # preempted below while making room, or finishing once its token is read
            draft = drafts.get(seq.seq_id, ())[:budget - 1]
            if draft and self.block_manager.can_append(seq, 1 + len(draft)):
                self.block_manager.append_slots(seq, 1 + len(draft))
                batch.add(seq, 1 + len(draft), draft)
                budget -= 1 + len(draft)
                continue
            n = min(seq.num_uncomputed_tokens, budget)
            while not self.block_manager.can_append(seq, n):
                victim = self.running[-1]
                if victim in batch.seqs:
                    budget += batch.remove(victim)
                self._preempt(victim)
                preempted = True
                if victim is seq:
                    break
            else:
                self.block_manager.append_slots(seq, n)
                batch.add(seq, n)
                budget -= n
        if not preempted:
            self._admit_waiting(batch, budget)
        for seq, start, n, draft in zip(batch.seqs, batch.starts, batch.num_new_tokens, batch.drafts):
            batch.scored.append(self._scored_positions(seq, start, start + n))
            seq.num_computed_tokens += n - len(draft)  # drafted tokens count once accepted
            samples = seq.num_computed_tokens == seq.num_tokens
            batch.samples.append(samples)
            if samples:
                seq.token_ids.append(PENDING)
        return batch

    @staticmethod
    def _scored_positions(seq: Sequence, start: int, end: int) -> range:
        """The positions among [start, end) whose rows score a prompt token not scored yet (the
        row at position p scores prompt token p + 1); marks them scored."""
        if not seq.wants_prompt_logprobs:
            return range(0)
        scored = range(max(start, seq.next_prompt_logprob - 1), min(end, seq.num_prompt_tokens - 1))
        if scored:
            seq.next_prompt_logprob = scored[-1] + 2
        return scored

    def _done_sampling(self, seq: Sequence) -> bool:
        return seq.output_limit_reached or seq.num_tokens >= self.config.max_model_len

    def draft_room(self, seq: Sequence) -> int:
        """How many drafted tokens a decoding sequence may verify next: every token a step
        samples must fit under max_tokens and the context window."""
        if seq.status is not Status.RUNNING or seq.num_uncomputed_tokens != 1 or seq.token_ids[-1] == PENDING:
            return 0
        room = self.config.max_model_len - seq.num_tokens
        if seq.params.max_tokens is not None:
            room = min(room, seq.params.max_tokens - seq.num_output_tokens)
        return max(0, room - 1)

    def _admit_waiting(self, batch: Batch, budget: int) -> None:
        skipped: list[Sequence] = []
        bs = self.block_manager.block_size
        while self.waiting and budget > 0 and len(self.running) < self.config.max_num_seqs:
            seq = self.waiting.popleft()
            parent = seq.parent
            if parent is not None and not parent.finished \
                    and len(parent.block_hashes) < (parent.num_prompt_tokens - 1) // bs:
                skipped.append(seq)  # shares the parent's prompt blocks once they are cached
                continue
            # a prompt to be scored is computed in full: cached blocks would skip its logits
            cached = [] if seq.wants_prompt_logprobs else self.block_manager.find_cached_prefix(seq)
            n = min(seq.num_tokens - len(cached) * bs, budget)
            if not self.block_manager.admit(seq, cached, n):
                self.waiting.appendleft(seq)
                break
            seq.status = Status.RUNNING
            self.running.append(seq)
            batch.add(seq, n)
            budget -= n
        self.waiting.extendleft(reversed(skipped))

    def _preempt(self, seq: Sequence) -> None:
        self.running.remove(seq)
        self.block_manager.free(seq)
        seq.status = Status.WAITING
        self.waiting.appendleft(seq)
        self.num_preemptions += 1

    # --- after the step ---------------------------------------------------------------------------

    def postprocess(self, batch: Batch, sampled: list[list[int] | None]) -> list[list[int] | None]:
        """Once the step's tokens are read back: fill in each sequence's sampled tokens (a
        verified draft's accepted tokens and the one after them), give back the blocks of
        rejected drafted tokens and cache the blocks the step completed. Returns the tokens
        taken (None for a sequence that finished while the step ran: aborted, or stopped by the
        token before)."""
        taken = []
        for seq, start, n, draft, tokens in zip(batch.seqs, batch.starts, batch.num_new_tokens, batch.drafts,
                                                sampled):
            taken.append(None if seq.finished else tokens)
            if seq.finished:
                continue
            computed = start + n - len(draft)
            if draft and seq.num_tokens != computed + 1:
                raise RuntimeError("a step that verifies a draft must be read back before its sequence is scheduled "
                                   "again")
            if tokens:
                seq.token_ids[computed:computed + 1] = tokens
                if draft:  # tokens[:-1] are the accepted drafted tokens, computed by this step
                    computed += len(tokens) - 1
                    seq.num_computed_tokens = computed
                    self.block_manager.truncate(seq, computed)
            if seq.status is Status.RUNNING:
                self.block_manager.cache_computed_blocks(seq, computed)
        return taken

    def finish(self, seq: Sequence, reason: str) -> None:
        """End a sequence now and free its blocks; tokens the step in flight is computing for it
        are dropped."""
        if seq.finished:
            return
        while seq.token_ids[-1] == PENDING:
            seq.token_ids.pop()
        if seq.status is Status.RUNNING:
            self.running.remove(seq)
        else:
            self.waiting.remove(seq)
        self.block_manager.free(seq)
        seq.status = Status.FINISHED
        seq.finish_reason = reason

    def abort(self, request_id: str) -> list[Sequence]:
        seqs = [s for s in (*self.running, *self.waiting) if s.request_id == request_id]
        for seq in seqs:
            self.finish(seq, "abort")
        return seqs
